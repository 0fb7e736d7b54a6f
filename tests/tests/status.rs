//! etcd-status against real etcd clusters (3.4.23 and 3.5.30): healthy, degraded, quorum lost,
//! frozen members, alarms, a leftover --force-new-cluster, expiring certificates, and bad input.

use etcd_lab::{Cluster, Run, Spec, pki};
use serde_json::Value;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

fn run(cmd: Command) -> Run {
    etcd_lab::run(cmd, None)
}

fn status(c: &Cluster, node: usize, args: &[&str]) -> Run {
    c.run_json("etcd-status", node, args, None)
}

fn member<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["members"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("no {name}: {doc}"))
}

fn warnings(doc: &Value) -> String {
    doc["warnings"].to_string()
}

/// etcdctl's member IDs (decimal uint64 in its JSON) as our hex strings, and its cluster ID.
fn etcdctl_ids(c: &Cluster) -> (Vec<String>, String) {
    let v: Value = serde_json::from_str(&c.etcdctl_ok(&["member", "list", "-w", "json"])).unwrap();
    let mut ids: Vec<String> =
        v["members"].as_array().unwrap().iter().map(|m| format!("{:016x}", m["ID"].as_u64().unwrap())).collect();
    ids.sort();
    (ids, format!("{:016x}", v["header"]["cluster_id"].as_u64().unwrap()))
}

/// Healthy, then one member stopped, then a second one crash-looping, seen from that node.
fn healthy_degraded_lost(version: &str) {
    let c = Cluster::start(Spec::new(3, version));

    // Healthy: every member answers, one leader, equal raft indexes, etcdctl's IDs.
    let mut r = status(&c, 1, &[]);
    for _ in 0..20 {
        let idx: Vec<&Value> =
            r.json["members"].as_array().unwrap().iter().map(|m| &m["endpoint"]["raftIndex"]).collect();
        if r.code == 0 && idx.iter().all(|i| *i == idx[0]) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        r = status(&c, 1, &[]);
    }
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    let doc = &r.json;
    assert_eq!(doc["kind"], "ClusterStatus");
    let members = doc["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| m["endpoint"]["reachable"] == true && m["isLearner"] == false));
    assert!(members.iter().all(|m| m["endpoint"]["version"] == version), "{doc}");
    // Every field DESIGN.md lists is there, `error` null for a member that answered.
    assert!(members.iter().all(|m| m["endpoint"].get("error") == Some(&Value::Null)), "{doc}");
    let leaders: Vec<&Value> = members.iter().filter(|m| m["endpoint"]["isLeader"] == true).collect();
    assert_eq!(leaders.len(), 1, "{doc}");
    assert_eq!(leaders[0]["id"], doc["leader"]);
    let idx: Vec<&Value> = members.iter().map(|m| &m["endpoint"]["raftIndex"]).collect();
    assert!(idx.iter().all(|i| *i == idx[0] && i.as_u64().unwrap() > 0), "raft indexes differ: {idx:?}");
    let (ids, cluster_id) = etcdctl_ids(&c);
    let mut ours: Vec<String> = members.iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    ours.sort();
    assert_eq!(ours, ids);
    assert_eq!(doc["clusterId"], cluster_id.as_str());
    assert_eq!(
        doc["quorum"],
        serde_json::json!({"voters":3,"reachableVoters":3,"needed":2,"hasQuorum":true,"faultTolerance":1})
    );
    let local = &doc["local"];
    assert_eq!(local["container"]["state"], "CONTAINER_RUNNING", "{local}");
    assert_eq!(local["forceNewCluster"], false);
    assert_eq!(local["manifestFlags"]["name"], "node1");
    let certs = local["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 4, "server, peer, CA (named twice) and the client cert: {local}");
    assert!(certs.iter().all(|c| c["daysLeft"].as_i64().unwrap() >= 364), "{local}");
    assert_eq!(doc["warnings"], serde_json::json!([]));

    // One endpoint is enough: the others come from the member list.
    let only2 = status(&c, 1, &["--endpoints", &c.node(2).client_url()]);
    assert_eq!(only2.code, 0, "{}", only2.stderr);
    assert_eq!(only2.json["members"].as_array().unwrap().len(), 3);
    assert!(only2.json["members"].as_array().unwrap().iter().all(|m| m["endpoint"]["reachable"] == true));

    // The table says the same for people.
    let mut cmd = c.tool("etcd-status", 1);
    let t = run({
        cmd.args(["-w", "table"]);
        cmd
    });
    assert_eq!(t.code, 0);
    assert!(t.stdout.contains("quorum: 3 voters, 3 reachable, 2 needed: ok (fault tolerance 1)"), "{}", t.stdout);
    for id in &ids {
        assert!(t.stdout.contains(id.as_str()), "{}", t.stdout);
    }

    // node3's manifest moved out: degraded, node3 unreachable with its error, quorum kept.
    c.stop_node(3);
    let r = status(&c, 1, &[]);
    assert_eq!(r.code, 3, "{}\n{}", r.stderr, r.stdout);
    let n3 = member(&r.json, "node3");
    assert_eq!(n3["endpoint"]["reachable"], false);
    assert!(n3["endpoint"]["error"].as_str().unwrap().contains("refused"), "{n3}");
    assert_eq!(r.json["quorum"]["hasQuorum"], true);
    assert_eq!(r.json["quorum"]["reachableVoters"], 2);
    assert_eq!(r.json["quorum"]["faultTolerance"], 0);
    assert!(warnings(&r.json).contains("member node3"), "{}", r.json);

    // node2's manifest names a peer certificate that is not there: etcd crash-loops; run on
    // node2, quorum is lost, and its local view shows the exited container and the log tail
    // that says why.
    let m = std::fs::read_to_string(c.node(2).manifest()).unwrap();
    std::fs::write(c.node(2).manifest(), m.replace("pki/etcd/peer.crt", "pki/etcd/peer-missing.crt")).unwrap();
    c.wait_container(2, "exited after a restart", |c| {
        c["state"] == "CONTAINER_EXITED" && c["metadata"]["attempt"].as_u64().unwrap() >= 1
    });
    let r = status(&c, 2, &[]);
    assert_eq!(r.code, 4, "{}\n{}", r.stderr, r.stdout);
    assert_eq!(r.json["quorum"]["hasQuorum"], false);
    assert_eq!(r.json["quorum"]["reachableVoters"], 1);
    assert_eq!(member(&r.json, "node1")["endpoint"]["reachable"], true);
    assert_eq!(member(&r.json, "node2")["endpoint"]["reachable"], false);
    let local = &r.json["local"];
    assert_eq!(local["container"]["state"], "CONTAINER_EXITED", "{local}");
    assert!(local["container"]["attempt"].as_u64().unwrap() >= 1);
    let logs = local["logs"].to_string();
    assert!(logs.contains("peer-missing.crt: no such file or directory"), "log tail: {logs}");
    assert!(warnings(&r.json).contains("quorum lost"), "{}", r.json);
    assert!(warnings(&r.json).contains("this node's etcd is not running (container "), "{}", r.json);

    // node1 stopped too: nobody answers. The members are those node2's data dir last recorded,
    // with their IDs and names, in its cluster (not nameless endpoints).
    c.stop_node(1);
    let r = status(&c, 2, &[]);
    assert_eq!(r.code, 4, "{}\n{}", r.stderr, r.stdout);
    assert_eq!(r.json["clusterId"], cluster_id.as_str(), "{}", r.json);
    let members = r.json["members"].as_array().unwrap();
    let mut recorded: Vec<(String, String)> = members
        .iter()
        .map(|m| (m["name"].as_str().unwrap().to_string(), m["id"].as_str().unwrap_or_default().to_string()))
        .collect();
    recorded.sort();
    assert_eq!(recorded.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["node1", "node2", "node3"]);
    let mut recorded_ids: Vec<String> = recorded.into_iter().map(|(_, id)| id).collect();
    recorded_ids.sort();
    assert_eq!(recorded_ids, ids);
    assert!(members.iter().all(|m| m["endpoint"]["reachable"] == false), "{}", r.json);
    assert_eq!(r.json["quorum"]["voters"], 3);
    assert!(warnings(&r.json).contains("the members listed are those"), "{}", r.json);
}

#[test]
fn healthy_degraded_lost_3_4_23() {
    healthy_degraded_lost("3.4.23");
}

#[test]
fn healthy_degraded_lost_3_5_30() {
    healthy_degraded_lost("3.5.30");
}

/// A member frozen with SIGSTOP accepts TCP but never answers: reported unreachable, and the
/// whole command returns within the dial timeout and a few seconds, not the command timeout, also
/// when it is the leader (then anything that goes through raft hangs, so nothing may).
fn frozen_member(version: &str, freeze_leader: bool) {
    let c = Cluster::start(Spec::new(3, version));
    let before = status(&c, 1, &[]);
    let leader = before.json["members"].as_array().unwrap().iter().find(|m| m["endpoint"]["isLeader"] == true).unwrap()
        ["name"]
        .as_str()
        .unwrap()
        .to_string();
    let names = ["node1", "node2", "node3"];
    let frozen = names.iter().position(|n| (*n == leader) == freeze_leader).unwrap() + 1;
    let asker = if frozen == 1 { 2 } else { 1 };
    let pid = c.freeze(frozen);
    let t = Instant::now();
    let r = status(&c, asker, &["--dial-timeout", "1s", "--command-timeout", "30s"]);
    let took = t.elapsed();
    c.thaw(pid);
    // The frozen member costs the 1 s dial timeout, not the 30 s command timeout: the bound between
    // them leaves a loaded machine plenty of slack.
    assert!(took < Duration::from_secs(12), "took {took:?}");
    assert_eq!(r.code, 3, "{}\n{}", r.stderr, r.stdout);
    let f = member(&r.json, names[frozen - 1]);
    assert_eq!(f["endpoint"]["reachable"], false);
    assert!(f["endpoint"]["error"].as_str().unwrap().contains("context deadline exceeded"), "{f}");
    let reachable = r.json["members"].as_array().unwrap().iter().filter(|m| m["endpoint"]["reachable"] == true).count();
    assert_eq!(reachable, 2, "{}", r.json);
}

#[test]
fn frozen_leader_3_4_23() {
    frozen_member("3.4.23", true);
}

#[test]
fn frozen_follower_3_5_16() {
    frozen_member("3.5.16", false);
}

#[test]
fn frozen_leader_3_5_30() {
    frozen_member("3.5.30", true);
}

#[test]
fn frozen_follower_3_5_30() {
    frozen_member("3.5.30", false);
}

/// A single member started with --force-new-cluster left in its manifest is flagged; a full
/// backend raises NOSPACE, which is reported.
fn force_new_cluster_and_nospace(version: &str) {
    let mut spec = Spec::new(1, version);
    spec.extra_flags = vec!["--force-new-cluster".into(), "--quota-backend-bytes=1048576".into()];
    let c = Cluster::start(spec);
    let r = status(&c, 1, &[]);
    assert_eq!(r.code, 3, "{}\n{}", r.stderr, r.stdout);
    assert_eq!(r.json["local"]["forceNewCluster"], true);
    assert!(warnings(&r.json).contains("--force-new-cluster is still in"), "{}", r.json);
    assert_eq!(r.json["alarms"], serde_json::json!([]));

    let value = "x".repeat(100_000);
    let mut full = false;
    for i in 0..80 {
        let out = c.etcdctl(&c.endpoints(), &["put", &format!("k{i}"), &value]);
        if !out.status.success() {
            assert!(String::from_utf8_lossy(&out.stderr).contains("space exceeded"), "{out:?}");
            full = true;
            break;
        }
    }
    assert!(full, "the backend never filled up");
    let r = status(&c, 1, &[]);
    assert_eq!(r.code, 3, "{}\n{}", r.stderr, r.stdout);
    let alarms = r.json["alarms"].as_array().unwrap();
    assert_eq!(alarms.len(), 1, "{}", r.json);
    assert_eq!(alarms[0]["alarm"], "NOSPACE");
    assert_eq!(alarms[0]["memberId"], member(&r.json, "node1")["id"]);
    assert!(warnings(&r.json).contains("alarm NOSPACE"), "{}", r.json);
}

#[test]
fn force_new_cluster_and_nospace_3_4_23() {
    force_new_cluster_and_nospace("3.4.23");
}

#[test]
fn force_new_cluster_and_nospace_3_5_30() {
    force_new_cluster_and_nospace("3.5.30");
}

/// Bad input: one line naming the file, flag or endpoint, the documented exit code.
#[test]
fn bad_input() {
    let mut spec = Spec::new(1, "3.5.30");
    // node1's server certificate expires in 10 days: degraded.
    spec.server_validity = pki::Validity { from_days: -1, to_days: 10 };
    let c = Cluster::start(spec);
    let n1 = c.node(1);
    let scratch = c.base.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();

    let r = status(&c, 1, &[]);
    assert_eq!(r.code, 3, "{}\n{}", r.stderr, r.stdout);
    let server_crt = n1.pki().join("server.crt");
    let cert = r.json["local"]["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == server_crt.to_str().unwrap())
        .cloned()
        .unwrap();
    assert!((9..=10).contains(&cert["daysLeft"].as_i64().unwrap()), "{cert}");
    assert!(warnings(&r.json).contains("expires in"), "{}", r.json);

    let one_line = |r: &Run| {
        assert_eq!(r.stderr.trim_end().lines().count(), 1, "not one line: {}", r.stderr);
        r.stderr.trim_end().to_string()
    };

    // Missing client certificate: exit 1 naming the flag and the path.
    let r = status(&c, 1, &["--cert", "/nonexistent/client.crt"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        one_line(&r),
        "etcd-status: --cert /nonexistent/client.crt: cannot read: No such file or directory (os error 2)"
    );
    assert_eq!(r.json["kind"], "Error");
    assert_eq!(r.json["code"], 1);
    // A directory where the key should be: unreadable.
    let r = status(&c, 1, &["--key", scratch.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(one_line(&r).contains(&format!("--key {}: cannot read", scratch.display())), "{}", r.stderr);
    // A CA that is not the cluster's: exit 1, naming the endpoint.
    let other = pki::Ca::new("other-ca");
    let other_ca = scratch.join("other-ca.crt");
    std::fs::write(&other_ca, &other.cert_pem).unwrap();
    let r = status(&c, 1, &["--cacert", other_ca.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let line = one_line(&r);
    assert!(line.contains(&n1.client_url()) && line.contains("certificate"), "{line}");

    // A certificate the manifest names but that cannot be read: listed, null dates, the reason.
    let mut m = common::manifest::Manifest::load(&n1.manifest()).unwrap();
    m.path = scratch.join("etcd.yaml");
    m.set_flag("peer-cert-file", "/etc/kubernetes/pki/etcd/missing-peer.crt").unwrap();
    m.save().unwrap();
    let r = status(&c, 1, &["--manifest", m.path.to_str().unwrap()]);
    let cert = r.json["local"]["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["usedAs"] == "--peer-cert-file")
        .cloned()
        .unwrap();
    assert!(cert["notAfter"].is_null() && cert["daysLeft"].is_null(), "{cert}");
    assert!(cert.as_object().unwrap().contains_key("daysLeft"), "a script's field is always there: {cert}");
    assert!(cert["error"].as_str().unwrap().contains("missing-peer.crt"), "{cert}");

    // Invalid manifest YAML: file and line.
    let bad = scratch.join("etcd.yaml");
    std::fs::write(&bad, "apiVersion: v1\nkind: Pod\nspec:\n  containers: [\n").unwrap();
    let r = status(&c, 1, &["--manifest", bad.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    let line = one_line(&r);
    assert!(line.starts_with(&format!("etcd-status: manifest {}: invalid YAML at line ", bad.display())), "{line}");
    // A manifest without an etcd container.
    std::fs::write(&bad, "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: nginx\n    command: [nginx]\n")
        .unwrap();
    let r = status(&c, 1, &["--manifest", bad.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert_eq!(one_line(&r), format!("etcd-status: manifest {}: no etcd container in spec.containers", bad.display()));

    // Unknown -w value: usage error.
    let r = run({
        let mut cmd = c.tool("etcd-status", 1);
        cmd.args(["-w", "yaml"]);
        cmd
    });
    assert_eq!(r.code, 2);
    assert_eq!(one_line(&r), "etcd-status: -w/--write-out: unknown value \"yaml\" (use table or json)");
    let r = status(&c, 1, &["--dial-timeout", "soon"]);
    assert_eq!(r.code, 2);
    assert!(one_line(&r).contains("--dial-timeout: invalid duration \"soon\""), "{}", r.stderr);

    // No reachable endpoint (connection refused): quorum lost, every endpoint's error.
    let dead = format!("https://{}:2379", etcd_lab::sibling_ip(&n1.ip, 98));
    let r = status(&c, 1, &["--endpoints", &dead]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("no endpoint reachable: {dead}: ")) && r.stderr.contains("refused"),
        "{}",
        r.stderr
    );
    // An endpoint that accepts TCP and never answers: timeout.
    let hung_ip = etcd_lab::sibling_ip(&n1.ip, 97);
    let _listener = TcpListener::bind(format!("{hung_ip}:2379")).unwrap();
    let hung = format!("https://{hung_ip}:2379");
    let r = status(&c, 1, &["--endpoints", &format!("{dead},{hung}"), "--dial-timeout", "500ms"]);
    assert_eq!(r.code, 4, "refused + timeout is not all timeouts: {}", r.stderr);
    let r = status(&c, 1, &["--endpoints", &hung, "--dial-timeout", "500ms"]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("{hung}: context deadline exceeded")), "{}", r.stderr);

    // The ETCDCTL_* environment is the fallback for the flags, and flags win over it.
    let mut cmd = c.tool("etcd-status", 1);
    cmd.args(["-w", "json"]).env("ETCDCTL_ENDPOINTS", &dead).env("ETCDCTL_CACERT", &other_ca);
    let r = run(cmd);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("no endpoint reachable: {dead}: ")), "{}", r.stderr);
    let mut cmd = c.tool("etcd-status", 1);
    cmd.args(["-w", "json", "--endpoints", &n1.client_url()]).env("ETCDCTL_ENDPOINTS", &dead);
    assert_eq!(run(cmd).code, 3);
    // ETCDCTL_CACERT counts where TLS is reached: another CA fails it, --cacert wins over it.
    let mut cmd = c.tool("etcd-status", 1);
    cmd.args(["-w", "json", "--endpoints", &n1.client_url()]).env("ETCDCTL_CACERT", &other_ca);
    let r = run(cmd);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("UnknownIssuer"), "{}", r.stderr);
    let mut cmd = c.tool("etcd-status", 1);
    cmd.args(["-w", "json", "--endpoints", &n1.client_url(), "--cacert", n1.pki().join("ca.crt").to_str().unwrap()]);
    cmd.env("ETCDCTL_CACERT", &other_ca);
    assert_eq!(run(cmd).code, 3);
    let mut cmd = c.tool("etcd-status", 1);
    cmd.env("ETCDCTL_DIAL_TIMEOUT", "bogus");
    let r = run(cmd);
    assert_eq!(r.code, 2);
    assert!(one_line(&r).contains("ETCDCTL_DIAL_TIMEOUT (environment): invalid duration \"bogus\""), "{}", r.stderr);
    let mut cmd = c.tool("etcd-status", 1);
    cmd.env("ETCDCTL_ENDPOINTS", "ftp://x:1");
    let r = run(cmd);
    assert_eq!(r.code, 2);
    assert!(one_line(&r).contains("ETCDCTL_ENDPOINTS (environment): \"ftp://x:1\""), "{}", r.stderr);
    // etcdctl's bare host:port is https here (TLS is always on).
    let bare = n1.client_url().trim_start_matches("https://").to_string();
    let mut cmd = c.tool("etcd-status", 1);
    cmd.args(["-w", "json"]).env("ETCDCTL_ENDPOINTS", &bare);
    assert_eq!(run(cmd).code, 3, "{bare}");
    // A timeout no deadline can hold: a usage error, not a panic.
    let r = status(&c, 1, &["--dial-timeout", "99999999999999999999h"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(one_line(&r).contains("--dial-timeout: \"99999999999999999999h\" is longer than a year"), "{}", r.stderr);
    // --rootfs as a flag (the other runs set ETCD_ROOTFS).
    let mut cmd = c.tool("etcd-status", 1);
    cmd.env_remove("ETCD_ROOTFS").args(["-w", "json", "--rootfs", n1.root.to_str().unwrap()]);
    let r = run(cmd);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(r.json["local"]["manifestFlags"]["name"], "node1");

    // crictl missing: the local view is degraded with a warning, the command still works.
    let r = status(&c, 1, &["--crictl", "/nonexistent/crictl"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(r.json["local"]["container"], Value::Null);
    assert!(r.json["local"]["warnings"].to_string().contains("/nonexistent/crictl"), "{}", r.json["local"]);
    assert_eq!(r.json["members"][0]["endpoint"]["reachable"], true);
}

/// Every member still serving clients but cut off from its peers (a firewall change on the peer
/// port): all answer, none has a leader. That is no quorum (exit 4, naming them), and `recover`
/// refuses to force a new cluster beside members that come back as one once the link heals.
#[test]
fn members_cut_off_from_their_peers_3_5_30() {
    let mut spec = Spec::new(3, "3.5.30");
    spec.peer_links = true;
    let c = Cluster::start(spec);
    assert_eq!(status(&c, 1, &[]).code, 0);
    for link in &c.peer_links {
        link.cut();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let r = loop {
        let r = status(&c, 1, &[]);
        if r.code == 4 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(r.code, 4, "{}\n{}", r.stderr, r.stdout);
    assert_eq!(r.json["quorum"]["reachableVoters"], 3, "{}", r.stdout);
    assert_eq!(r.json["quorum"]["hasQuorum"], false);
    let said = warnings(&r.json);
    assert!(said.contains("no leader known to ") && said.contains("cut off from its peers"), "{said}");
    let mut cmd = c.tool("etcd-quorum", 1);
    cmd.args(["recover", "--yes", "-w", "json"]);
    let rec = run(cmd);
    assert_eq!(rec.code, 5, "{}\n{}", rec.stderr, rec.stdout);
    assert!(rec.stdout.contains("answer without a leader"), "{}", rec.stdout);
    assert!(!c.node(1).root.join("var/lib/etcd-recovery").exists(), "a refused recover changed nothing");
    for link in &c.peer_links {
        link.heal();
    }
    c.wait_healthy(&[1, 2, 3], Duration::from_secs(30));
}

/// kubeadm's first node names only itself in --initial-cluster. With its etcd down there,
/// etcd-status still finds the rest of the cluster, through the members its data dir knew: one
/// member down is degraded (3), not quorum lost (4).
#[test]
fn first_node_with_its_etcd_down_3_5_30() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    let path = c.node(1).manifest();
    let mut m = common::manifest::Manifest::load(&path).unwrap();
    m.set_flag("initial-cluster", &format!("node1={}", c.node(1).peer_url())).unwrap();
    // Its image gone (etcd does not run), written through a dot file as the kubelet needs.
    let text = m.to_yaml().unwrap().replace("image: etcd:3.5.30-0", "image: etcd:9.9.9-0");
    let dot = path.with_file_name(".etcd.yaml.edit");
    std::fs::write(&dot, text).unwrap();
    std::fs::rename(&dot, &path).unwrap();
    c.wait_container(1, "etcd exited", |j| j["state"] == "CONTAINER_EXITED");
    let r = status(&c, 1, &[]);
    assert_eq!(r.code, 3, "{}\n{}", r.stderr, r.stdout);
    assert_eq!(r.json["members"].as_array().unwrap().len(), 3, "{}", r.stdout);
    assert_eq!(member(&r.json, "node1")["endpoint"]["reachable"], false);
    assert_eq!(member(&r.json, "node2")["endpoint"]["reachable"], true);
    assert_eq!(r.json["quorum"]["hasQuorum"], true, "{}", r.stdout);
}

/// kubeadm's certificates expire after a year. With this node's server certificate expired, every
/// endpoint fails TLS: the error names that certificate, not only our own flags to check.
#[test]
fn an_expired_server_certificate_is_named_3_5_30() {
    let c = Cluster::start(Spec::new(1, "3.5.30"));
    let n = c.node(1);
    c.ca.write_node_pki(&n.pki(), &n.name, &n.ip, pki::Validity { from_days: -400, to_days: -35 });
    // etcd reads its certificate at start: restarted (by the kubelet) after a kill.
    let old = c.etcd_pid(1);
    assert!(etcd_lab::cri::signal(old as u32, libc::SIGKILL));
    c.wait_container(1, "restarted", |j| j["state"] == "CONTAINER_RUNNING" && j["metadata"]["attempt"] != 0);
    let r = status(&c, 1, &[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stderr, r.stdout);
    let line = r.stderr.lines().last().unwrap_or_default();
    assert!(line.contains("TLS failed with every endpoint"), "{line}");
    assert!(
        line.contains("on this node: certificate ") && line.contains("server.crt (--cert-file) has expired"),
        "{line}"
    );
    // The client certificate expired too (they all expire together): refused before any dial,
    // and still the error names this node's expired ones.
    let (crt, key) =
        c.ca.issue("kube-etcd-healthcheck-client", &[], false, true, pki::Validity { from_days: -400, to_days: -35 });
    std::fs::write(n.pki().join("healthcheck-client.crt"), crt).unwrap();
    std::fs::write(n.pki().join("healthcheck-client.key"), key).unwrap();
    let r = status(&c, 1, &[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stderr, r.stdout);
    let line = r.stderr.lines().last().unwrap_or_default();
    assert!(line.contains("healthcheck-client.crt: expired on "), "{line}");
    assert!(
        line.contains("on this node: certificate ") && line.contains("server.crt (--cert-file) has expired"),
        "{line}"
    );
}

/// A member advertising several client URLs, the first of which this host cannot reach (etcd
/// sorts them): it is asked at each, and answers at the other.
#[test]
fn a_member_is_asked_at_each_of_its_client_urls_3_5_30() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    let n2 = c.node(2);
    let urls = format!("https://127.0.0.99:2379,{}", n2.client_url());
    let mut m = common::manifest::Manifest::load(&n2.manifest()).unwrap();
    m.set_flag("advertise-client-urls", &urls).unwrap();
    m.save().unwrap();
    // Published by node2's etcd once it restarted.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c.etcdctl_ok(&["member", "list"]).contains("https://127.0.0.99:2379") {
        assert!(Instant::now() < deadline, "node2 never published its URLs");
        std::thread::sleep(Duration::from_millis(200));
    }
    c.wait_healthy(&[1, 2, 3], Duration::from_secs(30));
    let r = status(&c, 1, &["--endpoints", &c.node(1).client_url()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    let node2 = member(&r.json, "node2");
    assert_eq!(node2["clientURLs"].as_array().unwrap().len(), 2, "{node2}");
    assert_eq!(node2["endpoint"]["reachable"], true, "{node2}");
}

/// node1 restored alone beside the old cluster (forced): seen from node2, the old cluster is the
/// one described, whichever answers first, and node1 is named as a member of another cluster,
/// not counted. Asked a few times: the order of the answers varies.
#[test]
fn beside_a_node_restored_alone_each_side_sees_its_own_cluster_3_5_30() {
    let c = Cluster::start(Spec::new(3, "3.5.30"));
    let snap = c.base.join("s.db");
    let r = c.run_json("etcd-snap", 1, &["save", "--out", snap.to_str().unwrap()], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let old = status(&c, 2, &[]).json["clusterId"].clone();
    let args = ["--swap", "--snapshot", snap.to_str().unwrap(), "--yes", "--force"];
    let r = c.run_json("etcd-restore", 1, &args, None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_ne!(r.json["clusterId"], old);
    // Also with the restored node first in --endpoints (an ETCDCTL_ENDPOINTS in the shell, say).
    let all = [1, 2, 3].map(|k| c.node(k).client_url()).join(",");
    for i in 0..6 {
        let s = match i % 2 {
            0 => status(&c, 2, &[]),
            _ => status(&c, 2, &["--endpoints", &all]),
        };
        assert_eq!(s.code, 3, "{}\n{}", s.stderr, s.stdout);
        assert_eq!(s.json["clusterId"], old, "{}", s.stdout);
        let n1 = &member(&s.json, "node1")["endpoint"];
        assert_eq!(n1["reachable"], false, "{n1}");
        assert!(n1["error"].as_str().is_some_and(|e| e.contains("of another cluster")), "{n1}");
        assert_eq!(s.json["quorum"]["reachableVoters"], 2, "{}", s.stdout);
        assert_eq!(s.json["quorum"]["hasQuorum"], true);
    }
}
