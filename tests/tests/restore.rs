//! The native restore against the real tools as oracles: the same member and cluster IDs, `.snap`
//! bytes and WAL records as `etcdutl snapshot restore` (3.5) and `etcdctl snapshot restore` (3.4).

use common::disk::{ids, snapfile, wal};
use std::path::{Path, PathBuf};
use std::process::Command;

const CLUSTER: &str = "n1=http://127.0.0.1:25380,n2=http://127.0.0.1:25381,n3=http://127.0.0.1:25382";
const TOKEN: &str = "restoretok";

/// The sha256 of a snapshot's db part, as etcd-snap verify records it.
fn sha256_hex(snap: &Path) -> String {
    let mut cmd = Command::new(etcd_lab::bin("etcd-snap"));
    cmd.args(["verify", "-w", "json"]).arg(snap);
    let r = etcd_lab::run(cmd, None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json["sha256"].as_str().unwrap().to_string()
}

fn testdata(name: &str) -> PathBuf {
    etcd_lab::workspace_root().join("common/testdata").join(name)
}

/// Restores with the real tool of `version` into a fresh dir; returns the data dir.
fn real_restore(version: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("real-restore-{version}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bin = etcd_lab::etcd_dir(version);
    let (tool, env) =
        if bin.join("etcdutl").exists() { ("etcdutl", None) } else { ("etcdctl", Some(("ETCDCTL_API", "3"))) };
    let mut cmd = Command::new(bin.join(tool));
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let peer = CLUSTER.split(',').find_map(|p| p.strip_prefix(&format!("{name}="))).unwrap();
    let out = cmd
        .args(["snapshot", "restore"])
        .arg(testdata(&format!("snapshot-{version}.db")))
        .arg(format!("--data-dir={}", dir.display()))
        .args([
            &format!("--name={name}"),
            &format!("--initial-cluster={CLUSTER}"),
            &format!("--initial-cluster-token={TOKEN}"),
        ])
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir
}

fn only_file(dir: &Path, ext: &str) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// Our WAL and `.snap` for the same flags, next to the real ones.
fn compare_wal_and_snap(version: &str, conf_state: bool) {
    let members = ids::parse_initial_cluster(CLUSTER, TOKEN).unwrap();
    let mut sorted = members.clone();
    sorted.sort_by_key(|m| m.id);
    let all: Vec<u64> = sorted.iter().map(|m| m.id).collect();
    let cid = ids::cluster_id(&all);
    for me in &members {
        let real = real_restore(version, &me.name);
        let jsons: Vec<String> = sorted.iter().map(|m| snapfile::member_json(m.id, &m.name, &m.peer_urls)).collect();
        let wal_members: Vec<wal::WalMember> =
            sorted.iter().zip(&jsons).map(|(m, j)| wal::WalMember { id: m.id, json: j }).collect();
        let ours_wal = wal::restore_segment(me.id, cid, &wal_members, conf_state);
        let real_wal = std::fs::read(real.join("member/wal/0000000000000000-0000000000000000.wal")).unwrap();
        assert_eq!(real_wal.len() as u64, wal::SEGMENT_BYTES);
        assert_eq!(&real_wal[..ours_wal.len()], &ours_wal[..], "WAL records of {}", me.name);
        assert!(real_wal[ours_wal.len()..].iter().all(|&b| b == 0), "zeros after the records");
        let read = wal::read_segment(&real_wal);
        assert_eq!(read.records.len(), 3 + 3 + 1 + 1);
        assert_eq!((read.torn_at, read.crc_mismatch_at), (None, None));

        let v2 = snapfile::v2_store_json(&sorted.iter().map(|m| (m.id, m.peer_urls.clone())).collect::<Vec<_>>());
        let ours_snap = snapfile::snap_file(&v2, &all, 3, 1);
        let real_snap_path = only_file(&real.join("member/snap"), "snap");
        assert_eq!(real_snap_path.file_name().unwrap().to_str().unwrap(), snapfile::snap_name(1, 3));
        let real_snap = std::fs::read(&real_snap_path).unwrap();
        if real_snap != ours_snap {
            let (a, b) = (String::from_utf8_lossy(&real_snap), String::from_utf8_lossy(&ours_snap));
            let at = a.chars().zip(b.chars()).position(|(x, y)| x != y).unwrap_or(0);
            panic!(
                "snap differs at char {at}:\nreal: {}\nours: {}",
                &a[at.saturating_sub(80)..(at + 80).min(a.len())],
                &b[at.saturating_sub(80)..(at + 80).min(b.len())]
            );
        }
        std::fs::remove_dir_all(&real).unwrap();
    }
}

#[test]
fn wal_and_snap_like_etcdutl_3_5_30() {
    compare_wal_and_snap("3.5.30", true);
}

#[test]
fn wal_and_snap_like_etcdctl_3_4_23() {
    compare_wal_and_snap("3.4.23", false);
}

/// Our db holds what etcdutl's restore holds: the same `snapshot status` hash, revision and keys,
/// for a 3.4 and a 3.5 source (3.4's etcdctl keeps stale members by a bug, so etcdutl 3.5.30 is
/// the oracle for both).
#[test]
fn db_like_etcdutl() {
    for (v, mode) in
        [("3.4.23", None), ("3.5.30", None), ("3.4.23", Some("--copy-patch")), ("3.5.30", Some("--copy-patch"))]
    {
        let real = std::env::temp_dir().join(format!("oracle-db-{v}-{}", std::process::id()));
        let ours = std::env::temp_dir().join(format!("ours-db-{v}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&real);
        let _ = std::fs::remove_dir_all(&ours);
        let snap = testdata(&format!("snapshot-{v}.db"));
        let flags = [
            "--name=n2".to_string(),
            format!("--initial-cluster={CLUSTER}"),
            format!("--initial-cluster-token={TOKEN}"),
            "--initial-advertise-peer-urls=http://127.0.0.1:25381".to_string(),
        ];
        let out = Command::new(etcd_lab::etcd_dir("3.5.30").join("etcdutl"))
            .args(["snapshot", "restore"])
            .arg(&snap)
            .arg(format!("--data-dir={}", real.display()))
            .args(&flags)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let r = etcd_lab::run(
            {
                let mut c = Command::new(etcd_lab::bin("etcd-restore"));
                c.arg("--snapshot")
                    .arg(&snap)
                    .arg("--data-dir")
                    .arg(&ours)
                    .args(&flags)
                    .args(["-w", "json"])
                    .args(mode);
                c
            },
            None,
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        // A 3.4 db: etcd 3.6.0-3.6.4 cannot tell its schema, and the operator is told.
        assert_eq!(r.stderr.contains("will not start from it; --write-confstate"), v == "3.4.23", "{}", r.stderr);
        assert_eq!(r.json["memberId"], "e04b22db4a72a6dd");
        assert_eq!(r.json["clusterId"], "4180329efa9c6f95");
        let status = |dir: &Path| common::disk::snapshot::status(&dir.join("member/snap/db")).unwrap();
        let (a, b) = (status(&real), status(&ours));
        assert_eq!((a.hash, a.revision, a.total_keys), (b.hash, b.revision, b.total_keys), "etcd {v} {mode:?}");
        if mode.is_none() {
            assert!(b.total_size <= a.total_size, "compacted");
        }
        assert_eq!(r.json["revision"], b.revision);
        // The same WAL records and .snap as etcdutl's for this member.
        let wal = |dir: &Path| {
            let b = std::fs::read(dir.join("member/wal/0000000000000000-0000000000000000.wal")).unwrap();
            wal::read_segment(&b).records
        };
        assert_eq!(wal(&real), wal(&ours));
        let snapf = |dir: &Path| std::fs::read(only_file(&dir.join("member/snap"), "snap")).unwrap();
        assert_eq!(snapf(&real), snapf(&ours));
        std::fs::remove_dir_all(&real).unwrap();
        std::fs::remove_dir_all(&ours).unwrap();
    }
}

/// A data dir that exists empty, the mount point of a new disk for etcd or a symlink to an empty
/// dir, is restored into where it is, as etcdutl does: built beside it, the restore would be on
/// another filesystem (or replace the symlink), and its rename into place would fail at the end.
#[test]
fn restore_into_an_empty_mount_point_or_symlink() {
    let base = std::env::temp_dir().join(format!("restore-into-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let disk = base.join("disk");
    let mount = etcd_lab::Mounted::mount(&disk, "size=100m,mode=0700");
    let target = base.join("target");
    std::fs::create_dir(&target).unwrap();
    let link = base.join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    // A restore killed there earlier left its half-built dir (no lock held on it): not a
    // reason to call the dir not empty. One whose lock is held is a live restore's.
    let leftover = disk.join(".etcd-restore-4242/d/member/snap");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("db"), b"half").unwrap();
    let live = target.join(".etcd-restore-4343");
    std::fs::create_dir_all(live.join("d")).unwrap();
    let held = std::fs::File::open(&live).unwrap();
    held.lock().unwrap();
    let restore_into = |dir: &Path| {
        let mut cmd = Command::new(etcd_lab::bin("etcd-restore"));
        cmd.arg("--snapshot").arg(testdata("snapshot-3.5.30.db")).arg("--data-dir").arg(dir);
        cmd.args(["--name=n2", &format!("--initial-cluster={CLUSTER}"), &format!("--initial-cluster-token={TOKEN}")]);
        cmd.args(["--initial-advertise-peer-urls=http://127.0.0.1:25381", "-w", "json"]);
        etcd_lab::run(cmd, None)
    };
    let r = restore_into(&link);
    assert_eq!(r.code, 5, "a live restore's dir is not removed: {}", r.stderr);
    assert!(live.join("d").is_dir());
    drop(held);
    std::fs::remove_dir_all(&live).unwrap();
    for (dir, holder) in [(&disk, &disk), (&link, &target)] {
        let r = restore_into(dir);
        assert_eq!(r.code, 0, "{}: {}", dir.display(), r.stderr);
        assert_eq!(r.json["memberId"], "e04b22db4a72a6dd");
        assert_eq!(etcd_lab::dir_names(holder), ["member"], "{}: the member dir alone", holder.display());
        assert_eq!(etcd_lab::dir_names(&holder.join("member")), ["snap", "wal"]);
    }
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the symlink stays");
    assert_eq!(etcd_lab::dir_names(&base), ["disk", "link", "target"], "nothing beside");
    drop(mount);
    std::fs::remove_dir_all(&base).unwrap();
}

/// A 3-member cluster started from our restore serves every key of the source, agrees on
/// `hashkv`, and takes writes.
fn cluster_from_restore(version: &str, source: &str) {
    cluster_from_restore_with(version, source, &[]);
}

fn cluster_from_restore_with(version: &str, source: &str, restore_args: &[&str]) {
    let mut spec = etcd_lab::Spec::new(3, version);
    spec.restore_from = Some(testdata(&format!("snapshot-{source}.db")));
    spec.restore_args = restore_args.iter().map(|a| a.to_string()).collect();
    let c = etcd_lab::Cluster::start(spec);
    let keys = c.etcdctl_ok(&["get", "--prefix", "/registry/", "--keys-only"]);
    assert_eq!(keys.lines().filter(|l| !l.is_empty()).count(), 299, "k1..k300 without k7");
    assert!(c.etcdctl_ok(&["get", "/registry/k300", "--print-value-only"]).starts_with("value-300-"));
    assert_eq!(c.etcdctl_ok(&["get", "big", "--print-value-only"]).trim().len(), 9000);
    assert_eq!(c.etcdctl_ok(&["get", "leased", "--print-value-only"]).trim(), "v");
    let status: serde_json::Value = serde_json::from_str(&c.etcdctl_ok(&["endpoint", "status", "-w", "json"])).unwrap();
    for s in status.as_array().unwrap() {
        assert!(s["Status"]["header"]["revision"].as_i64().unwrap() >= 304, "{s}");
    }
    c.etcdctl_ok(&["put", "after-restore", "yes"]);
    // Every member has applied the same history.
    let hashes = c.etcdctl_ok(&["endpoint", "hashkv", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&hashes).unwrap();
    let h: Vec<&serde_json::Value> = v.as_array().unwrap().iter().map(|e| &e["HashKV"]["hash"]).collect();
    assert!(h.len() == 3 && h[0].as_u64().is_some_and(|x| x != 0), "{hashes}");
    assert!(h.iter().all(|x| *x == h[0]), "{hashes}");
    let members = c.etcdctl_ok(&["member", "list"]);
    assert_eq!(members.lines().count(), 3, "{members}");
}

#[test]
fn cluster_from_restore_3_4_23() {
    cluster_from_restore("3.4.23", "3.4.23");
}

#[test]
fn cluster_from_restore_3_5_16() {
    cluster_from_restore("3.5.16", "3.5.30");
}

/// Copy-then-patch starts a cluster as well as the compacting rewrite does.
#[test]
fn cluster_from_patched_restore_3_4_23() {
    cluster_from_restore_with("3.4.23", "3.4.23", &["--copy-patch"]);
}

#[test]
fn cluster_from_restore_3_5_30() {
    cluster_from_restore("3.5.30", "3.5.30");
}

#[test]
fn cluster_from_restore_3_5_30_of_a_3_4_snapshot() {
    cluster_from_restore("3.5.30", "3.4.23");
}

/// `--write-confstate` (the new voters in meta/confState, for etcd 3.6.0-3.6.4) on a 3.4 db: 3.4
/// and 3.5 start from it as well.
#[test]
fn cluster_from_restore_with_conf_state() {
    cluster_from_restore_with("3.4.23", "3.4.23", &["--write-confstate"]);
    cluster_from_restore_with("3.5.30", "3.4.23", &["--write-confstate", "--copy-patch"]);
}

/// `--bump-revision 1000 --mark-compacted`: the revision jumps and older ones are compacted, as
/// etcdutl does it.
#[test]
fn bump_revision_3_5_30() {
    let mut spec = etcd_lab::Spec::new(1, "3.5.30");
    spec.restore_from = Some(testdata("snapshot-3.5.30.db"));
    spec.restore_args = vec!["--bump-revision".into(), "1000".into(), "--mark-compacted".into()];
    let c = etcd_lab::Cluster::start(spec);
    let status: serde_json::Value = serde_json::from_str(&c.etcdctl_ok(&["endpoint", "status", "-w", "json"])).unwrap();
    assert_eq!(status[0]["Status"]["header"]["revision"], 1304, "{status}");
    let old = c.etcdctl(&c.endpoints(), &["get", "/registry/k1", "--rev=300"]);
    assert!(!old.status.success());
    assert!(String::from_utf8_lossy(&old.stderr).contains("required revision has been compacted"));
    assert!(c.etcdctl_ok(&["get", "/registry/k1", "--print-value-only"]).starts_with("value-1-"));
    c.etcdctl_ok(&["put", "next", "1"]);
    let v: serde_json::Value = serde_json::from_str(&c.etcdctl_ok(&["get", "next", "-w", "json"])).unwrap();
    assert_eq!(v["kvs"][0]["mod_revision"], 1305);
}

/// Bad input: exit 6 or 2, one line, and nothing written.
#[test]
fn bad_input_writes_nothing() {
    let dir = std::env::temp_dir().join(format!("restore-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read(testdata("snapshot-3.5.30.db")).unwrap();
    let mut flipped = good.clone();
    flipped[5000] ^= 0x10;
    let files = [
        ("truncated.db", good[..good.len() - 1000].to_vec()),
        ("flipped.db", flipped),
        ("raw.db", good[..good.len() - 32].to_vec()),
        ("text.db", b"not etcd\n".repeat(1000)),
        ("good.db", good.clone()),
    ];
    for (n, b) in &files {
        std::fs::write(dir.join(n), b).unwrap();
    }
    let target = dir.join("data");
    // Flags given in `extra` replace the defaults (argh takes each option once).
    let run = |snap: &str, extra: &[&str]| {
        let mut c = Command::new(etcd_lab::bin("etcd-restore"));
        c.arg("--snapshot").arg(dir.join(snap)).arg("--data-dir").arg(&target);
        let defaults = [
            ("--name", "n1"),
            ("--initial-cluster", CLUSTER),
            ("--initial-advertise-peer-urls", "http://127.0.0.1:25380"),
        ];
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                c.args([flag, value]);
            }
        }
        c.args(extra);
        etcd_lab::run(c, None)
    };
    let cases: Vec<(&str, Vec<&str>, i32, &str)> = vec![
        ("truncated.db", vec![], 6, "no sha256 trailer"),
        ("flipped.db", vec![], 6, "sha256 mismatch"),
        ("raw.db", vec![], 6, "no sha256 trailer"),
        ("text.db", vec!["--skip-hash-check"], 6, "not a sound bbolt database"),
        ("good.db", vec!["--name", "n9"], 2, "--name \"n9\" is not in --initial-cluster"),
        (
            "good.db",
            vec!["--initial-cluster", "n1=http://127.0.0.1:25380,n2=http://127.0.0.1:25380"],
            2,
            "appears twice",
        ),
        ("good.db", vec!["--initial-advertise-peer-urls", "http://127.0.0.1:25399"], 2, "does not match"),
        ("good.db", vec!["--bump-revision", "10"], 2, "--mark-compacted"),
    ];
    for (snap, extra, code, want) in cases {
        let r = run(snap, &extra);
        assert_eq!(r.code, code, "{snap} {extra:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
        assert!(r.stderr.contains(want), "{snap} {extra:?}: {}", r.stderr);
        assert!(!target.exists(), "{snap} {extra:?} wrote something");
        let names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert_eq!(names.len(), files.len(), "no temp dir left: {names:?}");
    }
    // --dry-run: the Plan, with the IDs a real run gives, and nothing written.
    let dry = run("good.db", &["--dry-run", "-w", "json"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.json["kind"], "Plan", "{}", dry.stdout);
    assert!(!target.exists(), "--dry-run wrote {}", target.display());
    let real = run("good.db", &["-w", "json"]);
    assert_eq!(real.code, 0, "{}", real.stderr);
    for id in [&real.json["memberId"], &real.json["clusterId"]] {
        assert!(dry.stdout.contains(id.as_str().unwrap()), "{id} not in the plan: {}", dry.stdout);
    }
    std::fs::remove_dir_all(&target).unwrap();
    // A non-empty target is refused and left alone; the dry run says so too.
    std::fs::create_dir_all(target.join("member")).unwrap();
    let r = run("good.db", &[]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("not empty"), "{}", r.stderr);
    let dry = run("good.db", &["--dry-run", "-w", "json"]);
    assert_eq!(dry.code, 5, "{}", dry.stderr);
    assert!(dry.stdout.contains("data dir empty or absent"), "{}", dry.stdout);
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn put_keys(c: &etcd_lab::Cluster, n: usize) {
    for i in 0..n {
        c.etcdctl_ok(&["put", &format!("/registry/secrets/s{i}"), &format!("secret-{i}")]);
    }
}

fn count_keys(c: &etcd_lab::Cluster, endpoint: &str) -> usize {
    let out = c.etcdctl(endpoint, &["get", "--prefix", "/registry/secrets/", "--keys-only", "--consistency=s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).count()
}

/// A snapshot, then the disaster (every key deleted), taken on node 1.
fn snapshot_then_disaster(c: &etcd_lab::Cluster) -> String {
    put_keys(c, 30);
    let out = c.base.join("before.db");
    let r = c.run_json("etcd-snap", 1, &["save", "--out", out.to_str().unwrap()], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    c.etcdctl_ok(&["del", "--prefix", "/registry/secrets/"]);
    assert_eq!(count_keys(c, &c.endpoints()), 0);
    out.display().to_string()
}

/// Option 1: the snapshot restored on node 1 (--swap), the others cleaned and joined back.
fn option_one(version: &str) {
    let c = etcd_lab::Cluster::start(etcd_lab::Spec::new(3, version));
    let snap = snapshot_then_disaster(&c);
    let old_cluster = c.run_json("etcd-status", 1, &[], None).json["clusterId"].clone();
    assert!(old_cluster.as_str().is_some_and(|id| id.len() == 16), "{old_cluster}");

    // node2 and node3 still serve the old data: a swap beside them would make two clusters. It
    // refuses, and changes nothing.
    let manifest_before = std::fs::read(c.node(1).manifest()).unwrap();
    let refused = c.run_json("etcd-restore", 1, &["--swap", "--snapshot", &snap, "--yes"], None);
    assert_eq!(refused.code, 5, "{}\n{}", refused.stderr, refused.stdout);
    let line = refused.stderr.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("etcd-restore: refused: 2 of 3 voters of the old cluster still serve")
            && line.contains("etcd-member clean --force there")
            && line.contains("(needed: no majority of the old cluster serves beside the new one)"),
        "{line}"
    );
    assert!(line.contains("2 of 3 voters of the old cluster still serve") && line.contains("node2"), "{line}");
    assert_eq!(std::fs::read(c.node(1).manifest()).unwrap(), manifest_before);
    // Nothing made: the node lock (taken before the plan, so that no other run decides beside this
    // one) is a flock on the manifests dir.
    assert!(!c.node(1).root.join("var/lib/etcd-recovery").exists());
    assert_eq!(count_keys(&c, &c.node(1).client_url()), 0, "node1 still runs the old data");
    // An ETCDCTL_ENDPOINTS left in the shell at an address where nothing answers: the members
    // node1's db knows are asked too, and still serve.
    let mut cmd = c.tool("etcd-restore", 1);
    cmd.args(["--swap", "--snapshot", &snap, "--yes"]).env("ETCDCTL_ENDPOINTS", "https://127.0.0.1:1");
    let refused = etcd_lab::run(cmd, None);
    assert_eq!(refused.code, 5, "{}\n{}", refused.stderr, refused.stdout);
    assert!(refused.stderr.contains("2 of 3 voters of the old cluster still serve"), "{}", refused.stderr);
    assert_eq!(std::fs::read(c.node(1).manifest()).unwrap(), manifest_before);
    // Asked again when a killed swap is resumed: the others, stopped for the first run, are back.
    c.stop_node(2);
    c.stop_node(3);
    let mut cmd = c.tool("etcd-restore", 1);
    cmd.args(["--swap", "--snapshot", &snap, "--yes"]);
    etcd_lab::killed_at(cmd, "swap-swapped-in");
    for k in [2, 3] {
        std::fs::rename(c.node(k).parked_manifest(), c.node(k).manifest()).unwrap();
    }
    c.wait_healthy(&[2, 3], std::time::Duration::from_secs(30));
    let refused = c.run_json("etcd-restore", 1, &["--swap", "--snapshot", &snap, "--yes"], None);
    assert_eq!(refused.code, 5, "{}\n{}", refused.stderr, refused.stdout);
    let line = refused.stderr.lines().last().unwrap_or_default();
    assert!(line.contains("2 of 3 voters of the old cluster still serve"), "{line}");
    // The node is down meanwhile: the refusal says how to go back.
    assert!(line.contains("an interrupted swap has this node's manifest out; to go back: mv "), "{line}");
    assert!(!c.node(1).manifest().exists(), "the killed run's state is left for its rerun");
    // The runbook: the others stopped first (cleaned, as they must be to join anyway).
    for k in [2, 3] {
        let r = c.run_json("etcd-member", k, &["clean", "--yes", "--force"], None);
        assert_eq!(r.code, 0, "clean node{k}: {}", r.stderr);
    }

    let dry = c.run_json("etcd-restore", 1, &["--swap", "--snapshot", &snap, "--dry-run"], None);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stderr, dry.stdout);
    assert_eq!(dry.json["kind"], "Plan");
    // The deletions went past the snapshot's revision: served again with other contents unless
    // bumped, which is said (not refused).
    let again = "would be served again with other contents";
    assert!(dry.stdout.contains(again) && dry.stderr.contains(again), "{}\n{}", dry.stderr, dry.stdout);
    let bumped = |by: &str| {
        let args = ["--swap", "--snapshot", &snap, "--dry-run", "--bump-revision", by, "--mark-compacted"];
        c.run_json("etcd-restore", 1, &args, None)
    };
    let dry = bumped("1000");
    assert!(dry.code == 0 && !dry.stdout.contains(again) && !dry.stderr.contains(again), "{}", dry.stdout);
    // One revision was written after the snapshot (the deletion): a bump of one serves that
    // revision again, with the snapshot's contents.
    let dry = bumped("1");
    assert!(dry.code == 0 && dry.stderr.contains(again), "a bump too small: {}", dry.stderr);
    let r = c.run_json("etcd-restore", 1, &["--swap", "--snapshot", &snap, "--yes"], None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert!(r.stderr.contains(again), "{}", r.stderr);
    assert_eq!(r.json["swappedIn"], true);
    let backups = r.json["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 2, "manifest and old data dir: {}", r.json);
    assert!(backups.iter().all(|b| Path::new(b.as_str().unwrap()).exists()));
    assert_eq!(count_keys(&c, &c.node(1).client_url()), 30);
    let status = c.run_json("etcd-status", 1, &["--endpoints", &c.node(1).client_url()], None);
    assert!(status.json["clusterId"].as_str().is_some_and(|id| id.len() == 16), "{}", status.stdout);
    assert_ne!(status.json["clusterId"], old_cluster, "a new cluster");
    assert_eq!(status.json["members"].as_array().unwrap().len(), 1);
    // The same command again (was it done?): nothing to do, and what was written since stays.
    let n1 = c.node(1).client_url();
    assert!(c.etcdctl(&n1, &["put", "/registry/secrets/after", "x"]).status.success());
    let manifest = std::fs::read(c.node(1).manifest()).unwrap();
    let again = c.run_json("etcd-restore", 1, &["--swap", "--snapshot", &snap, "--yes"], None);
    assert_eq!(again.code, 0, "{}\n{}", again.stderr, again.stdout);
    assert!(again.stderr.contains("already runs this snapshot's restore"), "{}", again.stderr);
    assert_eq!((&again.json["swappedIn"], &again.json["memberId"]), (&serde_json::json!(false), &r.json["memberId"]));
    assert_eq!(again.json["clusterId"], status.json["clusterId"]);
    assert_eq!(std::fs::read(c.node(1).manifest()).unwrap(), manifest, "nothing changed");
    assert_eq!(count_keys(&c, &n1), 31);
    let dry = c.run_json("etcd-restore", 1, &["--swap", "--snapshot", &snap, "--dry-run"], None);
    assert_eq!((dry.code, &dry.json["kind"]), (0, &serde_json::json!("Plan")), "{}", dry.stdout);
    assert_eq!(dry.json["preconditions"][0]["check"], "nothing to do", "{}", dry.stdout);
    assert!(c.etcdctl(&n1, &["del", "/registry/secrets/after"]).status.success());

    for k in [2, 3] {
        let r = c.run_json("etcd-member", k, &["join", "--yes", "--endpoints", &c.node(1).client_url()], None);
        assert_eq!(r.code, 0, "join node{k}: {}\n{}", r.stderr, r.stdout);
    }
    c.wait_healthy(&[1, 2, 3], std::time::Duration::from_secs(30));
    for n in &c.nodes {
        assert_eq!(count_keys(&c, &n.client_url()), 30, "{}", n.name);
    }
    let status = c.run_json("etcd-status", 1, &[], None);
    assert_eq!(status.code, 0, "{}\n{}", status.stderr, status.stdout);
}

#[test]
fn option_one_3_4_23() {
    option_one("3.4.23");
}

#[test]
fn option_one_3_5_30() {
    option_one("3.5.30");
}

/// Option 2: `plan`, then every node's `--swap` at the same time: one new cluster.
#[test]
fn option_two_3_5_30() {
    let c = etcd_lab::Cluster::start(etcd_lab::Spec::new(3, "3.5.30"));
    let snap = snapshot_then_disaster(&c);
    let initial: Vec<String> = c.nodes.iter().map(|n| format!("{}={}", n.name, n.peer_url())).collect();
    let plan =
        c.run_json("etcd-restore", 1, &["plan", "--snapshot", &snap, "--initial-cluster", &initial.join(",")], None);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert_eq!(plan.json["kind"], "RestorePlan");
    assert!(plan.json["clusterId"].as_str().is_some_and(|id| id.len() == 16), "{}", plan.stdout);
    let runs: Vec<etcd_lab::Run> = std::thread::scope(|s| {
        let handles: Vec<_> = plan.json["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let argv: Vec<String> =
                    node["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
                assert_eq!(argv[0], "etcd-restore");
                let c = &c;
                s.spawn(move || {
                    let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
                    c.run_json("etcd-restore", i + 1, &args, None)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r.code, 0, "node{}: {}\n{}", i + 1, r.stderr, r.stdout);
        assert_eq!(r.json["clusterId"], plan.json["clusterId"]);
    }
    c.wait_healthy(&[1, 2, 3], std::time::Duration::from_secs(30));
    for n in &c.nodes {
        assert_eq!(count_keys(&c, &n.client_url()), 30, "{}", n.name);
    }
    let status = c.run_json("etcd-status", 1, &[], None);
    assert_eq!(status.code, 0, "{}\n{}", status.stderr, status.stdout);
    assert_eq!(status.json["clusterId"], plan.json["clusterId"]);
}

/// On kubeadm's first node the manifest's --initial-cluster names that node alone. With its own
/// etcd not answering (frozen here: crash-looping does the same), nothing in the manifest leads to
/// the others: the swap asks the members its db lists, finds the live majority, and refuses.
#[test]
fn swap_refused_beside_a_majority_only_the_db_knows_3_5_30() {
    let c = etcd_lab::Cluster::start(etcd_lab::Spec::new(3, "3.5.30"));
    let snap = c.base.join("s.db");
    let r = c.run_json("etcd-snap", 1, &["save", "--out", snap.to_str().unwrap()], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let n1 = c.node(1);
    let mut m = common::manifest::Manifest::load(&n1.manifest()).unwrap();
    m.set_flag("initial-cluster", &format!("node1={}", n1.peer_url())).unwrap();
    let old = c.etcd_pid(1);
    m.save().unwrap();
    let t = std::time::Instant::now();
    while c.etcd_pid(1) == old {
        assert!(t.elapsed() < std::time::Duration::from_secs(30), "the kubelet kept the old etcd");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    c.wait_healthy(&[1, 2, 3], std::time::Duration::from_secs(30));
    let pid = c.freeze(1);
    let r = c.run_json("etcd-restore", 1, &["--swap", "--snapshot", snap.to_str().unwrap(), "--dry-run"], None);
    c.thaw(pid);
    assert_eq!(r.code, 5, "{}\n{}", r.stderr, r.stdout);
    let failed: Vec<&serde_json::Value> =
        r.json["preconditions"].as_array().unwrap().iter().filter(|k| k["ok"] == false).collect();
    assert_eq!(failed.len(), 1, "{}", r.stdout);
    let detail = failed[0]["detail"].as_str().unwrap();
    assert!(detail.contains("2 of 3 voters of the old cluster still serve"), "{detail}");
}

/// A one-member 3.5.30 lab with `keys` secrets, and a snapshot of it (`<base>/s.db`).
fn one_node_snapshot(keys: usize) -> (etcd_lab::Cluster, PathBuf) {
    let c = etcd_lab::Cluster::start(etcd_lab::Spec::new(1, "3.5.30"));
    put_keys(&c, keys);
    let snap = c.base.join("s.db");
    let r = c.run_json("etcd-snap", 1, &["save", "--out", snap.to_str().unwrap()], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    (c, snap)
}

/// Keys over half a page in a bucket the rewrite copies (etcd puts no limit on user names): the
/// restored db holds them, and etcd starts from it and lists them.
#[test]
fn long_user_names_survive_a_restore_3_5_30() {
    let c = etcd_lab::Cluster::start(etcd_lab::Spec::new(1, "3.5.30"));
    let names: Vec<String> = (0..3).map(|i| format!("{i}{}", "u".repeat(2100))).collect();
    for n in &names {
        c.etcdctl_ok(&["user", "add", &format!("{n}:pw")]);
    }
    let snap = c.base.join("s.db");
    let r = c.run_json("etcd-snap", 1, &["save", "--out", snap.to_str().unwrap()], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    c.etcdctl_ok(&["user", "delete", &names[0]]);
    let r = c.run_json("etcd-restore", 1, &["--swap", "--snapshot", snap.to_str().unwrap(), "--yes"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let users = c.etcdctl_ok(&["user", "list"]);
    let listed: Vec<&str> = users.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(listed, names.iter().map(String::as_str).collect::<Vec<_>>());
}

/// A crictl that looks at another runtime (it lists no etcd container) while etcd still runs (here
/// frozen, so it holds on past the kubelet's stop): the swap waits for etcd to let go of its db
/// instead of moving the data dir from under it, times out, and puts the manifest back.
#[test]
fn swap_waits_for_etcd_to_let_go_of_its_db_3_5_30() {
    let (c, snap) = one_node_snapshot(5);
    let elsewhere = c.crictl_of_another_runtime();
    let manifest_before = std::fs::read_to_string(c.node(1).manifest()).unwrap();
    let pid = c.freeze(1);
    let args = ["--swap", "--snapshot", snap.to_str().unwrap(), "--yes", "--timeout", "3s"];
    let r = c.run_json("etcd-restore", 1, &[&args[..], &["--crictl", elsewhere.to_str().unwrap()]].concat(), None);
    c.thaw(pid);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(r.stderr.contains("etcd still holds") && r.stderr.contains("member/snap/db"), "{}", r.stderr);
    assert!(r.stderr.contains("original manifest back") && !r.stderr.contains("old data dir"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(c.node(1).manifest()).unwrap(), manifest_before);
    let backups = c.node(1).root.join("var/lib/etcd-recovery");
    assert!(!etcd_lab::holds(&backups, b"/registry/secrets/s4"), "the data dir was moved");
    c.wait_healthy(&[1], std::time::Duration::from_secs(40));
    assert_eq!(count_keys(&c, &c.node(1).client_url()), 5, "the old data");
}

/// A swap whose etcd never becomes healthy (its client port taken) is undone: the old data dir
/// and the manifest are back, and the old member runs again.
#[test]
fn failed_swap_is_undone_3_5_30() {
    let (c, snap) = one_node_snapshot(5);
    c.etcdctl_ok(&["put", "/registry/secrets/after", "x"]);
    let manifest_before = std::fs::read_to_string(c.node(1).manifest()).unwrap();
    // Once etcd is stopped, something else takes its client port.
    let n1 = c.node(1).clone();
    let squat = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Ok(l) = std::net::TcpListener::bind(format!("{}:2379", n1.ip)) {
                return Some(l);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
    let r = c.run_json(
        "etcd-restore",
        1,
        &["--swap", "--snapshot", snap.to_str().unwrap(), "--yes", "--timeout", "10s"],
        None,
    );
    let listener = squat.join().unwrap().expect("port taken");
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("old data dir back") && r.stderr.contains("original manifest back"), "{}", r.stderr);
    drop(listener);
    assert_eq!(std::fs::read_to_string(c.node(1).manifest()).unwrap(), manifest_before);
    c.wait_healthy(&[1], std::time::Duration::from_secs(30));
    assert_eq!(count_keys(&c, &c.node(1).client_url()), 6, "the old data, with the key written after the snapshot");
}

/// A swap killed at each step (a failpoint aborts it there, as kill -9 would) leaves the old data
/// dir in place or in the backup, and running the same command again finishes the job.
#[test]
fn killed_swap_converges_on_rerun_3_5_30() {
    let (c, snap) = one_node_snapshot(10);
    // --restore-again: from the second round on, this node runs this snapshot's restore already.
    let args = [
        "--swap",
        "--snapshot",
        snap.to_str().unwrap(),
        "--yes",
        "--initial-cluster-token",
        "kill-test",
        "--restore-again",
    ];
    let root = &c.node(1).root;
    for point in [
        "swap-manifest-journaled",
        "swap-manifest-moved",
        "swap-stopped",
        "swap-restored",
        "swap-old-data-journaled",
        "swap-old-data-moved",
        "swap-swapped-in",
        "swap-new-manifest-journaled",
        "swap-manifest-written",
    ] {
        c.etcdctl_ok(&["put", "/registry/secrets/marker", point]);
        let manifest_before = std::fs::read(c.node(1).manifest()).unwrap();
        let mut cmd = c.tool("etcd-restore", 1);
        cmd.args(args);
        etcd_lab::killed_at(cmd, point);
        // The old data (the marker is in its WAL) is in place or where the journal says it went;
        // the original manifest likewise.
        let journal = std::fs::read_to_string(root.join("var/lib/etcd-recovery/swap-in-progress.json")).unwrap();
        let old_safe = etcd_lab::swap_places(root, "oldDataBackup", root.join("var/lib/etcd"))
            .iter()
            .any(|d| etcd_lab::holds(d, point.as_bytes()));
        assert!(old_safe, "{point}: old data lost ({journal})");
        let manifest_safe = etcd_lab::swap_places(root, "manifestBackup", c.node(1).manifest())
            .iter()
            .any(|m| std::fs::read(m).is_ok_and(|b| b == manifest_before));
        assert!(manifest_safe, "{point}: original manifest lost ({journal})");
        let manifests: Vec<String> = std::fs::read_dir(root.join("etc/kubernetes/manifests"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into())
            .collect();
        assert!(manifests.iter().all(|n| n == "etcd.yaml"), "{point}: {manifests:?}");
        if point == "swap-stopped" {
            // The rerun given another --backup-dir finds no journal: it says where it looked.
            let elsewhere = c.base.join("elsewhere");
            let r = c.run_json(
                "etcd-restore",
                1,
                &[&args[..], &["--backup-dir", elsewhere.to_str().unwrap()]].concat(),
                None,
            );
            assert_eq!(r.code, 1, "{}", r.stderr);
            assert!(
                r.stderr.contains("no swap journal in ")
                    && r.stderr.contains("with that --backup-dir")
                    && r.stderr.contains("no etcd manifest here: check --rootfs/--manifest"),
                "{}",
                r.stderr
            );
        }

        let r = c.run_json("etcd-restore", 1, &args, None);
        assert_eq!(r.code, 0, "{point}: rerun: {}\n{}", r.stderr, r.stdout);
        assert!(!root.join("var/lib/etcd-recovery/swap-in-progress.json").exists());
        assert_eq!(count_keys(&c, &c.node(1).client_url()), 10, "{point}: the snapshot's keys, not the marker");
    }
}

/// A swap killed after the old data dir went, then a rerun that fails before its own move of
/// it (here the snapshot file is cut short under it): the undo brings the old data dir back from
/// where the killed run put it before the original manifest, never the manifest alone (etcd
/// would start on the killed run's restored data, or an empty cluster in an empty dir).
#[test]
fn a_failed_rerun_of_a_killed_swap_puts_the_old_data_back_3_5_30() {
    let (c, snap) = one_node_snapshot(10);
    let args = ["--swap", "--snapshot", snap.to_str().unwrap(), "--yes", "--timeout", "20s"];
    let bytes = std::fs::read(&snap).unwrap();
    for point in ["swap-old-data-moved", "swap-swapped-in"] {
        c.etcdctl_ok(&["put", "/registry/secrets/marker", point]);
        let manifest_before = std::fs::read_to_string(c.node(1).manifest()).unwrap();
        let mut cmd = c.tool("etcd-restore", 1);
        cmd.args(args);
        etcd_lab::killed_at(cmd, point);
        let mut cmd = c.tool("etcd-restore", 1);
        cmd.args(args);
        let (r, _) = c.paused_at(cmd, "swap-stopped", |_| std::fs::write(&snap, &bytes[..8192]).unwrap());
        std::fs::write(&snap, &bytes).unwrap();
        assert_ne!(r.code, 0, "{point}: {}", r.stderr);
        let last = r.stderr.lines().last().unwrap_or_default();
        assert!(last.contains("old data dir back") && last.contains("original manifest back"), "{point}: {last}");
        assert_eq!(std::fs::read_to_string(c.node(1).manifest()).unwrap(), manifest_before, "{point}");
        c.wait_healthy(&[1], std::time::Duration::from_secs(30));
        let out = c.etcdctl_ok(&["get", "/registry/secrets/marker", "--print-value-only"]);
        assert_eq!(out.trim(), point, "the old data, with its key written after the snapshot");
        assert!(!c.node(1).root.join("var/lib/etcd-recovery/swap-in-progress.json").exists(), "{point}: settled");
    }
}

/// A journal names the snapshot its run restores: a swap of another one does not resume it. With
/// the manifest out, it is refused (only that run knows where the original went); beside the
/// killed run's own manifest, the journal is retired.
#[test]
fn another_snapshots_swap_does_not_resume_a_journal_3_5_30() {
    let (c, snap) = one_node_snapshot(10);
    c.etcdctl_ok(&["put", "/registry/secrets/extra", "1"]);
    let other = c.base.join("other.db");
    let r = c.run_json("etcd-snap", 1, &["save", "--out", other.to_str().unwrap()], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let swap = |s: &Path| ["--swap", "--snapshot", s.to_str().unwrap(), "--yes"].map(String::from);
    let root = c.node(1).root.clone();
    let journal = root.join("var/lib/etcd-recovery/swap-in-progress.json");
    let mut cmd = c.tool("etcd-restore", 1);
    cmd.args(swap(&snap));
    etcd_lab::killed_at(cmd, "swap-swapped-in");
    let before = std::fs::read(&journal).unwrap();
    let r = c.run_json("etcd-restore", 1, &swap(&other).each_ref().map(String::as_str), None);
    assert_eq!(r.code, 5, "{}\n{}", r.stderr, r.stdout);
    let want = format!("an interrupted swap of {} has this node's manifest out", snap.display());
    assert!(r.stderr.contains(&want) && r.stderr.contains("or go back: mv -n "), "{}", r.stderr);
    // Its snapshot damaged since: refused too (exit 6), and the way back is said.
    let good = std::fs::read(&snap).unwrap();
    std::fs::write(&snap, &good[..good.len() - 1]).unwrap();
    let r = c.run_json("etcd-restore", 1, &swap(&snap).each_ref().map(String::as_str), None);
    std::fs::write(&snap, &good).unwrap();
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(r.stderr.contains("an interrupted swap has this node's manifest out; to go back: mv -n "), "{}", r.stderr);
    assert_eq!(std::fs::read(&journal).unwrap(), before, "the journal is left as it was");
    assert!(!c.node(1).manifest().exists(), "nothing changed");
    let r = c.run_json("etcd-restore", 1, &swap(&snap).each_ref().map(String::as_str), None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert_eq!(count_keys(&c, &c.node(1).client_url()), 10);

    // --restore-again: this node runs that snapshot's restore already (nothing to do otherwise).
    let mut cmd = c.tool("etcd-restore", 1);
    cmd.args(swap(&snap)).arg("--restore-again");
    etcd_lab::killed_at(cmd, "swap-manifest-written");
    let r = c.run_json("etcd-restore", 1, &swap(&other).each_ref().map(String::as_str), None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert!(
        r.stderr.contains("journal is stale (its manifest is in place, and it restored another snapshot)"),
        "{}",
        r.stderr
    );
    assert_eq!(count_keys(&c, &c.node(1).client_url()), 11);
}

/// A journal left by a swap killed while it waited for health, whose etcd then came up fine: a
/// later swap retires it (kept beside) instead of resuming it, and moves aside the data this node
/// runs now, not what was there before the first swap. Likewise beside a manifest someone else
/// wrote since.
#[test]
fn stale_swap_journal_is_retired_3_5_30() {
    let (c, snap) = one_node_snapshot(10);
    let args = ["--swap", "--snapshot", snap.to_str().unwrap(), "--yes", "--initial-cluster-token", "stale-test"];
    let root = c.node(1).root.clone();
    let journal = root.join("var/lib/etcd-recovery/swap-in-progress.json");
    let retired = || {
        etcd_lab::dir_names(&root.join("var/lib/etcd-recovery"))
            .into_iter()
            .filter(|n| n.starts_with("swap-in-progress.json."))
            .count()
    };
    for (round, why) in [(1, "its etcd is healthy: it had finished"), (2, "a manifest it did not write is in place")] {
        let mut cmd = c.tool("etcd-restore", 1);
        // --restore-again: in round 2 this node runs this snapshot's restore already (round 1's).
        cmd.args(args).arg("--restore-again");
        etcd_lab::killed_at(cmd, "swap-manifest-written");
        let first_backup =
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(&journal).unwrap()).unwrap()["backupDir"]
                .as_str()
                .unwrap()
                .to_string();
        c.wait_healthy(&[1], std::time::Duration::from_secs(30));
        c.etcdctl_ok(&["put", "/registry/secrets/after", "1"]);
        if round == 2 {
            // An operator's edit since (a flag added): the manifest in place is no longer the swap's.
            let mut m = common::manifest::Manifest::load(&c.node(1).manifest()).unwrap();
            m.set_flag("snapshot-count", "10001").unwrap();
            m.save().unwrap();
            c.wait_healthy(&[1], std::time::Duration::from_secs(30));
        }
        let r = c.run_json("etcd-restore", 1, &args, None);
        assert_eq!(r.code, 0, "round {round}: {}\n{}", r.stderr, r.stdout);
        assert!(r.stderr.contains(&format!("journal is stale ({why})")), "round {round}: {}", r.stderr);
        assert_eq!(retired(), round, "the stale journal is kept beside");
        assert!(!journal.exists());
        // It had finished: nothing to do, what was written since stays.
        assert!(r.stderr.contains("already runs this snapshot's restore"), "round {round}: {}", r.stderr);
        assert_eq!(r.json["swappedIn"], false, "{}", r.json);
        assert_eq!(count_keys(&c, &c.node(1).client_url()), 11);
        // Asked for again: restored again.
        let r = c.run_json("etcd-restore", 1, &[&args[..], &["--restore-again"]].concat(), None);
        assert_eq!(r.code, 0, "round {round}: {}\n{}", r.stderr, r.stdout);
        assert_eq!(r.json["swappedIn"], true, "{}", r.json);
        // What went aside is this run's own backup of the live data, not the first swap's.
        let backups: Vec<&str> = r.json["backups"].as_array().unwrap().iter().map(|b| b.as_str().unwrap()).collect();
        assert_eq!(backups.len(), 2, "{}", r.json);
        assert!(backups.iter().all(|b| !b.starts_with(&first_backup)), "{backups:?} vs {first_backup}");
        if round == 2 {
            let kept = std::fs::read_to_string(c.node(1).manifest()).unwrap();
            assert!(kept.contains("--snapshot-count=10001"), "the operator's edit is the new base");
        }
        assert_eq!(count_keys(&c, &c.node(1).client_url()), 10);
    }
}

/// `plan` passes the restore switches on to every node's command, and only those given.
#[test]
fn plan_passes_the_switches_on() {
    let snap = testdata("snapshot-3.5.30.db");
    let plan = |switches: &[&str]| {
        let mut cmd = Command::new(etcd_lab::bin("etcd-restore"));
        cmd.args(["plan", "--snapshot"]).arg(&snap);
        cmd.args(["--initial-cluster", "a=https://10.0.0.1:2380,b=https://10.0.0.2:2380", "-w", "json"]).args(switches);
        let r = etcd_lab::run(cmd, None);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.json["nodes"].as_array().unwrap().clone()
    };
    let all = ["--skip-hash-check", "--drop-alarms", "--write-confstate"];
    for (given, nodes) in [(&all[..], plan(&all)), (&[][..], plan(&[]))] {
        assert_eq!(nodes.len(), 2);
        for n in &nodes {
            let argv: Vec<&str> = n["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
            for s in all {
                assert_eq!(argv.contains(&s), given.contains(&s), "{s}: {argv:?}");
            }
            // The sha256 the plan verified goes to every node (none when it checked no hash).
            let at = argv.iter().position(|a| *a == "--snapshot-sha256");
            assert_eq!(at.is_some(), !given.contains(&"--skip-hash-check"), "{argv:?}");
            if let Some(at) = at {
                assert_eq!(argv[at + 1], sha256_hex(&snap), "{argv:?}");
            }
        }
    }
    // Another file under the plan's path on a node: refused before anything is written.
    let nodes = plan(&[]);
    let argv: Vec<String> = nodes[0]["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().into()).collect();
    let at = argv.iter().position(|a| a == "--snapshot-sha256").unwrap();
    let base = std::env::temp_dir().join(format!("plan-sha-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let target = base.join("data");
    let mut cmd = Command::new(etcd_lab::bin("etcd-restore"));
    cmd.args(["--snapshot"]).arg(testdata("snapshot-3.4.23.db")).args(["--snapshot-sha256", &argv[at + 1]]);
    cmd.args(["--data-dir", target.to_str().unwrap(), "--name", "a", "--initial-advertise-peer-urls"]);
    cmd.args(["https://10.0.0.1:2380", "--initial-cluster", "a=https://10.0.0.1:2380", "--rootfs"]).arg(&base);
    let r = etcd_lab::run(cmd, None);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(r.stderr.contains("differs from the recorded"), "{}", r.stderr);
    assert!(!target.exists(), "nothing written");
    // Into an existing empty dir (a mount point), refused: it stays empty (no staging dir left).
    std::fs::create_dir(&target).unwrap();
    for (sha, code) in [("abc", 2), (argv[at + 1].as_str(), 6)] {
        let mut cmd = Command::new(etcd_lab::bin("etcd-restore"));
        cmd.args(["--snapshot"]).arg(testdata("snapshot-3.4.23.db")).args(["--snapshot-sha256", sha]);
        cmd.args(["--data-dir", target.to_str().unwrap(), "--name", "a", "--initial-advertise-peer-urls"]);
        cmd.args(["https://10.0.0.1:2380", "--initial-cluster", "a=https://10.0.0.1:2380", "--rootfs"]).arg(&base);
        let r = etcd_lab::run(cmd, None);
        assert_eq!(r.code, code, "{}", r.stderr);
        assert_eq!(etcd_lab::dir_names(&target), Vec::<String>::new(), "{sha}");
    }
    std::fs::remove_dir_all(&base).unwrap();
}

/// A data dir owned by another user (etcd run as non-root, kubeadm's rootless control plane):
/// the restored one is given to that user too, or that etcd could not open it.
#[test]
fn the_restored_data_dir_keeps_its_owner_3_5_30() {
    use std::os::unix::fs::MetadataExt;
    let (c, snap) = one_node_snapshot(3);
    let data = c.node(1).root.join("var/lib/etcd");
    common::backup::chown_tree(&data, 4242, 4343).unwrap();
    let r = c.run_json("etcd-restore", 1, &["--swap", "--snapshot", snap.to_str().unwrap(), "--yes"], None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    for p in [data.clone(), data.join("member/snap/db"), data.join("member/wal")] {
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!((m.uid(), m.gid()), (4242, 4343), "{}", p.display());
    }
    assert_eq!(count_keys(&c, &c.node(1).client_url()), 3);
}
