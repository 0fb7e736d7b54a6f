//! `lab [--etcd-version V] [--nodes N] [--keep] [--step N]`: the rehearsal. Brings up a local
//! 3-node lab (kubelet and crictl emulated) and runs the runbook's procedures with the tools, one
//! after another, printing each command as a user would type it, its output and a verdict:
//! 1 status, 2 a cron-style snapshot, 3 a failed member replaced, 4 all lost and restored (one
//! node, then joins), 5 all restored at once, 6 quorum lost and recovered. Keys written before each
//! break are read back from every member after it. Exit 0 only if every step verified its data.
//! With --keep the lab stays up (with the environment to use it by hand) until Ctrl-C.

use etcd_lab::{Cluster, Run, Spec, VERSIONS};
use std::process::ExitCode;
use std::time::Duration;

struct Drill<'a> {
    c: &'a Cluster,
    /// Every key written so far, with its value.
    keys: Vec<(String, String)>,
}

type Step = Result<(), String>;

impl Drill<'_> {
    /// Runs a tool on node `k`, printed as the operator would type it there.
    fn tool(&self, k: usize, name: &str, args: &[&str], stdin: Option<&str>) -> Run {
        let shown: Vec<String> = args
            .iter()
            .map(|a| if a.contains(' ') || a.is_empty() { format!("'{a}'") } else { a.to_string() })
            .collect();
        println!("node{k}$ {}{name} {}", if stdin.is_some() { "... | " } else { "" }, shown.join(" "));
        let mut cmd = self.c.tool(name, k);
        cmd.args(args);
        let r = etcd_lab::run(cmd, stdin);
        for line in r.stdout.lines().chain(r.stderr.lines()) {
            println!("    {line}");
        }
        println!("    (exit {})", r.code);
        r
    }

    fn ok(&self, k: usize, name: &str, args: &[&str], stdin: Option<&str>) -> Result<Run, String> {
        let r = self.tool(k, name, args, stdin);
        if r.code == 0 { Ok(r) } else { Err(format!("{name} {} exited {}", args.join(" "), r.code)) }
    }

    fn write_keys(&mut self, step: usize) {
        for i in 0..10 {
            let (k, v) = (format!("/registry/drill/step{step}/k{i}"), format!("value-{step}-{i}"));
            self.c.etcdctl_ok(&["put", &k, &v]);
            self.keys.push((k, v));
        }
        println!("# wrote 10 keys under /registry/drill/step{step}/ ({} in all)", self.keys.len());
    }

    /// Every key written so far, read from each member's own data.
    fn verify(&self, keys: &[(String, String)]) -> Step {
        self.c.wait_healthy(&[1, 2, 3], Duration::from_secs(60));
        for n in &self.c.nodes {
            for (k, v) in keys {
                let out = self.c.etcdctl(&n.client_url(), &["get", k, "--print-value-only", "--consistency=s"]);
                let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if got != *v {
                    return Err(format!("{} on {}: {got:?}, expected {v:?}", k, n.name));
                }
            }
        }
        println!("# verified: {} keys on every member", keys.len());
        Ok(())
    }

    fn healthy(&self) -> Step {
        let r = self.tool(1, "etcd-status", &["-w", "table"], None);
        if r.code == 0 { Ok(()) } else { Err(format!("etcd-status exited {}", r.code)) }
    }

    /// A node destroyed: its manifest gone from the manifests dir (kept aside for the rehearsal)
    /// and its data wiped.
    fn destroy(&self, k: usize) {
        println!("# BREAK: node{k}'s etcd container and data are gone");
        self.c.stop_node(k);
        let data = self.c.node(k).root.join("var/lib/etcd");
        let _ = std::fs::remove_dir_all(&data);
    }

    /// clean + join for a node whose manifest was taken aside.
    fn rejoin(&self, k: usize, endpoint: &str) -> Step {
        self.ok(k, "etcd-member", &["clean", "--yes", "--force"], None)?;
        let template = self.c.node(k).parked_manifest();
        let t = template.to_str().unwrap_or_default();
        let template_arg: Vec<&str> = if template.exists() { vec!["--template", t] } else { vec![] };
        let mut args = vec!["join", "--yes", "--endpoints", endpoint];
        args.extend(template_arg);
        self.ok(k, "etcd-member", &args, None).map(drop)
    }

    fn step1(&mut self) -> Step {
        self.healthy()
    }

    fn step2(&mut self) -> Step {
        self.write_keys(2);
        let dir = self.c.base.join("backups");
        let metrics = self.c.base.join("etcd_snapshot.prom");
        let d = dir.to_str().unwrap_or_default().to_string();
        let m = metrics.to_str().unwrap_or_default().to_string();
        let r = self.ok(
            1,
            "etcd-snap",
            &["save", "--dir", &d, "--keep", "3", "--lock", "--metrics-file", &m, "-w", "json"],
            None,
        )?;
        let doc: serde_json::Value = serde_json::from_str(&r.stdout).map_err(|e| e.to_string())?;
        let path = doc["path"].as_str().ok_or("no path in the Snapshot document")?.to_string();
        self.ok(1, "etcd-snap", &["verify", &path], None)?;
        let text = std::fs::read_to_string(&metrics).map_err(|e| e.to_string())?;
        if !text.contains("etcd_snapshot_failures_total 0") {
            return Err(format!("metrics file: {text}"));
        }
        Ok(())
    }

    fn step3(&mut self) -> Step {
        self.write_keys(3);
        self.destroy(3);
        let status = self.tool(1, "etcd-status", &["-w", "json"], None);
        self.ok(1, "etcd-member", &["remove", "--unreachable", "--status", "-", "--yes"], Some(&status.stdout))?;
        self.rejoin(3, &self.c.node(1).client_url())?;
        self.verify(&self.keys.clone())?;
        self.healthy()
    }

    /// A fresh snapshot with every key so far, for the restore steps.
    fn fresh_snapshot(&mut self, name: &str) -> Result<String, String> {
        let out = self.c.base.join(name);
        let o = out.to_str().unwrap_or_default().to_string();
        self.ok(1, "etcd-snap", &["save", "--out", &o], None)?;
        Ok(o)
    }

    fn step4(&mut self) -> Step {
        self.write_keys(4);
        let snap = self.fresh_snapshot("step4.db")?;
        println!("# BREAK: every key deleted by mistake; the cluster must go back to the snapshot");
        self.c.etcdctl_ok(&["del", "--prefix", "/registry/drill/"]);
        println!("# the other members stop first: they must not go on serving the old data beside the restored one");
        for k in [2, 3] {
            self.ok(k, "etcd-member", &["clean", "--yes", "--force"], None)?;
        }
        self.ok(1, "etcd-restore", &["--swap", "--snapshot", &snap, "--yes"], None)?;
        for k in [2, 3] {
            self.ok(k, "etcd-member", &["join", "--yes", "--endpoints", &self.c.node(1).client_url()], None)?;
        }
        self.verify(&self.keys.clone())?;
        self.healthy()
    }

    fn step5(&mut self) -> Step {
        self.write_keys(5);
        let snap = self.fresh_snapshot("step5.db")?;
        println!("# BREAK: every key deleted by mistake; all nodes go back to the snapshot at once");
        self.c.etcdctl_ok(&["del", "--prefix", "/registry/drill/"]);
        let initial: Vec<String> = self.c.nodes.iter().map(|n| format!("{}={}", n.name, n.peer_url())).collect();
        let plan = self.ok(
            1,
            "etcd-restore",
            &["plan", "--snapshot", &snap, "--initial-cluster", &initial.join(","), "-w", "json"],
            None,
        )?;
        let doc: serde_json::Value = serde_json::from_str(&plan.stdout).map_err(|e| e.to_string())?;
        let nodes = doc["nodes"].as_array().cloned().unwrap_or_default();
        println!("# running each node's command at the same time");
        let results: Vec<Run> = std::thread::scope(|s| {
            let handles: Vec<_> = nodes
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let argv: Vec<String> = n["argv"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
                        .unwrap_or_default();
                    let c = self.c;
                    s.spawn(move || {
                        let args: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
                        let mut cmd = c.tool("etcd-restore", i + 1);
                        cmd.args(&args);
                        etcd_lab::run(cmd, None)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        for (i, r) in results.iter().enumerate() {
            println!("node{}$ {}", i + 1, nodes[i]["shell"].as_str().unwrap_or_default());
            for line in r.stdout.lines().chain(r.stderr.lines()) {
                println!("    {line}");
            }
            if r.code != 0 {
                return Err(format!("node{}: etcd-restore exited {}", i + 1, r.code));
            }
        }
        self.verify(&self.keys.clone())?;
        self.healthy()
    }

    fn step6(&mut self) -> Step {
        self.write_keys(6);
        self.destroy(2);
        self.destroy(3);
        let s = self.tool(1, "etcd-status", &["-w", "table"], None);
        if s.code != 4 {
            return Err(format!("etcd-status should say quorum lost (4), said {}", s.code));
        }
        self.ok(1, "etcd-quorum", &["inspect"], None)?;
        self.ok(1, "etcd-quorum", &["recover", "--yes"], None)?;
        let manifest = std::fs::read_to_string(self.c.node(1).manifest()).map_err(|e| e.to_string())?;
        if manifest.contains("force-new-cluster") {
            return Err("--force-new-cluster left in the manifest".into());
        }
        for k in [2, 3] {
            self.rejoin(k, &self.c.node(1).client_url())?;
        }
        self.verify(&self.keys.clone())?;
        self.healthy()
    }
}

fn main() -> ExitCode {
    let mut version = "3.5.30".to_string();
    let mut keep = false;
    let mut only: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--etcd-version" => version = args.next().unwrap_or_default(),
            "--keep" => keep = true,
            "--step" => only = args.next().and_then(|n| n.parse().ok()).filter(|n| (1..=6).contains(n)).or(Some(0)),
            _ => {
                eprintln!("lab: unknown argument {a:?}; usage: lab [--etcd-version V] [--keep] [--step 1-6]");
                return ExitCode::from(2);
            }
        }
    }
    if !VERSIONS.contains(&version.as_str()) || only == Some(0) {
        eprintln!("lab: --etcd-version must be one of {VERSIONS:?}, --step 1 to 6");
        return ExitCode::from(2);
    }
    println!("# starting a 3-node etcd {version} lab");
    let cluster = Cluster::start(Spec::new(3, &version));
    let n1 = cluster.node(1);
    println!("# lab up in {}; node K listens on {}", cluster.base.display(), n1.ip.replace(".11", ".1K"));
    let mut drill = Drill { c: &cluster, keys: Vec::new() };
    let titles = [
        "status of a healthy cluster",
        "a cron-style snapshot with retention and metrics",
        "a member fails: remove, clean, join",
        "every key deleted: the others cleaned, restore on one node, join them back (option 1)",
        "every key deleted: restore every node at once (option 2)",
        "two of three lost: quorum recovery on the survivor, re-join",
    ];
    let mut failed = 0;
    for (i, title) in titles.iter().enumerate() {
        if only.is_some_and(|n| n != i + 1) {
            continue;
        }
        println!("\n## step {}: {title}", i + 1);
        let result = match i {
            0 => drill.step1(),
            1 => drill.step2(),
            2 => drill.step3(),
            3 => drill.step4(),
            4 => drill.step5(),
            _ => drill.step6(),
        };
        match result {
            Ok(()) => println!("## step {}: PASS", i + 1),
            Err(e) => {
                failed += 1;
                println!("## step {}: FAIL: {e}", i + 1);
                break;
            }
        }
    }
    println!("\n# {}", if failed == 0 { "every step verified its data" } else { "the rehearsal FAILED" });
    if keep {
        println!("# the lab stays up until Ctrl-C. To use the tools as on node1:");
        println!("export ETCD_ROOTFS={}", n1.root.display());
        println!("export CONTAINER_RUNTIME_ENDPOINT={}", n1.cri_endpoint());
        println!("export PATH={}:$PATH", etcd_lab::bin_dir().display());
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    ExitCode::from(if failed == 0 { 0 } else { 1 })
}
