//! etcd-quorum on the lab: offline inspection agrees with the server, the survivor choice follows
//! raft's rule, and a two-of-three loss is recovered through the manifest, flag taken out again.

use etcd_lab::{Cluster, Spec};
use serde_json::Value;

fn put(c: &Cluster, n: usize) {
    for i in 0..n {
        c.etcdctl_ok(&["put", &format!("/registry/pods/p{i}"), &format!("pod-{i}")]);
    }
}

fn keys_on(c: &Cluster, k: usize) -> usize {
    let out =
        c.etcdctl(&c.node(k).client_url(), &["get", "--prefix", "/registry/pods/", "--keys-only", "--consistency=s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).count()
}

/// Stops node `k` the way a dead host stops: its container killed, its manifest kept away.
fn lose(c: &Cluster, k: usize) {
    c.stop_node(k);
}

fn recover(version: &str) {
    let c = Cluster::start(Spec::new(3, version));
    put(&c, 25);
    // What the server says just before the stop, to check inspect against.
    let out = c.etcdctl(&c.node(1).client_url(), &["endpoint", "status", "-w", "json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let members: Value = serde_json::from_str(&c.etcdctl_ok(&["member", "list", "-w", "json"])).unwrap();
    let revision = status[0]["Status"]["header"]["revision"].as_i64().unwrap();
    let raft_index = status[0]["Status"]["raftIndex"].as_u64().unwrap();
    let own_id = format!("{:016x}", status[0]["Status"]["header"]["member_id"].as_u64().unwrap());
    let cluster_id = format!("{:016x}", members["header"]["cluster_id"].as_u64().unwrap());

    lose(&c, 2);
    lose(&c, 3);
    let s = c.run_json("etcd-status", 1, &[], None);
    assert_eq!(s.code, 4, "{}", s.stderr);

    // clean on a lost node (its etcd crash-looping) while the quorum is lost: refused, its data
    // dir kept for inspect and pick (it may be the most up to date).
    let n2 = c.node(2);
    let parked = std::fs::read_to_string(n2.parked_manifest()).unwrap();
    let crashing = parked.replace("--snapshot-count=10000", "--snapshot-count=many");
    assert_ne!(crashing, parked);
    std::fs::write(n2.manifest(), crashing).unwrap();
    let r = c.run_json("etcd-member", 2, &["clean", "--yes"], None);
    assert_eq!(r.code, 5, "{}\n{}", r.stderr, r.stdout);
    assert!(r.stderr.contains("quorum lost (1 of 3 voters answer, 2 needed)"), "{}", r.stderr);
    assert!(r.stderr.contains("etcd-quorum inspect here"), "{}", r.stderr);
    assert!(n2.root.join("var/lib/etcd/member/snap/db").is_file() && n2.manifest().is_file());
    // Its disk lost (no member data left to keep): nothing stands in the way.
    let data = n2.root.join("var/lib/etcd");
    std::fs::rename(&data, n2.root.join("var/lib/etcd-kept")).unwrap();
    std::fs::create_dir(&data).unwrap();
    let dry = c.run_json("etcd-member", 2, &["clean", "--dry-run"], None);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stderr, dry.stdout);
    let checks = dry.json["preconditions"].as_array().unwrap();
    assert!(!checks.is_empty() && checks.iter().all(|p| p["ok"] == true), "{}", dry.stdout);
    std::fs::remove_dir(&data).unwrap();
    std::fs::rename(n2.root.join("var/lib/etcd-kept"), &data).unwrap();
    std::fs::remove_file(n2.manifest()).unwrap();

    // A live majority is needed for nothing here; inspect works while node1's etcd runs.
    let i = c.run_json("etcd-quorum", 1, &["inspect"], None);
    assert_eq!(i.code, 0, "{}", i.stderr);
    assert_eq!(i.json["kind"], "DataDirInspection");
    assert_eq!(i.json["memberId"], own_id.as_str());
    assert_eq!(i.json["clusterId"], cluster_id.as_str());
    assert_eq!(i.json["revision"], revision);
    assert_eq!(i.json["name"], "node1");
    assert_eq!(i.json["walCrcOk"], true);
    // Read under a running etcd: said so (its commit and applied index on disk lag what it serves).
    assert_eq!(i.json["etcdRunning"], true, "{}", i.stdout);
    assert!(i.stderr.contains("etcd runs on ") && i.stderr.contains("inspect again"), "{}", i.stderr);
    assert!(i.json["lastIndex"].as_u64().unwrap() >= raft_index, "{} vs raft index {raft_index}", i.json);
    assert!(i.json["appliedIndex"].as_u64().unwrap() > 0);

    let manifest_before = std::fs::read(c.node(1).manifest()).unwrap();
    let dry = c.run_json("etcd-quorum", 1, &["recover", "--dry-run"], None);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stderr, dry.stdout);
    assert_eq!(dry.json["kind"], "Plan", "{}", dry.stdout);
    assert_eq!(std::fs::read(c.node(1).manifest()).unwrap(), manifest_before, "a dry run changes nothing");
    let backups = c.node(1).root.join("var/lib/etcd-recovery");
    assert!(etcd_lab::dir_names(&backups).iter().all(|n| n.starts_with('.')), "a dry run copies nothing");
    // A TERM with the flag in (a `timeout` wrapper, a systemd stop): the recovery goes on to its
    // end, prints its result, and only then ends by that signal (so a script stops there).
    let mut cmd = c.tool("etcd-quorum", 1);
    cmd.args(["recover", "--yes", "-w", "json"]);
    let (r, _) = c.paused_at(cmd, "recover-flag-in", |pid| assert!(etcd_lab::cri::signal(pid, libc::SIGTERM)));
    assert_eq!(r.code, 128 + libc::SIGTERM, "{}\n{}", r.stderr, r.stdout);
    assert!(r.stderr.contains("signal received; the procedure goes on to its end"), "{}", r.stderr);
    assert_eq!(r.json["kind"], "QuorumRecovery", "{}\n{}", r.stderr, r.stdout);
    assert_eq!(r.json["manifestRestored"], true);
    assert!(std::path::Path::new(r.json["backup"].as_str().unwrap()).join("member/snap/db").is_file());
    let mut rejoin: Vec<String> =
        r.json["membersToRejoin"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    rejoin.sort();
    assert_eq!(rejoin, ["node2", "node3"]);
    let manifest = std::fs::read_to_string(c.node(1).manifest()).unwrap();
    assert!(!manifest.contains("force-new-cluster"), "{manifest}");
    assert_eq!(keys_on(&c, 1), 25);
    let s = c.run_json("etcd-status", 1, &["--endpoints", &c.node(1).client_url()], None);
    assert_eq!(s.json["members"].as_array().unwrap().len(), 1, "{}", s.json);
    assert_eq!(s.json["clusterId"], cluster_id.as_str(), "force-new-cluster keeps the cluster ID");
    // Run again (the on-call is not sure the first run finished): nothing to do, nothing changed.
    let again = c.run_json("etcd-quorum", 1, &["recover", "--yes"], None);
    assert_eq!(again.code, 0, "{}\n{}", again.stderr, again.stdout);
    assert!(again.stderr.contains("node1 ("), "{}", again.stderr);
    assert!(again.stderr.contains("already runs as a one-member cluster"), "{}", again.stderr);
    assert_eq!(again.json["steps"], serde_json::json!([]));
    assert_eq!(std::fs::read_to_string(c.node(1).manifest()).unwrap(), manifest);

    // node2's host comes back with its old manifest: its member was removed by the recovery, and
    // its etcd exits at each start. The cluster is healthy; etcd-status on node2 says what is
    // wrong with node2.
    std::fs::copy(c.node(2).parked_manifest(), c.node(2).manifest()).unwrap();
    c.wait_container(2, "exited", |j| j["state"] == "CONTAINER_EXITED");
    let s = c.run_json("etcd-status", 2, &[], None);
    assert_eq!(s.code, 3, "{}\n{}", s.stderr, s.stdout);
    let w = s.json["warnings"].to_string();
    assert!(w.contains("this node's member (node2, ") && w.contains("is not in the cluster's member list"), "{w}");

    for k in [2, 3] {
        let r = c.run_json("etcd-member", k, &["clean", "--yes"], None);
        assert_eq!(r.code, 0, "clean node{k}: {}", r.stderr);
        let template = c.node(k).parked_manifest();
        let r = c.run_json("etcd-member", k, &["join", "--yes", "--template", template.to_str().unwrap()], None);
        assert_eq!(r.code, 0, "join node{k}: {}\n{}", r.stderr, r.stdout);
    }
    c.wait_healthy(&[1, 2, 3], std::time::Duration::from_secs(30));
    for k in 1..=3 {
        assert_eq!(keys_on(&c, k), 25, "node{k}");
    }
    let s = c.run_json("etcd-status", 1, &[], None);
    assert_eq!(s.code, 0, "{}\n{}", s.stderr, s.stdout);
}

#[test]
fn recover_3_4_23() {
    recover("3.4.23");
}

#[test]
fn recover_3_5_30() {
    recover("3.5.30");
}

/// A live majority: recover is refused and nothing changes.
#[test]
fn live_majority_is_refused() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    let before = std::fs::read_to_string(c.node(1).manifest()).unwrap();
    let r = c.run_json("etcd-quorum", 1, &["recover", "--yes"], None);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("splits it"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(c.node(1).manifest()).unwrap(), before);
    assert!(!c.node(1).root.join("var/lib/etcd-recovery").exists());
    // --via-restore's dry run shows recover's own refusal, not only the swap's plan.
    let r = c.run_json("etcd-quorum", 1, &["recover", "--via-restore", "--dry-run"], None);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert_eq!(r.json["kind"], "Plan", "{}", r.stdout);
    assert!(r.stdout.contains("a majority of voters is NOT reachable"), "{}", r.stdout);
    // Certificates that reach no member make the majority look lost: a TLS failure is no proof
    // that a member is down, so recover still refuses.
    let wrong_ca = c.node(1).pki().join("server.crt");
    let r = c.run_json("etcd-quorum", 1, &["recover", "--yes", "--cacert", wrong_ca.to_str().unwrap()], None);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr.contains("no member hidden by a TLS failure") && r.stderr.contains("TLS failed with"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_to_string(c.node(1).manifest()).unwrap(), before);
    assert!(!c.node(1).root.join("var/lib/etcd-recovery").exists());
}

fn edit_manifest(c: &Cluster, k: usize, f: impl FnOnce(&mut common::manifest::Manifest)) {
    let mut m = common::manifest::Manifest::load(&c.node(k).manifest()).unwrap();
    f(&mut m);
    m.save().unwrap();
}

/// A refusal that changed nothing: the manifest as it was, no backup made.
fn refused_unchanged(c: &Cluster, r: &etcd_lab::Run, manifest: &str, why: &str) {
    assert_eq!(r.code, 5, "{}\n{}", r.stderr, r.stdout);
    assert!(r.stderr.contains(why), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(c.node(1).manifest()).unwrap(), manifest);
    assert!(!c.node(1).root.join("var/lib/etcd-recovery").exists());
}

/// The others' client port unreachable from here (a firewall; here they advertise a dead port),
/// while node1's member follows their leader: few answer, but a majority works.
#[test]
fn a_member_following_a_leader_is_refused() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    for k in [2, 3] {
        let dead = format!("https://{}:23790", c.node(k).ip);
        edit_manifest(&c, k, |m| m.set_flag("advertise-client-urls", &dead).unwrap());
    }
    let m = c.etcdctl_ok(&["member", "list"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while c.etcdctl_ok(&["member", "list"]).matches(":23790").count() < 2 {
        assert!(std::time::Instant::now() < deadline, "the new client URLs were never published: {m}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    c.wait_healthy(&[1], std::time::Duration::from_secs(30));
    let before = std::fs::read_to_string(c.node(1).manifest()).unwrap();
    let r = c.run_json("etcd-quorum", 1, &["recover", "--yes", "--endpoints", &c.node(1).client_url()], None);
    refused_unchanged(&c, &r, &before, "follows leader");
    assert!(!r.stderr.contains("a majority of voters is NOT reachable:"), "the count alone passes: {}", r.stderr);
}

/// kubeadm's first node: its manifest names only itself. Removed from the cluster, its etcd
/// crash-loops while node2 and node3 serve: nothing answers at the manifest's address, but the
/// members its db knows do.
#[test]
fn a_first_node_removed_from_a_live_cluster_is_refused() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    put(&c, 5);
    let alone = format!("node1={}", c.node(1).peer_url());
    edit_manifest(&c, 1, |m| m.set_flag("initial-cluster", &alone).unwrap());
    c.wait_healthy(&[1, 2, 3], std::time::Duration::from_secs(30));
    let list: Value = serde_json::from_str(&c.etcdctl_ok(&["member", "list", "-w", "json"])).unwrap();
    let id = list["members"].as_array().unwrap().iter().find(|m| m["name"] == "node1").unwrap()["ID"].as_u64().unwrap();
    // node1 has just restarted: etcd refuses removals for a few seconds after that.
    c.member_change(&c.node(2).client_url(), &["member", "remove", &format!("{id:x}")]);
    c.wait_container(1, "etcd exited (removed)", |j| j["state"] == "CONTAINER_EXITED");
    let before = std::fs::read_to_string(c.node(1).manifest()).unwrap();
    let r = c.run_json("etcd-quorum", 1, &["recover", "--yes"], None);
    refused_unchanged(&c, &r, &before, "2 of 2 voters answer");
    assert_eq!(keys_on(&c, 2), 5, "the live cluster untouched");
}

/// Five nodes; node4 stopped early (behind), then nodes 1-3 lost: pick prefers node5.
#[test]
fn pick_prefers_the_most_up_to_date() {
    let c = Cluster::start(Spec::new(5, "3.5.30"));
    put(&c, 5);
    c.stop_node(4);
    put(&c, 20);
    for k in [1, 2, 3, 5] {
        c.stop_node(k);
    }
    let mut all = String::new();
    for k in [4, 5] {
        let mut cmd = c.tool("etcd-quorum", k);
        cmd.args(["inspect", "-w", "json", "--manifest"]).arg(c.node(k).parked_manifest());
        let r = etcd_lab::run(cmd, None);
        assert_eq!(r.code, 0, "{}", r.stderr);
        all += &r.stdout;
    }
    // With its manifest moved out and no flag (the kubeadm way to stop etcd), kubeadm's data dir.
    let bare = c.run_json("etcd-quorum", 5, &["inspect"], None);
    assert_eq!(bare.code, 0, "{}", bare.stderr);
    assert!(bare.json["dataDir"].as_str().unwrap().ends_with("node5/var/lib/etcd"), "{}", bare.stdout);
    assert_eq!(bare.json["etcdRunning"], false, "{}", bare.stdout);
    assert!(all.contains(&format!("\"memberId\": {}", bare.json["memberId"])), "{}", bare.stdout);
    // One node whose inspect fails (its data dir gone) is in the loop's output too: it is named
    // as not weighed, and the others are still picked from.
    let empty = c.base.join("no-data");
    std::fs::create_dir_all(&empty).unwrap();
    // kubeadm names the member after the host.
    std::fs::write(c.node(3).root.join("etc/hostname"), "node3\n").unwrap();
    let mut cmd = c.tool("etcd-quorum", 3);
    cmd.args(["inspect", "-w", "json", "--data-dir"]).arg(&empty);
    let failed = etcd_lab::run(cmd, None);
    assert_ne!(failed.code, 0, "{}", failed.stdout);
    assert_eq!(failed.json["kind"], "Error", "{}", failed.stdout);
    let p = c.run_json("etcd-quorum", 1, &["pick"], Some(&format!("{all}{}", failed.stdout)));
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert_eq!(p.json["survivor"], "node5", "{}", p.json);
    let loser = p.json["candidates"].as_array().unwrap().iter().find(|x| x["name"] == "node4").unwrap();
    assert!(loser["why"].as_str().unwrap().contains("<"), "{loser}");
    let skipped: Vec<&str> = p.json["skipped"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    // node3 listed once, as the failed inspect it is.
    assert_eq!(skipped.len(), 3, "{}", p.json);
    // Named by the host it came from (with no manifest, its host name): in the runbook's ssh
    // loop every node's data dir is /var/lib/etcd.
    assert!(skipped[0].contains("node node3: ") && skipped[0].contains("no-data"), "{}", p.json);
    assert!(p.stderr.contains("not a candidate, its inspect failed"), "{}", p.stderr);
    // The voters the documents list that sent nothing (an ssh that failed in the loop) are named.
    for (k, s) in (1..=2).zip(&skipped[1..]) {
        assert!(s.starts_with(&format!("node{k} (")) && s.contains("no DataDirInspection given"), "{s}");
    }
    // Documents of another cluster are refused.
    let docs: Vec<Value> = serde_json::Deserializer::from_str(&all).into_iter::<Value>().map(Result::unwrap).collect();
    assert_eq!(docs.len(), 2);
    let mut other = docs[0].clone();
    other["clusterId"] = Value::String("0123456789abcdef".into());
    let mixed = format!("{all}\n{other}");
    let p = c.run_json("etcd-quorum", 1, &["pick"], Some(&mixed));
    assert_eq!(p.code, 5, "{}", p.stderr);
    assert!(p.stderr.contains("different clusters"), "{}", p.stderr);
    // The most up-to-date member with a corrupt WAL is passed over; all corrupt: refused.
    let doc = |v: &Value, ok: bool| {
        let mut v = v.clone();
        v["walCrcOk"] = Value::Bool(ok);
        v.to_string()
    };
    let (d4, d5) = if docs[0]["name"] == "node4" { (&docs[0], &docs[1]) } else { (&docs[1], &docs[0]) };
    let p = c.run_json("etcd-quorum", 1, &["pick"], Some(&format!("{}{}", doc(d4, true), doc(d5, false))));
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert_eq!(p.json["survivor"], "node4", "{}", p.json);
    let passed = p.json["candidates"].as_array().unwrap().iter().find(|x| x["name"] == "node5").unwrap();
    assert!(passed["why"].as_str().unwrap().contains("WAL is corrupt"), "{passed}");
    let p = c.run_json("etcd-quorum", 1, &["pick"], Some(&format!("{}{}", doc(d4, false), doc(d5, false))));
    assert_eq!(p.code, 5, "{}", p.stderr);
    assert!(p.stderr.contains("--via-restore"), "{}", p.stderr);
}

/// A survivor that cannot start with the flag (its WAL damaged): the flag is taken out again, the
/// exit says why, and the copy of the data dir exists.
#[test]
fn survivor_that_cannot_start_keeps_no_flag() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    put(&c, 5);
    c.stop_node(2);
    c.stop_node(3);
    // Damage the first WAL segment's records (past the first one) while node1's etcd is stopped,
    // then give it back its manifest: it fails to start from that WAL, and crash-loops.
    c.stop_node(1);
    let wal_dir = c.node(1).root.join("var/lib/etcd/member/wal");
    let first = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .min()
        .unwrap();
    let mut bytes = std::fs::read(&first).unwrap();
    for b in &mut bytes[40..400] {
        *b ^= 0x5a;
    }
    std::fs::write(&first, &bytes).unwrap();
    std::fs::rename(c.node(1).parked_manifest(), c.node(1).manifest()).unwrap();
    // The plan sees the damage and refuses, changing nothing.
    let r = c.run_json("etcd-quorum", 1, &["recover", "--yes", "--timeout", "15s"], None);
    assert_eq!(r.code, 5, "{}\n{}", r.stderr, r.stdout);
    assert!(r.stderr.contains("WAL intact") && r.stderr.contains("--via-restore"), "{}", r.stderr);
    assert!(!c.node(1).root.join("var/lib/etcd-recovery").exists());
    // Forced anyway: etcd cannot start from it, and the flag comes out again.
    let r = c.run_json("etcd-quorum", 1, &["recover", "--yes", "--force", "--timeout", "15s"], None);
    assert_eq!(r.code, 7, "{}\n{}", r.stderr, r.stdout);
    assert!(r.stderr.contains("the flag is out of the manifest again"), "{}", r.stderr);
    // Its container did start with the flag: whether it forced anything is the WAL's to say.
    assert!(r.stderr.contains("etcd did start with the flag (container "), "{}", r.stderr);
    let manifest = std::fs::read_to_string(c.node(1).manifest()).unwrap();
    assert!(!manifest.contains("force-new-cluster"), "{manifest}");
    let backups = c.node(1).root.join("var/lib/etcd-recovery");
    let copies: Vec<_> =
        std::fs::read_dir(&backups).unwrap().map(|e| e.unwrap().path().join("etcd/member/snap/db")).collect();
    assert!(copies.iter().any(|p| p.is_file()), "{copies:?}");
    // Killed with the flag in, then run again: the forced etcd never comes up, and the rerun
    // takes the flag out as the first run does (it stayed in for good before).
    let mut cmd = c.tool("etcd-quorum", 1);
    cmd.args(["recover", "--yes", "--force", "--timeout", "15s"]);
    let (r, _) = c.paused_at(cmd, "recover-flag-in", |pid| assert!(etcd_lab::cri::signal(pid, libc::SIGKILL)));
    assert_eq!(r.code, 128 + libc::SIGKILL, "{}", r.stderr);
    assert!(std::fs::read_to_string(c.node(1).manifest()).unwrap().contains("--force-new-cluster"));
    let r = c.run_json("etcd-quorum", 1, &["recover", "--yes", "--force", "--timeout", "15s"], None);
    assert_eq!(r.code, 7, "{}\n{}", r.stderr, r.stdout);
    assert!(r.stderr.contains("the flag is out of the manifest again"), "{}", r.stderr);
    let manifest = std::fs::read_to_string(c.node(1).manifest()).unwrap();
    assert!(!manifest.contains("force-new-cluster"), "{manifest}");
}

/// A voter and a learner survive (the learner added by a join that never got promoted). The
/// learner still names the gone leader: recover cannot tell that from a majority out of its reach
/// and refuses, naming the one override that lifts only this check; with it, it recovers.
#[test]
fn a_surviving_learner_naming_a_gone_leader_3_5_30() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    put(&c, 5);
    // node3 comes back as a learner of its own (removed, cleaned, added, started, not promoted).
    let n3 = c.node(3);
    c.stop_node(3);
    let r = c.run_json("etcd-member", 1, &["remove", "node3", "--yes"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    std::fs::rename(n3.root.join("var/lib/etcd"), n3.root.join("var/lib/etcd-old")).unwrap();
    let add = c.run_json("etcd-member", 1, &["add", "node3", &n3.peer_url(), "--yes"], None);
    assert_eq!(add.code, 0, "{}", add.stderr);
    let mut m = common::manifest::Manifest::load(&n3.parked_manifest()).unwrap();
    m.set_flag("initial-cluster", add.json["initialCluster"].as_str().unwrap()).unwrap();
    m.set_flag("initial-cluster-state", "existing").unwrap();
    m.path = n3.manifest();
    m.save().unwrap();
    c.wait_container(3, "running", |x| x["state"] == "CONTAINER_RUNNING");
    // The learner follows node2, which then goes with its host: node1 alone of the voters.
    let listed: Value = serde_json::from_str(&c.etcdctl_ok(&["member", "list", "-w", "json"])).unwrap();
    let id = |name: &str| {
        let m = listed["members"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap();
        format!("{:016x}", m["ID"].as_u64().unwrap())
    };
    let node2 = id("node2");
    c.etcdctl_ok(&["move-leader", &node2, "--endpoints", &c.node(1).client_url()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let s = c.etcdctl(&n3.client_url(), &["endpoint", "status", "-w", "json"]);
        let v: Value = serde_json::from_slice(&s.stdout).unwrap_or_default();
        if v[0]["Status"]["leader"].as_u64().map(|l| format!("{l:016x}")) == Some(node2.clone()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the learner does not follow node2");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    // node2's host dies: no graceful stop (a leader that stops hands its leadership over).
    let pid = c.etcd_pid(2);
    // SAFETY: kill(2) on the lab's etcd.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    std::fs::rename(c.node(2).manifest(), c.node(2).parked_manifest()).unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    c.wait_container(2, "exited", |x| x["state"] == "CONTAINER_EXITED");
    let r = c.run_json("etcd-quorum", 1, &["recover", "--yes", "--timeout", "60s"], None);
    assert_eq!(r.code, 5, "{}\n{}", r.stderr, r.stdout);
    assert!(
        r.stderr.contains(&format!("follows {node2}")) && r.stderr.contains(&format!("--leader-gone {node2}")),
        "{}",
        r.stderr
    );
    let r = c.run_json("etcd-quorum", 1, &["recover", "--yes", "--timeout", "60s", "--leader-gone", &node2], None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert_eq!(keys_on(&c, 1), 5);
}

/// A restart that fails after the flag came out (here the manifest broken meanwhile): the error
/// says the forced start is done, the flag out, and where the copy of the data dir is.
#[test]
fn a_failure_after_the_flag_is_out_says_what_is_done() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    put(&c, 5);
    lose(&c, 2);
    lose(&c, 3);
    let mut cmd = c.tool("etcd-quorum", 1);
    cmd.args(["recover", "--yes", "--timeout", "10s"]);
    let manifest = c.node(1).manifest();
    let (r, _) = c.paused_at(cmd, "recover-flag-out", |_| {
        let text = std::fs::read_to_string(&manifest).unwrap();
        let broken = text.replace("--snapshot-count=10000", "--snapshot-count=many");
        assert_ne!(broken, text);
        std::fs::write(&manifest, broken).unwrap();
    });
    assert_eq!(r.code, 7, "{}\n{}", r.stderr, r.stdout);
    let want = format!("the forced start is done and --force-new-cluster is out of {}", manifest.display());
    assert!(r.stderr.contains(&want) && r.stderr.contains("the data dir as it was is copied in "), "{}", r.stderr);
}

/// `--via-restore --bump-revision`: the survivor's own db restored, a new cluster ID, the
/// revision jumped, the keys intact.
#[test]
fn recover_via_restore_3_5_30() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    put(&c, 12);
    let old = c.run_json("etcd-status", 1, &[], None).json;
    let old_rev = old["members"][0]["endpoint"]["raftIndex"].as_u64().unwrap();
    c.stop_node(2);
    c.stop_node(3);
    let backups = c.node(1).root.join("var/lib/etcd-recovery");
    // Without --yes off a terminal: refused before the db is copied anywhere.
    let r = c.run_json(
        "etcd-quorum",
        1,
        &["recover", "--via-restore", "--bump-revision", "1000", "--mark-compacted"],
        None,
    );
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(!backups.exists() || etcd_lab::dir_names(&backups).is_empty(), "{:?}", etcd_lab::dir_names(&backups));
    let r = c.run_json("etcd-quorum", 1, &["recover", "--via-restore", "--bump-revision", "1000"], None);
    assert_eq!(r.code, 2, "{}", r.stderr);
    // Its output cut off (an ssh session gone, a `| tee` killed) and a TERM, while etcd is stopped:
    // the swap goes on to its end, its prints to the closed pipes dropped instead of aborting the
    // tool (an abort would end it by SIGABRT), and the TERM ends it afterwards.
    let mut cmd = c.tool("etcd-quorum", 1);
    cmd.args(["recover", "--via-restore", "--bump-revision", "1000", "--mark-compacted", "--yes", "-w", "json"]);
    let code = etcd_lab::paused_then_cut_off(&c.base, cmd, "swap-stopped", libc::SIGTERM);
    assert_eq!(code, 128 + libc::SIGTERM);
    let s = c.run_json("etcd-status", 1, &["--endpoints", &c.node(1).client_url()], None);
    for id in [&s.json["clusterId"], &old["clusterId"]] {
        assert!(id.as_str().is_some_and(|id| id.len() == 16), "{id}");
    }
    assert_ne!(s.json["clusterId"], old["clusterId"], "a new cluster");
    assert_eq!(s.json["members"].as_array().unwrap().len(), 1);
    assert_eq!(keys_on(&c, 1), 12);
    let st: Value =
        serde_json::from_slice(&c.etcdctl(&c.node(1).client_url(), &["endpoint", "status", "-w", "json"]).stdout)
            .unwrap();
    assert!(st[0]["Status"]["header"]["revision"].as_i64().unwrap() > 1000, "{st} (raft index before {old_rev})");
    assert!(!std::fs::read_to_string(c.node(1).manifest()).unwrap().contains("force-new-cluster"));
}

/// A 3-member cluster of `version` with 20 keys, all three stopped, node1's WAL rewritten by
/// `forge` (its one segment, and its db's applied index): the state a crash left on the survivor.
fn survivor_with_forged_wal(version: &str, forge: impl FnOnce(&[u8], u64) -> Option<Vec<u8>>) -> (Cluster, u64) {
    let c = Cluster::start(Spec::new(3, version));
    put(&c, 20);
    for k in [2, 3, 1] {
        c.stop_node(k);
    }
    let n1 = c.node(1);
    let wal_dir = n1.root.join("var/lib/etcd/member/wal");
    let segments: Vec<String> = etcd_lab::dir_names(&wal_dir).into_iter().filter(|n| n.ends_with(".wal")).collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    let i = c.run_json("etcd-quorum", 1, &["inspect", "--manifest", n1.parked_manifest().to_str().unwrap()], None);
    assert_eq!(i.code, 0, "{}", i.stderr);
    let applied = i.json["appliedIndex"].as_u64().unwrap();
    let seg = wal_dir.join(&segments[0]);
    let forged = forge(&std::fs::read(&seg).unwrap(), applied).expect("the forged WAL");
    std::fs::write(&seg, forged).unwrap();
    (c, applied)
}

/// A survivor whose db applied entries past the WAL's commit index (a crash before the commit
/// index was synced; forged here as a last HardState): etcd before 3.5.22 forces a cluster from
/// the commit index and skips its removals of the other members in the db. recover says so
/// before, and names the members the db still lists after; --via-restore leaves none.
#[test]
fn an_unsynced_commit_index_3_5_16() {
    let (c, applied) =
        survivor_with_forged_wal("3.5.16", |seg, applied| common::disk::forge::wal_with_commit(seg, applied - 2));
    let n1 = c.node(1);
    let data = n1.root.join("var/lib/etcd");
    std::fs::rename(n1.parked_manifest(), n1.manifest()).unwrap();
    c.wait_container(1, "running", |c| c["state"] == "CONTAINER_RUNNING");
    let i = c.run_json("etcd-quorum", 1, &["inspect"], None);
    assert_eq!(i.json["commitIndex"].as_u64().unwrap(), applied - 2, "{}", i.stdout);

    // Said before, and recovered: the cluster works with one member, and the db's stale members
    // are named (a lost commit of one or two entries is what a crash commonly leaves).
    let r = c.run_json("etcd-quorum", 1, &["recover", "--yes"], None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    let warned = format!("applied entry {applied} past the WAL's commit index {}", applied - 2);
    assert!(r.stderr.contains(&warned) && r.stderr.contains("etcd 3.5.16"), "{}", r.stderr);
    let steps = r.json["steps"].to_string();
    assert!(steps.contains("warning: the db still lists node2 (") && steps.contains("node3 ("), "{steps}");
    assert!(steps.contains("run etcd 3.5.26 or later once before any upgrade to 3.6"), "{steps}");
    let s = c.run_json("etcd-status", 1, &["--endpoints", &n1.client_url()], None);
    assert_eq!(s.json["members"].as_array().unwrap().len(), 1, "{}", s.stdout);
    let copy = std::path::PathBuf::from(r.json["backup"].as_str().unwrap());
    c.stop_node(1);
    let inspect_db = |c: &Cluster| {
        let i = c.run_json("etcd-quorum", 1, &["inspect", "--manifest", n1.parked_manifest().to_str().unwrap()], None);
        assert_eq!(i.code, 0, "{}", i.stderr);
        let mut names: Vec<String> =
            i.json["members"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_string()).collect();
        names.sort();
        names
    };
    assert_eq!(inspect_db(&c), ["node1", "node2", "node3"]);
    // The way out the warning gives: etcd 3.5.26 or later, run once, drops them from the db.
    let parked = n1.parked_manifest();
    let text = std::fs::read_to_string(&parked).unwrap();
    std::fs::write(&parked, text.replace("image: etcd:3.5.16-0", "image: etcd:3.5.30-0")).unwrap();
    c.start_node(1);
    c.stop_node(1);
    assert_eq!(inspect_db(&c), ["node1"], "etcd 3.5.30 syncs the db's members");
    std::fs::write(&parked, text).unwrap();

    // The forged state again (recover's copy of it), recovered from its db: no stale member.
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::rename(&copy, &data).unwrap();
    std::fs::rename(n1.parked_manifest(), n1.manifest()).unwrap();
    c.wait_container(1, "running", |c| c["state"] == "CONTAINER_RUNNING");
    let r = c.run_json("etcd-quorum", 1, &["recover", "--via-restore", "--yes"], None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert_eq!(keys_on(&c, 1), 20);
    c.stop_node(1);
    assert_eq!(inspect_db(&c), ["node1"]);
}

/// A learner that the last `.snap` names (added, never started) when the quorum is lost: etcd
/// before 3.5.25 keeps it through the forced start (it removes only the snapshot's voters). recover
/// removes it through the forced member, as a fixed etcd would have, and ends with one member.
#[test]
fn a_learner_kept_by_the_forced_start_is_removed_3_5_16() {
    let mut spec = Spec::new(3, "3.5.16");
    spec.extra_flags = vec!["--snapshot-count=20".into()];
    let c = Cluster::start(spec);
    let learner = c.member_change(
        &c.endpoints(),
        &["member", "add", "node4", "--learner", "--peer-urls=https://127.0.20.14:2380"],
    );
    assert!(learner.contains("node4"), "{learner}");
    put(&c, 40);
    c.stop_node(2);
    c.stop_node(3);
    let snaps = etcd_lab::dir_names(&c.node(1).root.join("var/lib/etcd/member/snap"));
    assert!(snaps.iter().any(|n| n.ends_with(".snap")), "a .snap names the learner: {snaps:?}");
    let r = c.run_json("etcd-quorum", 1, &["recover", "--yes"], None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    let steps = r.json["steps"].to_string();
    assert!(steps.contains("kept by the forced start removed"), "{steps}");
    let s = c.run_json("etcd-status", 1, &["--endpoints", &c.node(1).client_url()], None);
    assert_eq!(s.json["members"].as_array().unwrap().len(), 1, "{}", s.stdout);
    assert_eq!(keys_on(&c, 1), 40);
}

/// A survivor whose WAL lost a tail its db applied (fsync lied, a disk replaced): a forced start
/// cannot continue that log. recover refuses it (only --force lifts that), pick passes it over,
/// and --via-restore recovers from the db with every applied key.
#[test]
fn a_wal_behind_its_db_goes_via_restore_3_5_30() {
    let (c, applied) =
        survivor_with_forged_wal("3.5.30", |seg, applied| common::disk::forge::wal_cut_after(seg, applied - 3));
    let n1 = c.node(1);
    let parked = n1.parked_manifest();
    let i = c.run_json("etcd-quorum", 1, &["inspect", "--manifest", parked.to_str().unwrap()], None);
    assert_eq!(i.code, 0, "{}", i.stderr);
    assert_eq!(i.json["lastIndex"].as_u64().unwrap(), applied - 3, "{}", i.stdout);
    let p = c.run_json("etcd-quorum", 1, &["pick"], Some(&i.stdout));
    assert_eq!(p.code, 5, "{}", p.stderr);
    assert!(p.stderr.contains(&format!("applied entry {applied} but the WAL ends at {}", applied - 3)), "{}", p.stderr);
    std::fs::rename(&parked, n1.manifest()).unwrap();
    let manifest = std::fs::read(n1.manifest()).unwrap();

    let r = c.run_json("etcd-quorum", 1, &["recover", "--yes"], None);
    assert_eq!(r.code, 5, "{}\n{}", r.stderr, r.stdout);
    assert!(r.stderr.contains("the WAL holds what the db applied"), "{}", r.stderr);
    assert!(r.stderr.contains("use --via-restore"), "{}", r.stderr);
    assert_eq!(std::fs::read(n1.manifest()).unwrap(), manifest, "refused: nothing changed");
    let dry = c.run_json("etcd-quorum", 1, &["recover", "--dry-run", "--force"], None);
    let check = dry.json["preconditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["check"] == "the WAL holds what the db applied");
    assert_eq!(check.map(|p| &p["ok"]), Some(&serde_json::json!(true)), "--force lifts it: {}", dry.stdout);
    let r = c.run_json("etcd-quorum", 1, &["recover", "--via-restore", "--yes"], None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert_eq!(keys_on(&c, 1), 20);
}
