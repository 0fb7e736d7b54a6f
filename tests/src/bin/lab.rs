//! `lab [--nodes N] [--etcd-version V] [--keep]`: brings up a local etcd lab and inspects it with
//! etcd-status, printing each command as a user would type it. With --keep the lab stays up (and
//! the environment to use it by hand is printed) until Ctrl-C; every process dies with this one.

use etcd_lab::{Cluster, Spec, VERSIONS};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut nodes = 3;
    let mut version = "3.5.30".to_string();
    let mut keep = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--nodes" => nodes = args.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            "--etcd-version" => version = args.next().unwrap_or_default(),
            "--keep" => keep = true,
            _ => {
                eprintln!("lab: unknown argument {a:?}; usage: lab [--nodes N] [--etcd-version V] [--keep]");
                return ExitCode::from(2);
            }
        }
    }
    if !(1..=9).contains(&nodes) || !VERSIONS.contains(&version.as_str()) {
        eprintln!("lab: --nodes must be 1..9 and --etcd-version one of {VERSIONS:?}");
        return ExitCode::from(2);
    }
    println!("# starting a {nodes}-node etcd {version} lab");
    let cluster = Cluster::start(Spec::new(nodes, &version));
    let n1 = cluster.node(1);
    println!("# lab up in {}; node1 is {} ({})", cluster.base.display(), n1.ip, n1.root.display());
    println!("$ etcd-status      # on node1");
    let status = cluster.tool("etcd-status", 1).arg("-w").arg("table").status().expect("run etcd-status");
    let code = status.code().unwrap_or(1);
    println!("# etcd-status exited {code} ({})", if code == 0 { "healthy" } else { "NOT healthy" });
    if keep {
        println!("# the lab stays up until Ctrl-C. To use the tools as on node1:");
        println!("export ETCD_ROOTFS={}", n1.root.display());
        println!("export CONTAINER_RUNTIME_ENDPOINT={}", n1.cri_endpoint());
        println!("export PATH={}:$PATH", etcd_lab::bin_dir().display());
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    ExitCode::from(if code == 0 { 0 } else { 1 })
}
