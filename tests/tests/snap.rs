//! etcd-snap against real clusters: snapshots that the real etcdutl/etcdctl agree with, taken
//! past dead members, and every fault leaving no half file behind.

use etcd_lab::{Cluster, Fault, Proxy, Run, Spec};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn snap(c: &Cluster, node: usize, args: &[&str]) -> Run {
    c.run_json("etcd-snap", node, args, None)
}

fn files(dir: &Path) -> Vec<String> {
    etcd_lab::dir_names(dir)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// What the real tool of that version says about a snapshot file.
fn real_status(c: &Cluster, file: &str) -> Value {
    let dir = etcd_lab::etcd_dir(&c.spec.version);
    let out = if dir.join("etcdutl").exists() {
        Command::new(dir.join("etcdutl")).args(["snapshot", "status", "-w", "json", file]).output().unwrap()
    } else {
        Command::new(dir.join("etcdctl"))
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "status", "-w", "json", file])
            .output()
            .unwrap()
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn fill(c: &Cluster, keys: usize, size: usize) {
    let value = "v".repeat(size);
    for i in 0..keys {
        c.etcdctl_ok(&["put", &format!("/registry/configmaps/k{i}"), &value]);
    }
}

fn save_past_a_dead_member(version: &str) {
    let c = Cluster::start(Spec::new(3, version));
    fill(&c, 50, 1000);
    let dir = c.base.join("backups");
    let dead = format!("https://{}:2379", etcd_lab::sibling_ip(&c.node(1).ip, 99));
    let eps = format!("{dead},{}", c.node(1).client_url());
    // --dir relative to where the command runs: the document records the file's whole path, so
    // that it still names the file where it is read (another dir, a stored document).
    let mut cmd = c.tool("etcd-snap", 1);
    cmd.args(["save", "--dir", "backups", "--endpoints", &eps, "-w", "json"]).current_dir(&c.base);
    let r = etcd_lab::run(cmd, None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    let doc = &r.json;
    assert_eq!(doc["kind"], "Snapshot");
    assert_eq!(doc["verified"], true);
    let path = doc["path"].as_str().unwrap();
    assert!(path.starts_with(&format!("{}/", dir.display())), "{path}");
    let mut cmd = c.tool("etcd-snap", 1);
    cmd.args(["verify", "-", "-w", "json"]).current_dir("/");
    let again = etcd_lab::run(cmd, Some(&r.stdout));
    assert_eq!(again.code, 0, "{}", again.stderr);
    let name = Path::new(path).file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("etcd-snapshot-") && name.ends_with(&format!("-r{}.db", doc["revision"])), "{name}");
    assert_eq!(files(&dir), vec![name.to_string()], "no .part left");
    assert_eq!(mode(Path::new(path)), 0o600);
    assert_eq!(mode(&dir), 0o700);
    // A healthy follower, not the leader, by default.
    let leader = c.run_json("etcd-status", 1, &[], None).json["leader"].clone();
    assert_ne!(doc["memberId"], leader);
    assert_eq!(doc["etcdVersion"], version);
    // The real tool agrees on every number.
    let real = real_status(&c, path);
    assert_eq!(real["hash"], doc["hash"]);
    assert_eq!(real["revision"], doc["revision"]);
    assert_eq!(real["totalKey"], doc["totalKeys"]);
    assert_eq!(real["totalSize"], doc["totalSize"]);
    assert!(doc["revision"].as_i64().unwrap() >= 51);
    // And our offline verify says the same, also from the Snapshot document on stdin.
    let v = c.run_json("etcd-snap", 1, &["verify", "-"], Some(&r.stdout));
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert_eq!(v.json["hash"], doc["hash"]);
    assert_eq!(v.json["memberId"], doc["memberId"]);

    // --from leader and --out FILE.
    let out = c.base.join("one.db");
    let r = snap(&c, 1, &["save", "--out", out.to_str().unwrap(), "--from", "leader"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json["memberId"], leader);
    assert_eq!(mode(&out), 0o600);
    // An existing --out is not replaced without --force.
    let before = std::fs::read(&out).unwrap();
    let r = snap(&c, 1, &["save", "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("one.db: exists; not replacing it without --force"), "{}", r.stderr);
    assert_eq!(std::fs::read(&out).unwrap(), before);
    let r = snap(&c, 1, &["save", "--out", out.to_str().unwrap(), "--force"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // --from a URL: the file is named after the member that answers there, not its host.
    let named = c.base.join("named");
    let r = snap(&c, 1, &["save", "--dir", named.to_str().unwrap(), "--from", &c.node(2).client_url()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.json["path"].as_str().unwrap().contains("Z-node2-r"), "{}", r.stdout);

    // A member that accepts TCP and never answers: every candidate timed out, exit 7.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_url = format!("https://{}", hung.local_addr().unwrap());
    let none = c.base.join("hung");
    let r = snap(&c, 1, &["save", "--dir", none.to_str().unwrap(), "--from", &hung_url, "--dial-timeout", "1s"]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("{hung_url}: context deadline exceeded")), "{}", r.stderr);
    assert!(files(&none).is_empty());

    // Every endpoint dead: an error naming them, nothing written.
    let empty = c.base.join("none");
    let r = snap(&c, 1, &["save", "--dir", empty.to_str().unwrap(), "--endpoints", &dead, "--dial-timeout", "1s"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains(&dead), "{}", r.stderr);
    assert!(files(&empty).is_empty());
}

#[test]
fn save_past_a_dead_member_3_4_23() {
    save_past_a_dead_member("3.4.23");
}

#[test]
fn save_past_a_dead_member_3_5_30() {
    save_past_a_dead_member("3.5.30");
}

/// A member that dies or freezes mid-stream, a disk that fills up: an error, no file left.
#[test]
fn faults_mid_stream_leave_nothing() {
    let c = Cluster::start(Spec::new(1, "3.5.30"));
    fill(&c, 40, 100_000);
    let target = c.node(1).client_url().trim_start_matches("https://").to_string();
    let dir = c.base.join("backups");
    let d = dir.to_str().unwrap();

    let cut = Proxy::start(&target, Fault::Cut { after: 1_000_000 });
    let r = snap(&c, 1, &["save", "--dir", d, "--endpoints", &cut.url, "--from", &cut.url]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("snapshot stream broken after"), "{}", r.stderr);
    assert!(files(&dir).is_empty(), "{:?}", files(&dir));

    let stall = Proxy::start(&target, Fault::Stall { after: 1_000_000 });
    let t = std::time::Instant::now();
    let r =
        snap(&c, 1, &["save", "--dir", d, "--endpoints", &stall.url, "--from", &stall.url, "--stall-timeout", "1s"]);
    assert_ne!(r.code, 0);
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
    assert!(r.stderr.contains("snapshot stalled: no bytes for 1s"), "{}", r.stderr);
    assert!(files(&dir).is_empty(), "{:?}", files(&dir));

    // --out made by someone else while this save streams: not replaced without --force.
    let out = c.base.join("taken.db");
    let mut cmd = c.tool("etcd-snap", 1);
    cmd.args(["save", "--out", out.to_str().unwrap()]);
    let (r, _) = c.paused_at(cmd, "save-streaming", |_| std::fs::write(&out, b"another writer's").unwrap());
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("taken.db: exists; not replacing it without --force"), "{}", r.stderr);
    assert_eq!(std::fs::read(&out).unwrap(), b"another writer's");
    assert!(!c.base.join("taken.db.part").exists(), "the .part is gone");

    // A 1 MiB filesystem for a 4 MB snapshot.
    let small = c.base.join("small");
    std::fs::create_dir_all(&small).unwrap();
    let mounted =
        Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"]).arg(&small).status().unwrap();
    assert!(mounted.success(), "mounting a small tmpfs needs root");
    let r = snap(&c, 1, &["save", "--dir", small.to_str().unwrap()]);
    let listed = files(&small);
    // Full before the first byte: still our disk's fault, not a reason to ask another member.
    let _ = std::fs::write(small.join("filler"), vec![0u8; 2 << 20]);
    let full = snap(&c, 1, &["save", "--dir", small.to_str().unwrap()]);
    let listed_full = files(&small);
    let _ = Command::new("umount").arg(&small).status();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("No space left on device"), "{}", r.stderr);
    assert!(listed.is_empty(), "{listed:?}");
    assert_eq!(full.code, 1, "{}", full.stderr);
    assert!(full.stderr.contains(".part: writing the snapshot: No space left on device"), "{}", full.stderr);
    assert_eq!(listed_full, ["filler"]);
}

/// The member a save streams from stalls midway (frozen: a hung disk, a restart): its partial
/// file goes, and the next healthy member gives the snapshot. One --timeout bounds all of it.
#[test]
fn a_member_stalling_mid_stream_hands_over_to_the_next() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    fill(&c, 80, 100_000);
    // The member it streams from: its .part is named after it (which follower is asked first
    // depends on their applied indexes at that moment).
    let dir = c.base.join("backups");
    let streaming_from = |dir: &std::path::Path| -> usize {
        let part = files(dir).into_iter().find(|n| n.ends_with(".part")).expect("a .part");
        let node = part.trim_end_matches(".part").rsplit('-').next().unwrap().to_string();
        node.trim_start_matches("node").parse().unwrap_or_else(|_| panic!("{part}"))
    };
    let mut cmd = c.tool("etcd-snap", 1);
    cmd.args(["save", "--dir", dir.to_str().unwrap(), "--stall-timeout", "1s", "--timeout", "60s", "-w", "json"]);
    let (mut frozen, mut k) = (0, 0);
    let (r, _) = c.paused_at(cmd, "save-streaming", |_| {
        k = streaming_from(&dir);
        frozen = c.freeze(k);
    });
    let first = format!("node{k}");
    c.thaw(frozen);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("snapshot stalled: no bytes for 1s") && r.stderr.contains("asking the next member"));
    assert!(!r.json["path"].as_str().unwrap().contains(&first), "{}", r.stdout);
    let names = files(&dir);
    assert_eq!(names.len(), 1, "one snapshot, no .part: {names:?}");
    let real = real_status(&c, r.json["path"].as_str().unwrap());
    assert_eq!(real["revision"], r.json["revision"]);

    // --timeout bounds the whole run: spent on the first follower, the second is not tried.
    let mut cmd = c.tool("etcd-snap", 1);
    cmd.args(["save", "--dir", dir.to_str().unwrap(), "--from", "follower", "--timeout", "1500ms"]);
    cmd.args(["--stall-timeout", "20s"]);
    let (r, _) = c.paused_at(cmd, "save-streaming", |_| frozen = c.freeze(streaming_from(&dir)));
    c.thaw(frozen);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(
        r.stderr.contains("not done within --timeout 1.5s") && r.stderr.contains("not tried, --timeout 1.5s spent")
    );
    assert_eq!(files(&dir).len(), 1, "nothing more: {:?}", files(&dir));
}

fn testdata(name: &str) -> PathBuf {
    etcd_lab::workspace_root().join("common/testdata").join(name)
}

/// Offline verify on damaged files: exit 6 and one line saying what is wrong.
#[test]
fn verify_bad_files() {
    let dir = std::env::temp_dir().join(format!("snap-verify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read(testdata("snapshot-3.5.30.db")).unwrap();
    let mut flipped = good.clone();
    flipped[9000] ^= 0x01;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated.db", good[..good.len() - 100].to_vec(), "no sha256 trailer"),
        ("flipped.db", flipped, "sha256 mismatch"),
        ("raw.db", good[..good.len() - 32].to_vec(), "no sha256 trailer"),
        ("zero.db", vec![], "empty file"),
        ("text.db", b"hello\n".repeat(2054), "not a sound bbolt database"),
    ];
    for (name, bytes, want) in cases {
        let p = dir.join(name);
        std::fs::write(&p, &bytes).unwrap();
        let mut cmd = Command::new(etcd_lab::bin("etcd-snap"));
        cmd.args(["verify", "--skip-hash-check"][..if name == "text.db" { 2 } else { 1 }].iter()).arg(&p);
        let r = etcd_lab::run(cmd, None);
        assert_eq!(r.code, 6, "{name}: {}", r.stderr);
        let line = r.stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "{name}: {line}");
        assert!(line.contains(&p.display().to_string()) && line.contains(want), "{name}: {line}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Retention by the names' timestamps; foreign files untouched; the newest verified kept always;
/// the .part leftovers of dead saves removed once an hour old, a live save's kept, and another
/// tool's (etcdctl's `<file>.part`, which it does not lock) never touched.
#[test]
fn prune_keeps_what_the_rules_say() {
    let dir = std::env::temp_dir().join(format!("snap-prune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read(testdata("snapshot-3.5.30.db")).unwrap();
    let names = [
        "etcd-snapshot-20261123T120000Z-cp1-r60.db",
        "etcd-snapshot-20261123T060000Z-cp1-r50.db",
        "etcd-snapshot-20261122T060000Z-cp1-r40.db",
        "etcd-snapshot-20261121T060000Z-cp1-r30.db",
        "etcd-snapshot-20261116T060000Z-cp2-r20.db",
        "etcd-snapshot-20261109T060000Z-cp2-r10.db",
    ];
    for n in names {
        std::fs::write(dir.join(n), &good).unwrap();
    }
    std::fs::write(dir.join("my-own-backup.db"), &good).unwrap();
    // A killed save's leftover (two hours old), a younger one (that may be a live save on a host
    // whose locks this one cannot see), etcdctl's, and a live save's file: it holds the lock.
    let hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for n in ["etcd-snapshot-20261123T110000Z-cp1.part", "etcd-snapshot-pre-upgrade.db.part"] {
        let f = std::fs::File::create(dir.join(n)).unwrap();
        f.set_len(7).unwrap();
        f.set_modified(hours_ago).unwrap();
    }
    std::fs::write(dir.join("etcd-snapshot-20261123T120000Z-cp2.part"), b"young").unwrap();
    let live = dir.join("etcd-snapshot-20261123T130000Z-cp1.part");
    std::fs::write(&live, b"partial, running now").unwrap();
    let live_writer = std::fs::File::open(&live).unwrap();
    live_writer.lock().unwrap();
    let prune = |args: &[&str]| {
        let mut cmd = Command::new(etcd_lab::bin("etcd-snap"));
        cmd.args(["prune", "--dir", dir.to_str().unwrap(), "-w", "json"]).args(args);
        etcd_lab::run(cmd, None)
    };
    let dry = prune(&["--keep", "1", "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.json["kind"], "Plan", "{}", dry.stdout);
    let going: Vec<&str> = dry.json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "remove" && s["destructive"] == true)
        .map(|s| s["detail"].as_str().unwrap())
        .collect();
    assert_eq!(going.len(), 6, "{going:?}");
    assert!(going.iter().any(|p| p.ends_with("T110000Z-cp1.part")), "the dead .part goes: {going:?}");
    assert!(!going.iter().any(|p| p.ends_with("T130000Z-cp1.part")), "the live .part stays: {going:?}");
    assert_eq!(files(&dir).len(), 11, "a dry run removes nothing");
    assert!(!dir.join(".etcd-snap.lock").exists(), "a dry run creates nothing either");

    let r = prune(&["--keep", "1", "--keep-daily", "3"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let left = files(&dir);
    assert_eq!(
        left,
        vec![
            "etcd-snapshot-20261121T060000Z-cp1-r30.db",
            "etcd-snapshot-20261122T060000Z-cp1-r40.db",
            "etcd-snapshot-20261123T120000Z-cp1-r60.db",
            "etcd-snapshot-20261123T120000Z-cp2.part",
            "etcd-snapshot-20261123T130000Z-cp1.part",
            "etcd-snapshot-pre-upgrade.db.part",
            "my-own-backup.db",
        ]
    );

    // The two newest damaged: keep 1 would keep only a bad file; the newest good one stays too.
    std::fs::write(dir.join(names[0]), b"garbage").unwrap();
    std::fs::write(dir.join(names[2]), b"garbage").unwrap();
    let r = prune(&["--keep", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let left = files(&dir);
    assert!(left.contains(&names[0].to_string()) && left.contains(&names[3].to_string()), "{left:?}");
    assert!(!left.contains(&names[2].to_string()), "{left:?}");

    // A file another hand removes between the decision and the removal: what prune wanted anyway.
    for n in names {
        std::fs::write(dir.join(n), &good).unwrap();
    }
    let mut cmd = Command::new(etcd_lab::bin("etcd-snap"));
    cmd.args(["prune", "--dir", dir.to_str().unwrap(), "--keep", "1", "-w", "json"]);
    let (r, _) = etcd_lab::paused_at(&dir, cmd, "prune-decided", |_| std::fs::remove_file(dir.join(names[4])).unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let removed: Vec<&str> = r.json["removed"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(removed.len(), 4, "{removed:?}");
    assert!(!removed.iter().any(|p| p.ends_with(names[4])), "{removed:?}");
    assert_eq!(files(&dir).iter().filter(|f| f.starts_with("etcd-snapshot-") && f.ends_with(".db")).count(), 1);
    drop(live_writer);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Cron mode: a second run while one holds the lock exits 5 at once; the metrics file follows
/// successes and failures; --keep prunes after a good save.
#[test]
fn cron_mode() {
    let c = Cluster::start(Spec::new(1, "3.5.30"));
    let dir = c.base.join("backups");
    let metrics = c.base.join("etcd_snapshot.prom");
    let (d, m) = (dir.to_str().unwrap(), metrics.to_str().unwrap());
    // The timer's command, dry: the Plan names the member, and nothing is made or written.
    let dry = snap(&c, 1, &["save", "--dir", d, "--keep", "2", "--lock", "--metrics-file", m, "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.json["kind"], "Plan", "{}", dry.stdout);
    assert!(dry.stdout.contains("node1 (https://"), "{}", dry.stdout);
    assert!(!dir.exists() && !metrics.exists(), "a dry run made the dir or the metrics file");
    for _ in 0..3 {
        let r = snap(&c, 1, &["save", "--dir", d, "--keep", "2", "--lock", "--metrics-file", m]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    assert_eq!(files(&dir).len(), 2, "{:?}", files(&dir));
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(text.contains("etcd_snapshot_failures_total 0\n"), "{text}");
    assert!(text.contains("etcd_snapshot_last_revision "), "{text}");
    assert_eq!(mode(&metrics), 0o644);

    let lock = std::fs::File::create(dir.join(".etcd-snap.lock")).unwrap();
    lock.lock().unwrap();
    let t = std::time::Instant::now();
    let r = snap(&c, 1, &["save", "--dir", d, "--keep", "2", "--lock", "--metrics-file", m]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(t.elapsed() < std::time::Duration::from_secs(2));
    let dry = snap(&c, 1, &["save", "--dir", d, "--lock", "--dry-run"]);
    assert_eq!(dry.code, 5, "{}", dry.stdout);
    assert!(dry.stdout.contains("another run holds it"), "{}", dry.stdout);
    drop(lock);

    // The host clock stepped back: snapshots named later than now exist. Counted, they would
    // fill the newest slots and push out each real snapshot at the next run; they are left alone
    // and named, and the rules keep the real ones, run after run.
    let some = dir.join(&files(&dir)[0]);
    let futures = ["etcd-snapshot-20981231T000000Z-node1-r1.db", "etcd-snapshot-20991231T000000Z-node1-r1.db"];
    for future in futures {
        std::fs::copy(&some, dir.join(future)).unwrap();
    }
    let mut saved = Vec::new();
    for _ in 0..2 {
        let r = snap(&c, 1, &["save", "--dir", d, "--keep", "2", "--lock", "--metrics-file", m]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stderr.contains("20991231T000000Z-node1-r1.db: named later than now"), "{}", r.stderr);
        saved.push(Path::new(r.json["path"].as_str().unwrap()).file_name().unwrap().to_str().unwrap().to_string());
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let mut want: Vec<String> = futures.iter().map(|f| f.to_string()).chain(saved).collect();
    want.sort();
    assert_eq!(files(&dir), want, "the two real newest and the two named in the future");
    for future in futures {
        std::fs::remove_file(dir.join(future)).unwrap();
    }

    c.stop_node(1);
    let before = files(&dir);
    let r = snap(&c, 1, &["save", "--dir", d, "--keep", "2", "--lock", "--metrics-file", m, "--dial-timeout", "1s"]);
    assert!(matches!(r.code, 4 | 7), "every member down: no quorum, or every dial timed out: {}", r.stderr);
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(text.contains("etcd_snapshot_failures_total 1\n"), "{text}");
    assert_eq!(files(&dir), before, "a failed run removes nothing");

    // The lock that cannot be taken for another reason than a live run (here its file is a dir;
    // a filesystem gone read-only likewise) is the job failing: counted.
    std::fs::remove_file(dir.join(".etcd-snap.lock")).unwrap();
    std::fs::create_dir(dir.join(".etcd-snap.lock")).unwrap();
    c.start_node(1);
    let r = snap(&c, 1, &["save", "--dir", d, "--keep", "2", "--lock", "--metrics-file", m]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains(".etcd-snap.lock"), "{}", r.stderr);
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(text.contains("etcd_snapshot_failures_total 2\n"), "{text}");
    std::fs::remove_dir(dir.join(".etcd-snap.lock")).unwrap();

    // A failure before any member is asked (a dir it may not use) counts too.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = snap(&c, 1, &["save", "--dir", d, "--keep", "2", "--lock", "--metrics-file", m]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(text.contains("etcd_snapshot_failures_total 3\n"), "{text}");

    // A job wrong from its first run (a rule that keeps nothing, a bad setting in its environment):
    // refused, and still the series an alert watches are written.
    let fresh = dir.join("fresh.prom");
    let f = fresh.to_str().unwrap();
    let r = snap(&c, 1, &["save", "--dir", d, "--keep", "0", "--lock", "--metrics-file", f]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let text = std::fs::read_to_string(&fresh).unwrap();
    assert!(text.contains("etcd_snapshot_failures_total 1\n"), "{text}");
    assert!(text.contains("etcd_snapshot_last_success_timestamp_seconds 0\n"), "{text}");
    let mut cmd = c.tool("etcd-snap", 1);
    cmd.args(["save", "--dir", d, "--lock", "--metrics-file", f]).env("ETCDCTL_DIAL_TIMEOUT", "soon");
    let r = etcd_lab::run(cmd, None);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(std::fs::read_to_string(&fresh).unwrap().contains("etcd_snapshot_failures_total 2\n"));
}

/// The cron examples in docs/ use only flags etcd-snap save has.
#[test]
fn docs_use_real_flags() {
    let help = Command::new(etcd_lab::bin("etcd-snap")).args(["save", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let docs = etcd_lab::workspace_root().join("docs");
    let job: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(docs.join("etcd-snap-cronjob.yaml")).unwrap()).unwrap();
    assert_eq!(job["kind"], "CronJob");
    // Pinned to one node: the snapshots, the retention and the metrics of a node stay there.
    let pod = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert!(pod["nodeName"].as_str().is_some_and(|n| !n.is_empty()), "{pod:?}");
    let c = &pod["containers"][0];
    let mut args: Vec<String> =
        c["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    assert_eq!(args[0], "save");
    let unit = std::fs::read_to_string(docs.join("etcd-snap.service")).unwrap();
    let exec = unit.split("ExecStart=").nth(1).unwrap().split("\n\n").next().unwrap().replace("\\\n", " ");
    args.extend(exec.split_whitespace().map(String::from));
    for a in args.iter().filter(|a| a.starts_with('-')) {
        let flag = a.split('=').next().unwrap();
        let listed = help
            .lines()
            .any(|l| l.trim_start().split([' ', ',']).next() == Some(flag) || l.contains(&format!(", {flag} ")));
        assert!(listed, "{flag} is not a save flag");
    }
}
