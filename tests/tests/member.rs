//! etcd-member against real clusters: the runbook's "remove a faulty node, add it back" end to
//! end, and the guards that keep it from making things worse.

use etcd_lab::{Cluster, Node, Run, Spec};
use serde_json::Value;
use std::path::Path;

fn tool(c: &Cluster, name: &str, node: usize, args: &[&str], stdin: Option<&str>) -> Run {
    c.run_json(name, node, args, stdin)
}

fn member_names(c: &Cluster) -> Vec<String> {
    let v: Value = serde_json::from_str(&c.etcdctl_ok(&["member", "list", "-w", "json"])).unwrap();
    let mut names: Vec<String> =
        v["members"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap_or("").to_string()).collect();
    names.sort();
    names
}

/// Only etcd.yaml may ever be in a manifests dir: the kubelet runs every other file too.
fn assert_manifests_dir_clean(n: &Node) {
    let dir = n.root.join("etc/kubernetes/manifests");
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name();
        assert_eq!(name, "etcd.yaml", "stray file in {}", dir.display());
    }
}

/// node3 destroyed: its manifest taken away (so the kubelet stops it), its data dir wiped.
fn destroy_node3(c: &Cluster) {
    c.stop_node(3);
    let data = c.node(3).root.join("var/lib/etcd");
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::create_dir_all(&data).unwrap();
}

/// The HTTP status of a GET of `path` on node `n`'s metrics listener (where kubeadm's probes go).
fn probe_status(n: &Node, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((n.ip.as_str(), 2381)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", n.ip).unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.split_whitespace().nth(1).unwrap_or("").to_string()
}

fn seed_scenario(version: &str) {
    let c = Cluster::start(Spec::new(3, version));
    // The probes a generated manifest (join without --template) gives this version answer 200.
    let k = common::manifest::KubeadmEtcd {
        name: "node4",
        host: "10.0.0.4",
        image: &format!("etcd:{version}-0"),
        initial_cluster: "node4=https://10.0.0.4:2380",
        existing: true,
    };
    let pod: Value = serde_yaml::from_str(&common::manifest::render_kubeadm(&k)).unwrap();
    for p in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let path = pod["spec"]["containers"][0][p]["httpGet"]["path"].as_str().unwrap();
        assert_eq!(probe_status(c.node(1), path), "200", "{p} {path} on etcd {version}");
    }
    for i in 0..20 {
        c.etcdctl_ok(&["put", &format!("/registry/pods/k{i}"), &format!("v{i}")]);
    }
    // A join on another host has just added its learner, whose etcd is not up yet: it costs the
    // quorum nothing, and removing it would make that join undo itself. (etcd takes member
    // changes only while every voter is connected, so it came before node3 went.)
    let add = ["member", "add", "node4", "--learner", "--peer-urls", "https://127.0.0.1:2399", "-w", "json"];
    let added: Value = serde_json::from_str(&c.member_change(&c.endpoints(), &add)).unwrap();
    // IDs are 16 hex digits, leading zeros included (DESIGN.md), as the tools print them.
    let learner = format!("{:016x}", added["member"]["ID"].as_u64().unwrap());
    destroy_node3(&c);
    let n3 = c.node(3);

    // etcd-status -w json | etcd-member remove --unreachable --status - --yes
    let status = tool(&c, "etcd-status", 1, &[], None);
    assert_eq!(status.code, 3, "{}", status.stderr);
    let removed =
        tool(&c, "etcd-member", 1, &["remove", "--unreachable", "--status", "-", "--yes"], Some(&status.stdout));
    assert_eq!(removed.code, 0, "{}\n{}", removed.stderr, removed.stdout);
    assert_eq!(removed.json["kind"], "MemberChange");
    let changed: Vec<&Value> = removed.json["changed"].as_array().unwrap().iter().collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["name"], "node3");
    assert!(removed.stderr.contains(&format!("learner {learner} left alone")), "{}", removed.stderr);
    assert_eq!(member_names(&c), ["", "node1", "node2"]);
    // A stale one goes by its ID.
    let stale = tool(&c, "etcd-member", 1, &["remove", &learner, "--yes"], None);
    assert_eq!(stale.code, 0, "{}\n{}", stale.stderr, stale.stdout);
    assert_eq!(stale.json["members"].as_array().unwrap().len(), 2);
    assert_eq!(member_names(&c), ["node1", "node2"]);

    // etcd-member clean --yes on node3: containers removed, the (wiped) data dir moved aside. The
    // kubelet deletes a dead container on its own between clean's listing and its `crictl rm`.
    // Another kube-system pod's container named etcd runs there: neither waited for nor removed.
    let (mut foreign, foreign_id) = c.plant_foreign_etcd(3);
    let mut cmd = c.tool("etcd-member", 3);
    cmd.args(["clean", "--yes", "-w", "json"]);
    let (clean, _) = c.paused_at(cmd, "clean-stopped", |_| {
        let id = c.containers(3)[0]["id"].as_str().unwrap().to_string();
        let out = std::process::Command::new(etcd_lab::bin("crictl"))
            .env("CONTAINER_RUNTIME_ENDPOINT", n3.cri_endpoint())
            .args(["rm", &id])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    });
    assert_eq!(clean.code, 0, "{}\n{}", clean.stderr, clean.stdout);
    assert_eq!(clean.json["kind"], "NodeClean");
    let data_backup = clean.json["dataDirBackup"].as_str().expect("data dir backup");
    assert!(Path::new(data_backup).is_dir(), "{data_backup}");
    assert!(!n3.root.join("var/lib/etcd").exists());
    let removed = clean.json["containerRemoved"].as_array().unwrap();
    assert!(!removed.is_empty() && !removed.contains(&foreign_id.clone().into()), "{removed:?}");
    let left = c.containers(3);
    assert!(left.len() == 1 && left[0]["id"] == foreign_id.as_str(), "containers left: {left:?}");
    assert_eq!(left[0]["state"], "CONTAINER_RUNNING");
    let _ = foreign.kill();
    let _ = foreign.wait();
    assert_manifests_dir_clean(n3);

    // etcd-member join --yes on node3, from the manifest the operator had taken away.
    let parked = n3.parked_manifest();
    let join = tool(&c, "etcd-member", 3, &["join", "--yes", "--template", parked.to_str().unwrap()], None);
    assert_eq!(join.code, 0, "{}\n{}", join.stderr, join.stdout);
    assert_eq!(join.json["action"], "join");
    assert_eq!(join.json["member"]["name"], "node3");
    assert_eq!(join.json["member"]["isLearner"], false);
    assert_manifests_dir_clean(n3);
    let manifest = std::fs::read_to_string(n3.manifest()).unwrap();
    assert!(manifest.contains("--initial-cluster-state=existing"), "{manifest}");
    // A pod of its own for the kubelet, not the crash-looping one of the same bytes.
    assert!(manifest.contains("etcd-recovery/joined-at:"), "{manifest}");
    for n in &c.nodes {
        assert!(manifest.contains(&format!("{}={}", n.name, n.peer_url())), "{manifest}");
    }

    // The cluster is whole again, and node3 serves the keys written before, from its own data.
    c.wait_healthy(&[1, 2, 3], std::time::Duration::from_secs(30));
    let status = tool(&c, "etcd-status", 1, &[], None);
    assert_eq!(status.code, 0, "{}\n{}", status.stderr, status.stdout);
    let members = status.json["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert!(
        members.iter().all(|m| m["started"] == true && m["isLearner"] == false && m["endpoint"]["reachable"] == true)
    );
    let out =
        c.etcdctl(&n3.client_url(), &["get", "--prefix", "/registry/pods/", "--consistency=s", "--print-value-only"]);
    let values = String::from_utf8_lossy(&out.stdout);
    assert_eq!(values.lines().filter(|l| l.starts_with('v')).count(), 20, "node3 serves: {values}");

    // join again: nothing to do.
    let again = tool(&c, "etcd-member", 3, &["join", "--yes", "--template", parked.to_str().unwrap()], None);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("nothing to do"), "{}", again.stderr);
    assert_eq!(member_names(&c), ["node1", "node2", "node3"]);
    // Its dry run says so in a Plan, like every dry run.
    let dry = tool(&c, "etcd-member", 3, &["join", "--dry-run", "--template", parked.to_str().unwrap()], None);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.json["kind"], "Plan", "{}", dry.stdout);
    assert!(dry.stdout.contains("nothing to do"), "{}", dry.stdout);
}

#[test]
fn seed_scenario_3_4_23() {
    seed_scenario("3.4.23");
}

#[test]
fn seed_scenario_3_5_30() {
    seed_scenario("3.5.30");
}

/// Guards: never remove a healthy member while another is down; never trust a stale or foreign
/// status document; never join with a certificate that does not fit; undo a join that cannot start.
fn guards(version: &str) {
    let c = Cluster::start(Spec::new(3, version));
    // clean on a node whose member answers: refused, nothing moved.
    let r = tool(&c, "etcd-member", 2, &["clean", "--yes"], None);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("member node2") && r.stderr.contains("answers"), "{}", r.stderr);
    assert!(c.node(2).manifest().exists() && c.node(2).root.join("var/lib/etcd/member").is_dir());
    assert!(!c.node(2).root.join("var/lib/etcd-recovery").exists());
    // A CA that verifies no member: whether node2 answers is unknown, which is not "down".
    let wrong_ca = c.node(2).pki().join("server.crt");
    let r = tool(&c, "etcd-member", 2, &["clean", "--yes", "--cacert", wrong_ca.to_str().unwrap()], None);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("cannot tell whether it answers: TLS failed"), "{}", r.stderr);
    assert!(c.node(2).manifest().exists() && c.node(2).root.join("var/lib/etcd/member").is_dir());
    assert!(!c.node(2).root.join("var/lib/etcd-recovery").exists());

    // node3 alive, serving clients a certificate of another CA (a half-done rotation): our TLS
    // fails with it, which is not "down". remove --unreachable refuses it.
    c.stop_node(3);
    let n3 = c.node(3);
    let server = |f: &str| n3.pki().join(f);
    let kept = (std::fs::read(server("server.crt")).unwrap(), std::fs::read(server("server.key")).unwrap());
    let sans = vec!["node3".to_string(), "localhost".to_string(), n3.ip.clone(), "127.0.0.1".to_string()];
    let (crt, key) = etcd_lab::pki::Ca::new("rotated-ca").issue("node3", &sans, true, true, Default::default());
    std::fs::write(server("server.crt"), crt).unwrap();
    std::fs::write(server("server.key"), key).unwrap();
    std::fs::rename(n3.parked_manifest(), n3.manifest()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let s = tool(&c, "etcd-status", 1, &[], None);
        let n = s.json["members"].as_array().unwrap().iter().find(|m| m["name"] == "node3").cloned();
        let why = n.map(|n| n["endpoint"]["error"].to_string()).unwrap_or_default();
        if why.contains("ertificate") || why.contains("UnknownIssuer") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "node3 never served its foreign certificate: {why}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let r = tool(&c, "etcd-member", 1, &["remove", "--unreachable", "--yes"], None);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("node3") && r.stderr.contains("is not hidden by a TLS failure"), "{}", r.stderr);
    assert_eq!(member_names(&c), ["node1", "node2", "node3"]);
    c.stop_node(3);
    std::fs::write(server("server.crt"), kept.0).unwrap();
    std::fs::write(server("server.key"), kept.1).unwrap();
    let before = member_names(&c);

    let r = tool(&c, "etcd-member", 1, &["remove", "node2", "--yes"], None);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("node2") && r.stderr.contains("refused"), "{}", r.stderr);
    assert_eq!(member_names(&c), before);
    let dry = tool(&c, "etcd-member", 1, &["remove", "node2", "--dry-run"], None);
    assert_eq!(dry.code, 5);
    assert_eq!(dry.json["kind"], "Plan");
    assert!(dry.json["preconditions"].as_array().unwrap().iter().any(|p| p["ok"] == false));
    let r = tool(&c, "etcd-member", 1, &["remove", "node9", "--yes"], None);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unknown member \"node9\""), "{}", r.stderr);

    let status = tool(&c, "etcd-status", 1, &[], None);
    let mut stale = status.json.clone();
    stale["takenAt"] = Value::String(common::time::rfc3339_secs(common::time::now_secs() - 600));
    let r =
        tool(&c, "etcd-member", 1, &["remove", "--unreachable", "--status", "-", "--yes"], Some(&stale.to_string()));
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("older than --max-age"), "{}", r.stderr);
    let mut foreign = status.json.clone();
    foreign["clusterId"] = Value::String("0123456789abcdef".into());
    let r =
        tool(&c, "etcd-member", 1, &["remove", "--unreachable", "--status", "-", "--yes"], Some(&foreign.to_string()));
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("status document is of this cluster"), "{}", r.stderr);
    let r = tool(&c, "etcd-member", 1, &["remove", "--unreachable", "--status", "-"], Some(&status.stdout));
    assert_eq!(r.code, 5, "no --yes and no terminal: {}", r.stderr);
    assert!(r.stderr.contains("without --yes"), "{}", r.stderr);
    assert_eq!(member_names(&c), before);

    // Take node3 out properly (the tool asking the cluster itself), then try to bring it back
    // with a peer certificate lacking its IP.
    let r = tool(&c, "etcd-member", 1, &["remove", "--unreachable", "--yes"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json["changed"][0]["name"], "node3");
    let n3 = c.node(3);
    let data = n3.root.join("var/lib/etcd");
    std::fs::remove_dir_all(&data).unwrap();
    let (cert, key) = c.ca.issue("node3", &["node3".into(), "localhost".into()], true, true, Default::default());
    let good_peer = std::fs::read(n3.pki().join("peer.crt")).unwrap();
    std::fs::write(n3.pki().join("peer.crt"), cert).unwrap();
    let good_key = std::fs::read(n3.pki().join("peer.key")).unwrap();
    std::fs::write(n3.pki().join("peer.key"), key).unwrap();
    let parked = n3.parked_manifest();
    let template = parked.to_str().unwrap();
    let r = tool(&c, "etcd-member", 3, &["join", "--yes", "--template", template], None);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("peer.crt: its SANs lack the IP address"), "{}", r.stderr);
    assert_eq!(member_names(&c), ["node1", "node2"]);
    assert!(!n3.manifest().exists());
    std::fs::write(n3.pki().join("peer.crt"), good_peer).unwrap();
    std::fs::write(n3.pki().join("peer.key"), good_key).unwrap();

    // A join whose etcd cannot start (its peer port taken): learner removed, manifest out again.
    let squatter = std::net::TcpListener::bind(format!("{}:2380", n3.ip)).unwrap();
    let r = tool(&c, "etcd-member", 3, &["join", "--yes", "--timeout", "10s", "--template", template], None);
    drop(squatter);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("removed") && r.stderr.contains("manifest moved to"), "{}", r.stderr);
    assert_eq!(member_names(&c), ["node1", "node2"]);
    assert!(!n3.manifest().exists());
    assert_manifests_dir_clean(n3);
}

#[test]
fn guards_3_4_23() {
    guards("3.4.23");
}

#[test]
fn guards_3_5_30() {
    guards("3.5.30");
}

/// The cluster-side steps alone: `add` prints the --initial-cluster the operator's own manifest
/// needs, `promote` finishes once the learner is in sync; by hex ID where names are not known.
#[test]
fn add_and_promote_by_hand_3_5_30() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    destroy_node3(&c);
    let status = tool(&c, "etcd-status", 1, &[], None);
    let id3 = status.json["members"].as_array().unwrap().iter().find(|m| m["name"] == "node3").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Named by ID and by name, twice: one removal (a second would fail after the first).
    let r = tool(&c, "etcd-member", 1, &["remove", &id3, "node3", &id3, "--yes"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json["changed"].as_array().unwrap().len(), 1, "{}", r.stdout);
    assert_eq!(member_names(&c), ["node1", "node2"]);
    let r = tool(&c, "etcd-member", 3, &["clean", "--yes"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The removed container's log is kept in the backup dir (crictl rm deletes it).
    let logs = r.json["containerLogs"].as_array().unwrap();
    assert_eq!(logs.len(), r.json["containerRemoved"].as_array().unwrap().len(), "{}", r.stdout);
    let log = std::fs::read_to_string(logs[0].as_str().unwrap()).unwrap();
    assert!(log.contains("\"msg\":\"serving client traffic securely\""), "{log}");

    let n3 = c.node(3);
    let dry = tool(&c, "etcd-member", 1, &["add", "node3", &n3.peer_url(), "--dry-run"], None);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.json["kind"], "Plan");
    assert_eq!(member_names(&c), ["node1", "node2"], "a dry run changes nothing");
    let add = tool(&c, "etcd-member", 1, &["add", "node3", &n3.peer_url(), "--yes"], None);
    assert_eq!(add.code, 0, "{}", add.stderr);
    assert_eq!(add.json["member"]["isLearner"], true);
    let ic = add.json["initialCluster"].as_str().unwrap().to_string();
    for n in &c.nodes {
        assert!(ic.contains(&format!("{}={}", n.name, n.peer_url())), "{ic}");
    }
    let again = tool(&c, "etcd-member", 1, &["add", "node3", &n3.peer_url(), "--yes"], None);
    assert_eq!(again.code, 5, "a second learner is refused: {}", again.stderr);
    // etcd-status names the pending learner and the two ways on.
    let learner_id = add.json["member"]["id"].as_str().unwrap();
    let s = tool(&c, "etcd-status", 1, &[], None);
    assert_eq!(s.code, 3, "{}", s.stderr);
    let w = s.json["warnings"].to_string();
    assert!(
        w.contains("etcd-member join on its node finishes it") && w.contains(&format!("promote {learner_id}")),
        "{w}"
    );

    // The operator writes the manifest.
    let mut m = common::manifest::Manifest::load(&n3.parked_manifest()).unwrap();
    m.set_flag("initial-cluster", &ic).unwrap();
    m.set_flag("initial-cluster-state", "existing").unwrap();
    m.path = n3.manifest();
    m.save().unwrap();

    let r = tool(&c, "etcd-member", 1, &["promote", learner_id, "--yes"], None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert_eq!(r.json["member"]["isLearner"], false);
    let r = tool(&c, "etcd-member", 1, &["promote", "node3", "--yes"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("voter already"), "{}", r.stderr);
    let dry = tool(&c, "etcd-member", 1, &["promote", "node3", "--dry-run"], None);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.json["kind"], "Plan", "{}", dry.stdout);
    assert!(dry.stdout.contains("voter already"), "{}", dry.stdout);
    c.wait_healthy(&[3], std::time::Duration::from_secs(30));
    let status = tool(&c, "etcd-status", 1, &[], None);
    assert_eq!(status.code, 0, "{}\n{}", status.stderr, status.stdout);
}

/// A node whose manifest is lost too: join generates the manifest kubeadm would write.
#[test]
fn join_without_template_3_5_30() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    destroy_node3(&c);
    let n3 = c.node(3);
    std::fs::remove_file(n3.parked_manifest()).unwrap();
    let status = tool(&c, "etcd-status", 1, &[], None);
    let r = tool(&c, "etcd-member", 1, &["remove", "--unreachable", "--status", "-", "--yes"], Some(&status.stdout));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = tool(&c, "etcd-member", 3, &["clean", "--yes"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let ep = c.node(1).client_url();
    let r = tool(&c, "etcd-member", 3, &["join", "--yes", "--endpoints", &ep], None);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("give --template, or --name and --advertise-address"), "{}", r.stderr);
    let r = tool(
        &c,
        "etcd-member",
        3,
        &["join", "--yes", "--endpoints", &ep, "--name", "node3", "--advertise-address", &n3.ip],
        None,
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no --image"), "{}", r.stderr);

    let args =
        ["join", "--endpoints", &ep, "--name", "node3", "--advertise-address", &n3.ip, "--image", "etcd:3.5.30-0"];
    // A data dir on a disk too small for the db and the WAL: refused before any change.
    let data = n3.root.join("var/lib/etcd");
    std::fs::create_dir_all(&data).unwrap();
    let small = etcd_lab::Mounted::mount(&data, "size=64m");
    let r = tool(&c, "etcd-member", 3, &[&args[..], &["--yes"]].concat(), None);
    assert_eq!(r.code, 5, "{}\n{}", r.stderr, r.stdout);
    assert!(r.stderr.contains("room for the member's data") && r.stderr.contains("two WAL segments"), "{}", r.stderr);
    assert_eq!(member_names(&c), ["node1", "node2"]);
    drop(small);
    std::fs::remove_dir(&data).unwrap();
    let dry = tool(&c, "etcd-member", 3, &[&args[..], &["--dry-run"]].concat(), None);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stderr, dry.stdout);
    assert!(dry.json["preconditions"].as_array().unwrap().iter().all(|p| p["ok"] == true), "{}", dry.json);
    // Generated from kubeadm's defaults: the db is checked against etcd's default quota.
    let quota = dry.json["preconditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["check"] == "the db fits a generated manifest's default quota");
    assert!(
        quota.is_some_and(|q| q["detail"].as_str().unwrap().contains("--quota-backend-bytes 2147483648")),
        "{}",
        dry.json
    );
    assert_eq!(member_names(&c), ["node1", "node2"]);
    assert!(!n3.manifest().exists());

    let r = tool(&c, "etcd-member", 3, &[&args[..], &["--yes"]].concat(), None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    let m = common::manifest::Manifest::load(&n3.manifest()).unwrap();
    assert_eq!(m.flag("listen-client-urls"), Some(format!("https://127.0.0.1:2379,{}", n3.client_url())));
    assert_eq!(m.flag("initial-cluster-state").as_deref(), Some("existing"));
    assert_manifests_dir_clean(n3);
    c.wait_healthy(&[1, 2, 3], std::time::Duration::from_secs(30));
    assert_eq!(member_names(&c), ["node1", "node2", "node3"]);
}

/// `remove --force` of the healthy leader and another member: the changes go through the member
/// that stays (a removed one stops serving, and the leader is removed first), and the member list
/// printed is the new one, read once the election is over.
#[test]
fn remove_the_leader_with_force_3_5_30() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    let s = tool(&c, "etcd-status", 1, &[], None);
    let leader_id = s.json["leader"].as_str().unwrap().to_string();
    let members = s.json["members"].as_array().unwrap();
    let leader = members.iter().find(|m| m["id"] == leader_id.as_str()).unwrap()["name"].as_str().unwrap().to_string();
    let others: Vec<String> =
        ["node1", "node2", "node3"].iter().filter(|n| **n != leader).map(|n| n.to_string()).collect();
    let (other, stays) = (&others[0], &others[1]);
    let k: usize = stays.trim_start_matches("node").parse().unwrap();
    let r = tool(&c, "etcd-member", k, &["remove", &leader, other, "--force", "--yes"], None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    let names: Vec<&str> = r.json["members"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, [stays.as_str()], "{}", r.stdout);
    let changed: Vec<&str> =
        r.json["changed"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(changed, [leader.as_str(), other.as_str()], "the leader first: {}", r.stdout);
    // What the cluster itself says, not only what the tool printed.
    assert_eq!(member_names(&c), [stays.as_str()]);
}

/// The member of node2/node3 still in the list, with its ID in hex (as etcdctl takes it).
fn remaining_target(c: &Cluster) -> (String, String) {
    let v: Value = serde_json::from_str(&c.etcdctl_ok(&["member", "list", "-w", "json"])).unwrap();
    let m = v["members"].as_array().unwrap().iter().find(|m| m["name"] == "node2" || m["name"] == "node3").unwrap();
    (m["name"].as_str().unwrap().to_string(), format!("{:x}", m["ID"].as_u64().unwrap()))
}

/// A member someone else removed while `remove` was at work (or that our own lost-looking proposal
/// removed after all) counts as removed: the goal is reached, the run succeeds and says so.
#[test]
fn remove_of_a_member_removed_meanwhile_3_5_30() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    let mut cmd = c.tool("etcd-member", 1);
    cmd.args(["remove", "node2", "node3", "--force", "--yes", "-w", "json"]);
    let mut second = String::new();
    let (r, _) = c.paused_at(cmd, "remove-member-removed", |_| {
        let (name, id) = remaining_target(&c);
        c.etcdctl_ok(&["member", "remove", &id]);
        // Removing the leader (it may be node3) starts an election: let it end, so that the tool's
        // call gets etcd's answer rather than a timeout.
        c.wait_healthy(&[1], std::time::Duration::from_secs(30));
        second = name;
    });
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = r.stderr.lines().find(|l| l.contains("was removed already")).unwrap_or_default();
    assert!(line.starts_with(&format!("etcd-member: {second} (")), "{}", r.stderr);
    let names: Vec<&str> = r.json["members"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["node1"], "{}", r.stdout);
}

/// The member `remove` goes through dies after the first of two removals: the error says which
/// member is gone already, so the operator knows where the cluster stands.
#[test]
fn remove_failing_midway_says_what_is_gone_3_5_30() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    let mut cmd = c.tool("etcd-member", 1);
    cmd.args(["remove", "node2", "node3", "--force", "--yes", "--command-timeout", "2s", "-w", "json"]);
    let mut second = String::new();
    let (r, _) = c.paused_at(cmd, "remove-member-removed", |_| {
        second = remaining_target(&c).0;
        c.stop_node(1);
    });
    let first = if second == "node2" { "node3" } else { "node2" };
    let line = r.stderr.lines().rev().find(|l| l.starts_with("etcd-member:")).unwrap_or_default();
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(line.contains(&format!("member remove {second} (")), "{line}");
    assert!(line.contains(&format!("; removed: {first} (")), "{line}");
    c.start_node(1);
    assert_eq!(member_names(&c), ["node1", second.as_str()]);
}

/// A node whose etcd advertises its peer URL on another port than 2380 (here a relay's, 2382)
/// joins back: the learner is added with the URL the manifest advertises, else etcd would refuse
/// to start as that member.
#[test]
fn join_with_a_peer_port_other_than_2380_3_5_30() {
    let mut spec = Spec::new(3, "3.5.30");
    spec.peer_links = true;
    let c = Cluster::start(spec);
    c.etcdctl_ok(&["put", "/registry/k", "v"]);
    destroy_node3(&c);
    let removed = tool(&c, "etcd-member", 1, &["remove", "--unreachable", "--yes"], None);
    assert_eq!(removed.code, 0, "{}", removed.stderr);
    let clean = tool(&c, "etcd-member", 3, &["clean", "--yes"], None);
    assert_eq!(clean.code, 0, "{}", clean.stderr);
    let parked = c.node(3).parked_manifest();
    let advertised = common::manifest::Manifest::load(&parked).unwrap().flag("initial-advertise-peer-urls").unwrap();
    assert!(advertised.ends_with(":2382"), "{advertised}");
    let join = tool(&c, "etcd-member", 3, &["join", "--yes", "--template", parked.to_str().unwrap()], None);
    assert_eq!(join.code, 0, "{}\n{}", join.stderr, join.stdout);
    assert_eq!(join.json["member"]["peerURLs"], serde_json::json!([advertised]), "{}", join.stdout);
    c.wait_healthy(&[1, 2, 3], std::time::Duration::from_secs(30));
    let out = c.etcdctl(&c.node(3).client_url(), &["get", "/registry/k", "--consistency=s", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v");
}

/// `etcd-status -w json | etcd-member remove --unreachable --status -` from a host without a
/// manifest (a bastion, a node already cleaned): the members are found where the document says.
#[test]
fn remove_piped_on_a_host_without_a_manifest_3_5_30() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    destroy_node3(&c);
    let status = tool(&c, "etcd-status", 1, &[], None);
    assert_eq!(status.code, 3, "{}", status.stderr);
    // On node3, whose manifest is gone.
    assert!(!c.node(3).manifest().exists());
    let args = ["remove", "--unreachable", "--status", "-", "--yes"];
    let removed = tool(&c, "etcd-member", 3, &args, Some(&status.stdout));
    assert_eq!(removed.code, 0, "{}\n{}", removed.stderr, removed.stdout);
    assert_eq!(member_names(&c), ["node1", "node2"]);
}

/// A copy of etcd.yaml left in the manifests dir (etcd.yaml.bak) defines the same static pod: the
/// kubelet runs one file or the other, so a clean would not stop etcd for long. etcd-status says
/// so, and every procedure refuses until it is moved out.
#[test]
fn a_manifest_copy_beside_etcd_yaml_is_reported_and_refused() {
    let c = Cluster::start(Spec::new(1, "3.5.30"));
    let n = c.node(1);
    let bak = n.root.join("etc/kubernetes/manifests/etcd.yaml.bak");
    let uid = |j: &Value| j["labels"]["io.kubernetes.pod.uid"].as_str().unwrap_or_default().to_string();
    let first = uid(&c.containers(1)[0]);
    // Through a dot file and a rename: a half-copied file would be a pod of its own for a moment.
    let tmp = n.root.join("etc/kubernetes/manifests/.etcd.yaml.bak.tmp");
    std::fs::copy(n.manifest(), &tmp).unwrap();
    std::fs::rename(&tmp, &bak).unwrap();
    // The kubelet's pod now comes from the copy (read last; the file is part of a static pod's
    // UID): the pod restarts, once.
    c.wait_container(1, "running from the copy", |j| j["state"] == "CONTAINER_RUNNING" && uid(j) != first);
    c.wait_healthy(&[1], std::time::Duration::from_secs(30));
    let s = tool(&c, "etcd-status", 1, &[], None);
    assert_eq!(s.code, 3, "{}\n{}", s.stderr, s.stdout);
    let warned = format!("{} also defines the etcd static pod", bak.display());
    assert!(
        s.json["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains(&warned)),
        "{}",
        s.stdout
    );

    let manifest = std::fs::read(n.manifest()).unwrap();
    let snap = c.base.join("s.db");
    let r = tool(&c, "etcd-snap", 1, &["save", "--out", snap.to_str().unwrap()], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let swap = ["--swap", "--snapshot", snap.to_str().unwrap(), "--yes"];
    for (tool_name, args) in [("etcd-member", &["clean", "--yes", "--force"][..]), ("etcd-restore", &swap[..])] {
        let r = tool(&c, tool_name, 1, args, None);
        assert_eq!(r.code, 5, "{tool_name}: {}\n{}", r.stderr, r.stdout);
        assert!(
            r.stderr.contains("no other manifest defines the etcd pod") && r.stderr.contains(&warned),
            "{}",
            r.stderr
        );
        assert_eq!(std::fs::read(n.manifest()).unwrap(), manifest, "{tool_name}");
        assert!(n.root.join("var/lib/etcd/member/snap/db").is_file(), "{tool_name}");
    }
    std::fs::remove_file(&bak).unwrap();
    c.wait_healthy(&[1], std::time::Duration::from_secs(30));
    let s = tool(&c, "etcd-status", 1, &[], None);
    assert_eq!(s.code, 0, "{}\n{}", s.stderr, s.stdout);
}

/// A join whose learner started but cannot catch up before --timeout (a big db, a slow link;
/// here its etcd frozen while the cluster moves on): the learner and its manifest are kept, and
/// the same command run again promotes it once it is in sync.
#[test]
fn a_learner_still_catching_up_is_kept_for_the_rerun() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    destroy_node3(&c);
    let parked = c.node(3).parked_manifest();
    // First, join run too early, on the failed voter itself (its manifest in place, its image
    // gone): refused, not "nothing to do".
    let text = std::fs::read_to_string(&parked).unwrap();
    std::fs::write(c.node(3).manifest(), text.replace("image: etcd:3.5.30-0", "image: etcd:9.9.9-0")).unwrap();
    let args = ["join", "--yes", "--template", parked.to_str().unwrap(), "--timeout", "3s"];
    let r = tool(&c, "etcd-member", 3, &args, None);
    assert_eq!(r.code, 5, "{}\n{}", r.stderr, r.stdout);
    assert!(r.stderr.contains("node3 (") && r.stderr.contains("but it does not answer"), "{}", r.stderr);
    assert!(r.stderr.contains("nor within 3s more"), "{}", r.stderr);
    std::fs::remove_file(c.node(3).manifest()).unwrap();
    let r = tool(&c, "etcd-member", 1, &["remove", "node3", "--yes"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let join = ["join", "--yes", "--timeout", "15s", "--template", parked.to_str().unwrap()];
    let mut cmd = c.tool("etcd-member", 3);
    cmd.args(join).args(["-w", "json"]);
    let mut frozen = 0;
    let (r, _) = c.paused_at(cmd, "join-manifest-written", |_| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !c.etcdctl_ok(&["member", "list"]).contains("node3") {
            assert!(std::time::Instant::now() < deadline, "the learner never started");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        frozen = c.freeze(3);
        // The leader's log moves far past the learner's: etcd refuses to promote it.
        for i in 0..300 {
            c.etcdctl_ok(&["put", &format!("/registry/events/e{i}"), "x"]);
        }
    });
    assert_eq!(r.code, 7, "{}\n{}", r.stderr, r.stdout);
    let line = r.stderr.lines().last().unwrap_or_default();
    assert!(line.contains("learner node3 (") && line.contains("started and is catching up: kept"), "{line}");
    assert!(c.node(3).manifest().is_file(), "the manifest stays in place");
    let listed: Value = serde_json::from_str(&c.etcdctl_ok(&["member", "list", "-w", "json"])).unwrap();
    let n3 = listed["members"].as_array().unwrap().iter().find(|m| m["name"] == "node3").cloned();
    assert_eq!(n3.as_ref().map(|m| m["isLearner"].clone()), Some(Value::Bool(true)), "{listed}");
    c.thaw(frozen);
    let r = tool(&c, "etcd-member", 3, &join, None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert_eq!(r.json["member"]["isLearner"], false);
    assert_eq!(member_names(&c), ["node1", "node2", "node3"]);
}

/// kubeadm's first node names only itself in --initial-cluster. Removed and cleaned, it joins
/// back with nothing but its cleaned manifest: the members its cleaned data dir knew are asked.
#[test]
fn a_node_whose_manifest_names_only_itself_joins_back() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    let uid = |j: &Value| j["labels"]["io.kubernetes.pod.uid"].as_str().unwrap_or_default().to_string();
    let first = uid(&c.containers(3)[0]);
    let mut m = common::manifest::Manifest::load(&c.node(3).manifest()).unwrap();
    m.set_flag("initial-cluster", &format!("node3={}", c.node(3).peer_url())).unwrap();
    m.save().unwrap();
    c.wait_container(3, "restarted on the new manifest", |j| j["state"] == "CONTAINER_RUNNING" && uid(j) != first);
    c.wait_healthy(&[1, 2, 3], std::time::Duration::from_secs(30));
    let r = tool(&c, "etcd-member", 1, &["remove", "node3", "--yes", "--force"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Ctrl-C pressed again and again at the terminal while clean runs: it finishes, and its crictl
    // calls (logs, rm), in groups of their own, are not cut short.
    let mut cmd = c.tool("etcd-member", 3);
    cmd.args(["clean", "--yes", "--force", "-w", "json"]);
    let (r, sent) = etcd_lab::paused_then_group_signalled(&c.base, cmd, "clean-manifest-moved", libc::SIGINT, false);
    assert!(sent >= 5, "sent {sent}: {}", r.stderr);
    assert_eq!(r.code, 128 + libc::SIGINT, "{}\n{}", r.stderr, r.stdout);
    assert_eq!(r.json["kind"], "NodeClean", "{}", r.stdout);
    assert!(!r.json["containerRemoved"].as_array().unwrap().is_empty(), "{}", r.stdout);
    assert!(c.containers(3).is_empty(), "{:?}", c.containers(3));
    let r = tool(&c, "etcd-member", 3, &["join", "--yes"], None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert_eq!(member_names(&c), ["node1", "node2", "node3"]);
    c.wait_healthy(&[1, 2, 3], std::time::Duration::from_secs(30));
}

/// A host whose manifest is not where the tools look (kubeadm's moved, or the operator's root
/// wrong) holds the data of a member that runs: clean asks the members that data knew, finds its
/// own answering, and refuses; nothing moves. A --manifest that names no file while the node's
/// is there is a usage error.
#[test]
fn clean_without_a_manifest_still_asks_whether_its_member_answers_3_5_30() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    let root = c.base.join("root-no-manifest");
    for d in ["etc/kubernetes/manifests", "etc/kubernetes/pki", "var/lib", "run/containerd/lab-cri"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    // node2's data and certificates, copied while its etcd holds still, once its db records the
    // members (etcd commits its db in batches: a copy right after the start may have none yet).
    let db = c.node(2).root.join("var/lib/etcd/member/snap/db");
    let t = std::time::Instant::now();
    while common::disk::inspect::read_db(&db).map_or(0, |d| d.members.len()) < 3 {
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "node2's db never listed the members");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let pid = c.freeze(2);
    for (from, to) in [(c.node(2).root.join("var/lib/etcd"), "var/lib/"), (c.node(2).pki(), "etc/kubernetes/pki/")] {
        let out = std::process::Command::new("cp").arg("-a").arg(&from).arg(root.join(to)).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    c.thaw(pid);
    let data = root.join("var/lib/etcd");
    let mut cmd = c.tool("etcd-member", 2);
    cmd.env("ETCD_ROOTFS", &root).env("CONTAINER_RUNTIME_ENDPOINT", etcd_lab::cri::endpoint_for_root(&root));
    cmd.args(["clean", "--yes", "-w", "json"]);
    let r = etcd_lab::run(cmd, None);
    assert_eq!(r.code, 5, "{}\n{}", r.stderr, r.stdout);
    assert!(
        r.stderr.contains("member node2 (") && r.stderr.contains(&format!("answers at {}", c.node(2).client_url())),
        "{}",
        r.stderr
    );
    assert!(data.join("member/snap/db").is_file(), "nothing moved");
    assert!(
        !root.join("var/lib/etcd-recovery").exists()
            || etcd_lab::dir_names(&root.join("var/lib/etcd-recovery")).is_empty()
    );
    // On node2 itself, a --manifest meant under the root.
    let r = tool(&c, "etcd-member", 2, &["clean", "--yes", "--manifest", "/etc/kubernetes/manifests/etcd.yaml"], None);
    assert_eq!(r.code, 2, "{}\n{}", r.stderr, r.stdout);
    assert!(r.stderr.contains("--manifest /etc/kubernetes/manifests/etcd.yaml: no such file, but "), "{}", r.stderr);
    assert!(c.node(2).manifest().exists());
}

/// A cleaned node has no manifest, but the tools still find its cluster: through the manifest the
/// clean set aside (and the data dir beside it). etcd-status there shows the real cluster (not a
/// made-up one-member one with its quorum lost), and the runbook's next step, removing the
/// member, runs there too. A host with nothing to go on says to give --endpoints.
#[test]
fn a_cleaned_node_still_finds_its_cluster_3_5_30() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    // node3's etcd crash-loops (its peer certificate is not where the manifest says).
    let m = std::fs::read_to_string(c.node(3).manifest()).unwrap();
    std::fs::write(c.node(3).manifest(), m.replace("pki/etcd/peer.crt", "pki/etcd/peer-missing.crt")).unwrap();
    c.wait_container(3, "exited after a restart", |c| {
        c["state"] == "CONTAINER_EXITED" && c["metadata"]["attempt"].as_u64().unwrap() >= 1
    });
    let r = tool(&c, "etcd-member", 3, &["clean", "--yes"], None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert!(r.json["manifestBackup"].is_string() && !c.node(3).manifest().exists(), "{}", r.stdout);
    // A join before the removal: its old member is still listed, and the refusal says which ID to remove.
    let id3 = c.run_json("etcd-status", 1, &[], None).json["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "node3")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = tool(&c, "etcd-member", 3, &["join", "--yes"], None);
    assert_eq!(r.code, 5, "{}\n{}", r.stderr, r.stdout);
    assert!(r.stderr.contains(&format!("remove it first (etcd-member remove {id3})")), "{}", r.stderr);
    let s = tool(&c, "etcd-status", 3, &[], None);
    assert_eq!(s.code, 3, "node3 listed, not answering: {}\n{}", s.stderr, s.stdout);
    assert_eq!(s.json["members"].as_array().unwrap().len(), 3, "{}", s.stdout);
    assert_eq!(s.json["quorum"]["hasQuorum"], true, "{}", s.stdout);
    assert_eq!(member_names(&c), ["node1", "node2", "node3"]);
    let r = tool(&c, "etcd-member", 3, &["remove", "node3", "--yes"], None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert_eq!(member_names(&c), ["node1", "node2"]);
    let s = tool(&c, "etcd-status", 3, &[], None);
    assert_eq!(s.code, 0, "{}\n{}", s.stderr, s.stdout);
    // Nothing to go on: no manifest, no backup, no data (the certificates are there).
    let bare = c.base.join("bare");
    std::fs::create_dir_all(bare.join("etc/kubernetes/pki")).unwrap();
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(c.node(3).pki())
        .arg(bare.join("etc/kubernetes/pki"))
        .output()
        .unwrap();
    assert!(cp.status.success());
    let mut cmd = c.tool("etcd-status", 3);
    cmd.env("ETCD_ROOTFS", &bare).args(["-w", "json"]);
    let s = etcd_lab::run(cmd, None);
    assert_eq!(s.code, 1, "{}\n{}", s.stderr, s.stdout);
    assert!(
        s.stderr.contains("nothing on this node says where the members are") && s.stderr.contains("give --endpoints"),
        "{}",
        s.stderr
    );
}

/// A node whose manifest keeps --force-new-cluster (a recover interrupted there) is not "already
/// joined": join refuses and says to finish the recovery.
#[test]
fn join_on_a_voter_that_keeps_force_new_cluster_refuses_3_5_30() {
    let mut spec = Spec::new(1, "3.5.30");
    spec.extra_flags = vec!["--force-new-cluster".into()];
    let c = Cluster::start(spec);
    let before = std::fs::read(c.node(1).manifest()).unwrap();
    let r = tool(&c, "etcd-member", 1, &["join", "--yes"], None);
    assert_eq!(r.code, 5, "{}\n{}", r.stderr, r.stdout);
    assert!(
        r.stderr.contains("--force-new-cluster is still in") && r.stderr.contains("etcd-quorum recover"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read(c.node(1).manifest()).unwrap(), before);
}

/// A crictl that looks at another runtime (it lists no etcd container) while node3's etcd still
/// runs (frozen, so not a member that answers, and it holds on past the kubelet's stop): clean
/// waits for etcd to let go of its db instead of moving the data dir from under it, times out
/// with the data dir untouched, and once etcd has stopped the same command finishes.
#[test]
fn clean_waits_for_etcd_to_let_go_of_its_db_3_5_30() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    let elsewhere = c.crictl_of_another_runtime();
    let data = c.node(3).root.join("var/lib/etcd");
    let pid = c.freeze(3);
    let args = ["clean", "--yes", "--timeout", "3s", "--crictl", elsewhere.to_str().unwrap()];
    let r = tool(&c, "etcd-member", 3, &args, None);
    c.thaw(pid);
    assert_eq!(r.code, 7, "{}\n{}", r.stderr, r.stdout);
    assert!(r.stderr.contains("etcd still holds") && r.stderr.contains("member/snap/db"), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("data dir {} untouched", data.display())), "{}", r.stderr);
    assert!(data.join("member/snap/db").is_file(), "the data dir stays in place");
    assert!(!c.node(3).manifest().exists(), "the manifest stays aside: the kubelet stops etcd");
    c.wait_container(3, "stopped", |j| j["state"] == "CONTAINER_EXITED");
    let r = tool(&c, "etcd-member", 3, &["clean", "--yes"], None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    let moved = Path::new(r.json["dataDirBackup"].as_str().expect("the data dir moved"));
    assert!(moved.join("member/snap/db").is_file(), "{}", r.stdout);
    assert!(!data.exists());
    assert_manifests_dir_clean(c.node(3));
}

/// A join killed after writing its manifest, before its etcd could start (its image was not on
/// the host yet), then a member removed elsewhere: the manifest's --initial-cluster no longer
/// matches the cluster, and etcd refuses to start from it. The same command run again brings it
/// up to date and finishes.
#[test]
fn a_join_rerun_refreshes_an_initial_cluster_the_members_outdated() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    destroy_node3(&c);
    let r = tool(&c, "etcd-member", 1, &["remove", "node3", "--yes"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let parked = c.node(3).parked_manifest();
    let text = std::fs::read_to_string(&parked).unwrap();
    std::fs::write(&parked, text.replace("image: etcd:3.5.30-0", "image: etcd:9.9.9-0")).unwrap();
    let join = ["join", "--yes", "--timeout", "30s", "--template", parked.to_str().unwrap()];
    let mut cmd = c.tool("etcd-member", 3);
    cmd.args(join);
    let (r, _) = c.paused_at(cmd, "join-manifest-written", |pid| assert!(etcd_lab::cri::signal(pid, libc::SIGKILL)));
    assert_eq!(r.code, 128 + libc::SIGKILL, "{}", r.stderr);
    // node2 goes meanwhile.
    let listed: Value = serde_json::from_str(&c.etcdctl_ok(&["member", "list", "-w", "json"])).unwrap();
    let node2 = listed["members"].as_array().unwrap().iter().find(|m| m["name"] == "node2").unwrap()["ID"].clone();
    c.member_change(&c.node(1).client_url(), &["member", "remove", &format!("{:x}", node2.as_u64().unwrap())]);
    c.stop_node(2);
    // The image arrives; etcd now starts, and exits on the outdated list.
    let m3 = c.node(3).manifest();
    let fixed = std::fs::read_to_string(&m3).unwrap().replace("image: etcd:9.9.9-0", "image: etcd:3.5.30-0");
    let dot = m3.with_file_name(".etcd.yaml.edit");
    std::fs::write(&dot, fixed).unwrap();
    std::fs::rename(&dot, &m3).unwrap();
    let r = tool(&c, "etcd-member", 3, &join, None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert!(r.stderr.contains("--initial-cluster in") && r.stderr.contains("brought up to date"), "{}", r.stderr);
    let ic = common::manifest::Manifest::load(&m3).unwrap().flag("initial-cluster").unwrap();
    assert_eq!(ic.split(',').count(), 2, "{ic}");
    assert_eq!(member_names(&c), ["node1", "node3"]);
    c.wait_healthy(&[1, 3], std::time::Duration::from_secs(30));

    // node3's member removed, and one added again for its peer URL, while its manifest (a join's)
    // and data stay: a join run now must not take that manifest for one written for the new
    // member (it would start it on the removed member's data).
    let listed: Value = serde_json::from_str(&c.etcdctl_ok(&["member", "list", "-w", "json"])).unwrap();
    let node3 = listed["members"].as_array().unwrap().iter().find(|m| m["name"] == "node3").unwrap()["ID"].clone();
    c.member_change(&c.node(1).client_url(), &["member", "remove", &format!("{:x}", node3.as_u64().unwrap())]);
    let add = ["add", "node3", &c.node(3).peer_url(), "--yes", "--endpoints", &c.node(1).client_url()];
    let r = tool(&c, "etcd-member", 1, &add, None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    let r = tool(
        &c,
        "etcd-member",
        3,
        &["join", "--yes", "--timeout", "30s", "--template", parked.to_str().unwrap()],
        None,
    );
    assert_eq!(r.code, 5, "{}\n{}", r.stderr, r.stdout);
    assert!(
        r.stderr.contains("(needed: data dir is empty or absent)")
            && r.stderr.contains("(needed: no manifest in place)"),
        "{}",
        r.stderr
    );
    assert!(c.node(3).root.join("var/lib/etcd/member").is_dir(), "the data dir is left as it was");
}

/// join run on a node whose voter is only slow to answer (restarting, a loaded host; here frozen
/// for a few seconds): asked for a while more, it answers, and there is nothing to do, not the
/// advice to remove it.
#[test]
fn join_on_a_voter_that_is_only_slow_does_nothing_3_5_30() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    let template = c.node(3).root.join("etcd.yaml.template");
    std::fs::copy(c.node(3).manifest(), &template).unwrap();
    let pid = c.freeze(3);
    let thaw = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(4));
        etcd_lab::cri::signal(pid as u32, libc::SIGCONT)
    });
    let r = tool(&c, "etcd-member", 3, &["join", "--yes", "--template", template.to_str().unwrap()], None);
    assert!(thaw.join().unwrap());
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert!(r.stderr.contains("already a started voter with its manifest in place; nothing to do"), "{}", r.stderr);
    assert_eq!(member_names(&c), ["node1", "node2", "node3"]);
}
