//! etcd frozen (SIGSTOP) or killed during the tools' network steps: every tool ends in bounded
//! time with its documented exit code and a one-line error naming the endpoint, and writes nothing.

use etcd_lab::{Cluster, Spec};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const TIMEOUTS: [&str; 4] = ["--dial-timeout", "1s", "--command-timeout", "2s"];

fn files(dir: &Path) -> Vec<String> {
    etcd_lab::dir_names(dir)
}

/// The error line: the last line of stderr that names the tool (a table or document may precede it).
fn error_line(stderr: &str, tool: &str) -> String {
    stderr.lines().rev().find(|l| l.starts_with(&format!("{tool}:"))).unwrap_or("").to_string()
}

/// What a tool could change on node `k`: every path with its size and mtime, outside what the
/// kubelet and the runtime own (their state, the container logs).
fn node_state(c: &Cluster, k: usize) -> std::collections::BTreeMap<std::path::PathBuf, (u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let root = &c.node(k).root;
    let owned = [root.join("run"), root.join("var/log"), root.join("kubelet.log"), root.join("var/lib/lab-kubelet")];
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(p) = stack.pop() {
        if owned.iter().any(|o| p.starts_with(o)) {
            continue;
        }
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().filter_map(Result::ok).map(|e| e.path()));
        }
        out.insert(p, (m.size(), m.mtime(), m.mtime_nsec()));
    }
    out
}

/// Every member frozen: each procedure that needs the cluster gives up within its timeouts, and
/// writes nothing on any node.
#[test]
fn frozen_cluster_every_network_step_3_5_30() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    let backups = c.base.join("backups");
    let template = c.node(3).manifest();
    let pids: Vec<i32> = (1..=3).map(|k| c.freeze(k)).collect();
    let before: Vec<_> = (1..=3).map(|k| node_state(&c, k)).collect();
    let cases: Vec<(&str, usize, Vec<&str>, i32)> = vec![
        ("etcd-status", 1, vec![], 7),
        ("etcd-snap", 1, vec!["save", "--dir", backups.to_str().unwrap()], 7),
        ("etcd-member", 1, vec!["remove", "node3", "--yes"], 7),
        ("etcd-member", 1, vec!["add", "node4", "https://127.0.0.99:2380", "--yes"], 7),
        ("etcd-member", 1, vec!["promote", "node3", "--yes"], 7),
        ("etcd-member", 3, vec!["join", "--yes", "--template", template.to_str().unwrap()], 7),
    ];
    let mut failures = Vec::new();
    for (tool, k, args, want) in cases {
        let manifest_before = std::fs::read(c.node(k).manifest()).unwrap();
        let t = Instant::now();
        let mut cmd = c.tool(tool, k);
        cmd.args(&args).args(TIMEOUTS).args(["-w", "json"]);
        let r = etcd_lab::run(cmd, None);
        let took = t.elapsed();
        let line = error_line(&r.stderr, tool);
        let what = format!("{tool} {}", args.join(" "));
        // Three members probed in parallel: dial plus one request each, with slack for a debug build.
        if took > Duration::from_secs(8) {
            failures.push(format!("{what}: took {took:?}"));
        }
        if r.code != want {
            failures.push(format!("{what}: exit {} (want {want}): {}", r.code, r.stderr));
        }
        if !line.contains(&c.node(1).client_url()) && !line.contains(&c.node(k).client_url()) {
            failures.push(format!("{what}: the error names no endpoint: {:?}", r.stderr));
        }
        if std::fs::read(c.node(k).manifest()).unwrap() != manifest_before {
            failures.push(format!("{what}: the manifest changed"));
        }
    }
    assert!(files(&backups).is_empty(), "{:?}", files(&backups));
    for (k, was) in (1..=3).zip(&before) {
        let now = node_state(&c, k);
        let changed: Vec<_> = now.iter().filter(|(p, v)| was.get(*p) != Some(v)).map(|(p, _)| p).collect();
        let gone: Vec<_> = was.keys().filter(|p| !now.contains_key(*p)).collect();
        failures.extend(changed.iter().map(|p| format!("node{k}: {} written", p.display())));
        failures.extend(gone.iter().map(|p| format!("node{k}: {} gone", p.display())));
    }
    for pid in pids {
        c.thaw(pid);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Thawed, the cluster is whole: nothing was changed behind its back.
    c.wait_healthy(&[1, 2, 3], Duration::from_secs(30));
    let members = c.run_json("etcd-status", 1, &[], None);
    assert_eq!(members.code, 0, "{}", members.stderr);
    assert_eq!(members.json["members"].as_array().unwrap().len(), 3);
}

/// The snapshot's source frozen mid-stream: the stall timeout ends the save (exit 7), no file left;
/// killed mid-stream: the broken stream is reported (exit 1), no file left.
#[test]
fn member_frozen_or_killed_mid_snapshot_3_5_30() {
    let c = Cluster::start(Spec::new(1, "3.5.30"));
    let value = "x".repeat(100_000);
    for i in 0..300 {
        c.etcdctl_ok(&["put", &format!("/registry/configmaps/c{i}"), &value]);
    }
    let dir = c.base.join("backups");
    let url = c.node(1).client_url();
    for fault in ["SIGSTOP", "SIGKILL"] {
        // The fault has to land while bytes flow: retried when the save was quicker than that.
        let mut landed = false;
        for _attempt in 0..5 {
            let mut cmd = c.tool("etcd-snap", 1);
            cmd.args(["save", "--dir", dir.to_str().unwrap(), "--from", &url, "--stall-timeout", "2s", "-w", "json"])
                .args(TIMEOUTS)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let child = cmd.spawn().unwrap();
            let t = Instant::now();
            // Wait for the first bytes of the .part.
            while !files(&dir)
                .iter()
                .any(|n| n.ends_with(".part") && std::fs::metadata(dir.join(n)).map(|m| m.len() > 0).unwrap_or(false))
                && t.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_micros(200));
            }
            let pid = c.etcd_pid(1);
            let signal = if fault == "SIGSTOP" { libc::SIGSTOP } else { libc::SIGKILL };
            // SAFETY: kill(2) on the lab's etcd.
            unsafe { libc::kill(pid, signal) };
            let t = Instant::now();
            let out = child.wait_with_output().unwrap();
            let took = t.elapsed();
            if fault == "SIGSTOP" {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGCONT) };
            }
            c.wait_healthy(&[1], Duration::from_secs(30));
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            if out.status.success() {
                // Done before the signal: the file it wrote is whole; try again.
                for n in files(&dir) {
                    common::disk::snapshot::verify(&dir.join(&n), false).unwrap();
                    std::fs::remove_file(dir.join(n)).unwrap();
                }
                continue;
            }
            landed = true;
            assert!(took < Duration::from_secs(10), "{fault}: took {took:?}");
            let line = error_line(&stderr, "etcd-snap");
            if fault == "SIGSTOP" {
                assert_eq!(out.status.code(), Some(7), "{stderr}");
                assert!(line.contains("snapshot stalled: no bytes for 2s"), "{stderr}");
            } else {
                assert_eq!(out.status.code(), Some(1), "{stderr}");
                assert!(line.contains("snapshot stream broken after"), "{stderr}");
            }
            assert!(line.contains(&url), "{stderr}");
            assert!(files(&dir).is_empty(), "{fault}: {:?}", files(&dir));
            break;
        }
        assert!(landed, "{fault}: the save always finished before the signal");
    }
}

/// Freezes node `k`'s etcd once the kubelet has replaced the container whose pid was `old`.
fn freeze_new(c: &Cluster, k: usize, old: i32) -> i32 {
    let t = Instant::now();
    loop {
        let pid = c.etcd_pid(k);
        if pid != old {
            return c.freeze(k);
        }
        assert!(t.elapsed() < Duration::from_secs(30), "node{k}: no new etcd container");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A one-member lab, a snapshot, a key written after it, and a swap whose restored etcd freezes
/// before it answers: the health wait ends at --timeout (exit 7) and the undo takes the new
/// manifest out. The kubelet gives the frozen container its 30 s grace period, longer than
/// --timeout: the undo stops there instead of moving the data dir from under the live etcd and
/// starting the old member beside it. Returns the lab, the swap's arguments, the original manifest,
/// and the undo's two ways on (a rerun, or the way back), once the kubelet has killed the etcd.
fn swap_stopped_midway() -> (Cluster, Vec<String>, Vec<u8>, String) {
    let c = Cluster::start(Spec::new(1, "3.5.30"));
    c.etcdctl_ok(&["put", "/registry/before", "1"]);
    let snap = c.base.join("s.db");
    let r = c.run_json("etcd-snap", 1, &["save", "--out", snap.to_str().unwrap()], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    c.etcdctl_ok(&["put", "/registry/after", "2"]);
    let manifest_before = std::fs::read(c.node(1).manifest()).unwrap();
    let old = c.etcd_pid(1);
    let args: Vec<String> = ["--swap", "--snapshot", snap.to_str().unwrap(), "--yes", "--timeout", "12s"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    let mut cmd = c.tool("etcd-restore", 1);
    cmd.args(&args).args(["-w", "json"]);
    let mut frozen = 0;
    let (r, took) = c.paused_at(cmd, "swap-manifest-written", |_| frozen = freeze_new(&c, 1, old));
    let line = error_line(&r.stderr, "etcd-restore");
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(line.contains("not healthy within 12s"), "{line}");
    assert!(line.contains("undone: new manifest taken out"), "{line}");
    assert!(!line.contains("old data dir back in") && !line.contains("original manifest back"), "{line}");
    assert!(line.contains("run the same command again to finish the swap"), "{line}");
    // The health wait, then the undo's own wait for etcd to stop, with slack.
    assert!(took < Duration::from_secs(35), "took {took:?}");
    assert!(!c.node(1).manifest().exists(), "no manifest while the restored etcd may still run");
    let data_dir = c.node(1).root.join("var/lib/etcd");
    // The restored data stays in place: there (the snapshot's key), and not the old data.
    assert!(etcd_lab::holds(&data_dir, b"/registry/before"), "the restored data stays in place");
    assert!(!etcd_lab::holds(&data_dir, b"/registry/after"), "the restored data stays in place");
    assert!(c.node(1).root.join("var/lib/etcd-recovery/swap-in-progress.json").is_file(), "the journal stays");
    let way_back = line.split("or go back: ").nth(1).expect("the way back").to_string();
    c.thaw(frozen);
    let t = Instant::now();
    while Path::new(&format!("/proc/{frozen}")).exists() {
        assert!(t.elapsed() < Duration::from_secs(40), "the kubelet never stopped the frozen etcd");
        std::thread::sleep(Duration::from_millis(100));
    }
    (c, args, manifest_before, way_back)
}

/// The way back the stopped undo prints works: the old data serves again, with what was written
/// after the snapshot.
#[test]
fn swap_with_the_restored_etcd_frozen_the_way_back_3_5_30() {
    let (c, _, manifest_before, way_back) = swap_stopped_midway();
    let out = std::process::Command::new("sh").args(["-c", &way_back]).output().unwrap();
    assert!(out.status.success(), "{way_back}: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(c.node(1).manifest()).unwrap(), manifest_before);
    c.wait_healthy(&[1], Duration::from_secs(30));
    assert_eq!(c.etcdctl_ok(&["get", "/registry/after", "--print-value-only"]).trim(), "2");
}

/// Or the same command run again, through the journal the stopped undo kept, finishes the swap.
#[test]
fn swap_with_the_restored_etcd_frozen_then_rerun_3_5_30() {
    let (c, args, _, _) = swap_stopped_midway();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = c.run_json("etcd-restore", 1, &args, None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert_eq!(r.json["swappedIn"], true);
    assert!(!c.node(1).root.join("var/lib/etcd-recovery/swap-in-progress.json").exists());
    assert_eq!(c.etcdctl_ok(&["get", "/registry/before", "--print-value-only"]).trim(), "1");
    assert!(c.etcdctl_ok(&["get", "/registry/after", "--print-value-only"]).trim().is_empty(), "the snapshot's data");
}

/// After a quorum loss, the survivor's forced start freezes: recover's restart wait ends at
/// --timeout (exit 7), and the flag is out of the manifest again, the data dir's copy kept.
#[test]
fn recover_with_the_forced_etcd_frozen_3_5_30() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    c.etcdctl_ok(&["put", "/registry/kept", "1"]);
    c.stop_node(2);
    c.stop_node(3);
    let old = c.etcd_pid(1);
    let mut cmd = c.tool("etcd-quorum", 1);
    cmd.args(["recover", "--yes", "--timeout", "8s", "-w", "json"]).args(TIMEOUTS);
    let mut frozen = 0;
    let (r, took) = c.paused_at(cmd, "recover-flag-in", |_| frozen = freeze_new(&c, 1, old));
    let line = error_line(&r.stderr, "etcd-quorum");
    c.thaw(frozen);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(line.contains("the flag is out of the manifest again"), "{line}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let m = common::manifest::Manifest::load(&c.node(1).manifest()).unwrap();
    assert!(!m.force_new_cluster(), "{:?}", m.argv);
    let copy = line.split("(copy in ").nth(1).and_then(|s| s.split(')').next()).unwrap_or("");
    assert!(Path::new(copy).join("member/snap/db").is_file(), "no data dir copy named: {line}");
}
