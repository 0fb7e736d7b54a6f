//! The lab: real etcd clusters on loopback, each node with its own root (the kubeadm layout), run
//! by the kubelet emulation (`lab-kubelet`) and seen through the `crictl` emulation, so the tools
//! are tested the way they run on a control-plane host. Every process is killed when the cluster
//! value is dropped, pass or fail.

pub mod cri;
pub mod pki;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const VERSIONS: [&str; 3] = ["3.4.23", "3.5.16", "3.5.30"];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

/// Where tests/install-etcd put the etcd binaries (`<lab>/etcd/<version>/`).
pub fn lab_dir() -> PathBuf {
    std::env::var_os("ETCD_LAB_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join(".lab"))
}

pub fn etcd_dir(version: &str) -> PathBuf {
    let dir = lab_dir().join("etcd").join(version);
    assert!(dir.join("etcd").is_file(), "etcd {version} is not installed in {}: run tests/install-etcd", dir.display());
    dir
}

/// The workspace's built binaries (the tools, `crictl`, `lab-kubelet`), next to the test binary.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(p.is_file(), "{} is missing: build the workspace first (cargo build --workspace --bins)", p.display());
    p
}

/// A lab-wide lock on a /24 of loopback addresses, so clusters of parallel tests never collide.
struct Slot {
    number: u8,
    _lock: File,
}

impl Slot {
    fn take() -> Slot {
        let dir = std::env::temp_dir().join("etcd-lab-slots");
        std::fs::create_dir_all(&dir).expect("slot dir");
        for number in 20..=250u8 {
            let f = File::create(dir.join(format!("{number}.lock"))).expect("slot file");
            if f.try_lock().is_ok() {
                return Slot { number, _lock: f };
            }
        }
        panic!("no free lab slot");
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub index: usize,
    pub name: String,
    pub ip: String,
    /// The node's host filesystem (`etc/kubernetes`, `var/lib/etcd`, ...).
    pub root: PathBuf,
}

impl Node {
    pub fn client_url(&self) -> String {
        format!("https://{}:2379", self.ip)
    }
    pub fn peer_url(&self) -> String {
        format!("https://{}:2380", self.ip)
    }
    pub fn manifest(&self) -> PathBuf {
        self.root.join("etc/kubernetes/manifests/etcd.yaml")
    }
    pub fn pki(&self) -> PathBuf {
        self.root.join("etc/kubernetes/pki/etcd")
    }
    pub fn cri_endpoint(&self) -> String {
        format!("unix://{}/run/containerd/containerd.sock", self.root.display())
    }
    /// Where tests park a manifest they took out of the manifests dir.
    pub fn parked_manifest(&self) -> PathBuf {
        self.root.join("etcd.yaml.parked")
    }
}

/// How to build a cluster.
#[derive(Debug, Clone)]
pub struct Spec {
    pub nodes: usize,
    pub version: String,
    /// Flags added to every node's etcd command.
    pub extra_flags: Vec<String>,
    /// Validity of node 1's server certificate.
    pub server_validity: pki::Validity,
    /// Start from this snapshot: every node's data dir made by `etcd-restore` (token `lab-restore`).
    pub restore_from: Option<PathBuf>,
    /// More etcd-restore flags (e.g. a revision bump).
    pub restore_args: Vec<String>,
    /// Peers talk through a [`PeerLink`] per node (advertised on port 2382), which a test can cut.
    pub peer_links: bool,
}

impl Spec {
    pub fn new(nodes: usize, version: &str) -> Spec {
        Spec {
            nodes,
            version: version.into(),
            extra_flags: vec![],
            server_validity: pki::Validity::default(),
            restore_from: None,
            restore_args: vec![],
            peer_links: false,
        }
    }
}

pub struct Cluster {
    pub spec: Spec,
    pub nodes: Vec<Node>,
    pub base: PathBuf,
    pub ca: pki::Ca,
    kubelets: Vec<Child>,
    /// With `Spec::peer_links`: node k's at index k-1.
    pub peer_links: Vec<PeerLink>,
    _slot: Slot,
}

/// The kubeadm 1.31-style etcd manifest for a lab node (common's renderer), listening on the node
/// IP only, since kubeadm's extra 127.0.0.1 listeners would collide between nodes on one machine.
pub fn kubeadm_manifest(node: &Node, initial_cluster: &str, version: &str, extra_flags: &[String]) -> String {
    let text = common::manifest::render_kubeadm(&common::manifest::KubeadmEtcd {
        name: &node.name,
        host: &node.ip,
        image: &format!("etcd:{version}-0"),
        initial_cluster,
        existing: false,
    });
    let mut m = common::manifest::Manifest::parse(&node.manifest(), &text).expect("rendered manifest parses");
    m.set_flag("listen-client-urls", &node.client_url()).expect("edit");
    m.set_flag("listen-metrics-urls", &format!("http://{}:2381", node.ip)).expect("edit");
    for f in extra_flags {
        let body = f.trim_start_matches('-');
        let (k, v) = body.split_once('=').unwrap_or((body, "true"));
        m.set_flag(k, v).expect("edit");
    }
    m.to_yaml().expect("yaml")
}

/// What a tool printed and its exit code; `json` is stdout parsed (Null when it is not JSON).
pub struct Run {
    pub code: i32,
    pub json: serde_json::Value,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command to its end, feeding `stdin` when given.
pub fn run(mut cmd: Command, stdin: Option<&str>) -> Run {
    use std::io::Write;
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn tool");
    if let Some(text) = stdin {
        child.stdin.take().expect("piped").write_all(text.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait for tool");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Run {
        code: out.status.code().expect("exit code (not a signal)"),
        json: serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A tool held at a failpoint (`<point>:pause`): spawned with piped output, returned once it says
/// it is paused. Killed if dropped while still held (a failed test): else it would go on, up to
/// five minutes later, against a lab left for inspection.
struct Held {
    child: Option<std::process::Child>,
    stderr: Option<std::io::BufReader<std::process::ChildStderr>>,
    seen: String,
    go: PathBuf,
}

impl Held {
    fn spawn(dir: &Path, mut cmd: Command, point: &str) -> Held {
        use std::io::BufRead;
        let go = dir.join(format!("go-{point}"));
        // A go file left by an earlier pause at the same point would let this one through at once.
        let _ = std::fs::remove_file(&go);
        cmd.env(common::failpoint::VAR, format!("{point}:pause"))
            .env(common::failpoint::GO_VAR, &go)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        while !seen.contains(&format!("failpoint {point}: paused")) {
            let mut line = String::new();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "ended before {point}: {seen}");
            seen += &line;
        }
        Held { child: Some(child), stderr: Some(stderr), seen, go }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("held").id()
    }

    /// Closes our ends of its stdout and stderr pipes: its prints then fail.
    fn cut_off(&mut self) {
        self.stderr = None;
        drop(self.child.as_mut().and_then(|c| c.stdout.take()));
    }

    /// Lets the tool go on; it is the caller's from here, with what it printed so far.
    fn release(mut self) -> (std::process::Child, Option<std::io::BufReader<std::process::ChildStderr>>, String) {
        std::fs::write(&self.go, b"").unwrap();
        (self.child.take().expect("held"), self.stderr.take(), std::mem::take(&mut self.seen))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `cmd` held at failpoint `point`; once it is there, `act` runs (given the tool's pid), then
/// the tool goes on. The go file goes in `dir`. Returns the finished run and how long it took
/// after `act`.
pub fn paused_at(dir: &Path, cmd: Command, point: &str, act: impl FnOnce(u32)) -> (Run, Duration) {
    let held = Held::spawn(dir, cmd, point);
    act(held.pid());
    let (child, stderr, seen) = held.release();
    let mut stderr = stderr.expect("not cut off");
    let t = Instant::now();
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let out = child.wait_with_output().unwrap();
    let took = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let run = Run {
        code: shell_code(out.status),
        json: serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null),
        stdout,
        stderr: seen + &rest.join().unwrap(),
    };
    (run, took)
}

/// An exit status as a shell reports it: the exit code, or 128 + the signal that ended it (a
/// test that signals a tool tells a deferred signal, 128 + its number, from an abort, 134).
pub fn shell_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().expect("an exit code or a signal"))
}

/// Runs `cmd` held at failpoint `point`; once it is there, closes the pipes of its stdout and
/// stderr (as a dropped ssh session or a killed `| tee` would), sends it `sig`, and lets it go on.
/// Returns its [`shell_code`].
pub fn paused_then_cut_off(dir: &Path, cmd: Command, point: &str, sig: i32) -> i32 {
    let mut held = Held::spawn(dir, cmd, point);
    held.cut_off();
    assert!(cri::signal(held.pid(), sig));
    shell_code(held.release().0.wait().unwrap())
}

/// Runs `cmd` as a shell runs a foreground job: the leader of its own process group, its output
/// going to files (as to a terminal that stays). Held at failpoint `point`; once released, the
/// whole group gets `sig` every 5 ms until the tool ends (an operator pressing Ctrl-C again and
/// again): every child the tool runs meanwhile gets it too, unless the tool gave it a group of its
/// own. `ignored` starts the tool with `sig` ignored, as `nohup` does for SIGHUP. Returns the run
/// (its [`shell_code`]) and how many times the group was signalled.
pub fn paused_then_group_signalled(dir: &Path, mut cmd: Command, point: &str, sig: i32, ignored: bool) -> (Run, usize) {
    use std::os::unix::process::CommandExt;
    let (out, err, go) = (dir.join("group-signal.out"), dir.join("group-signal.err"), dir.join(format!("go-{point}")));
    let _ = std::fs::remove_file(&go);
    cmd.env(common::failpoint::VAR, format!("{point}:pause"))
        .env(common::failpoint::GO_VAR, &go)
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .process_group(0);
    if ignored {
        // SAFETY: signal(2) is async-signal-safe, as a pre_exec closure must be.
        unsafe {
            cmd.pre_exec(move || {
                libc::signal(sig, libc::SIG_IGN);
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().unwrap();
    let paused = format!("failpoint {point}: paused");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&err).unwrap().contains(&paused) {
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            let _ = child.kill();
            panic!("not held at {point}: {}", std::fs::read_to_string(&err).unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(&go, b"").unwrap();
    let mut sent = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        // SAFETY: kill(2) of the child's own group (its pid, negated); no memory effects.
        if unsafe { libc::kill(-(child.id() as i32), sig) } == 0 {
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = std::fs::read_to_string(&out).unwrap();
    let run = Run {
        code: shell_code(status),
        json: serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null),
        stdout,
        stderr: std::fs::read_to_string(&err).unwrap(),
    };
    (run, sent)
}

/// Runs `cmd` with failpoint `point` set, and checks that the failpoint is what stopped it (its
/// message said, an abort), not an exit or a crash elsewhere.
pub fn killed_at(mut cmd: Command, point: &str) {
    use std::os::unix::process::ExitStatusExt;
    let out = cmd.env(common::failpoint::VAR, point).stdin(Stdio::null()).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.signal() == Some(libc::SIGABRT) && stderr.contains(&format!("failpoint {point}: aborting")),
        "{point}: the failpoint did not stop it ({}): {stderr}",
        out.status
    );
}

fn signal(pid: i32, sig: i32) {
    if pid > 0 {
        // SAFETY: plain kill(2) on a pid this lab started.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

impl Cluster {
    /// Starts the cluster and waits until every member is healthy.
    pub fn start(spec: Spec) -> Cluster {
        let slot = Slot::take();
        let base = std::env::temp_dir().join(format!("etcd-lab-{}-{}", slot.number, std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).expect("lab base dir");
        let nodes: Vec<Node> = (1..=spec.nodes)
            .map(|k| Node {
                index: k,
                name: format!("node{k}"),
                ip: format!("127.0.{}.1{k}", slot.number),
                root: base.join(format!("node{k}")),
            })
            .collect();
        let ca = pki::Ca::new("etcd-ca");
        let links: Vec<PeerLink> = match spec.peer_links {
            true => nodes.iter().map(|n| PeerLink::start(&n.ip, PEER_LINK_PORT, 2380)).collect(),
            false => vec![],
        };
        let advertised = |n: &Node| match spec.peer_links {
            true => format!("https://{}:{PEER_LINK_PORT}", n.ip),
            false => n.peer_url(),
        };
        let initial: Vec<String> = nodes.iter().map(|n| format!("{}={}", n.name, advertised(n))).collect();
        for n in &nodes {
            for d in ["etc/kubernetes/manifests", "var/lib/etcd", "run/containerd"] {
                std::fs::create_dir_all(n.root.join(d)).expect("node dir");
            }
            let validity = if n.index == 1 { spec.server_validity } else { pki::Validity::default() };
            ca.write_node_pki(&n.pki(), &n.name, &n.ip, validity);
            let mut flags = spec.extra_flags.clone();
            if spec.peer_links {
                flags.push(format!("--initial-advertise-peer-urls={}", advertised(n)));
            }
            let manifest = kubeadm_manifest(n, &initial.join(","), &spec.version, &flags);
            std::fs::write(n.manifest(), manifest).expect("manifest");
        }
        if let Some(snapshot) = &spec.restore_from {
            for n in &nodes {
                let out = Command::new(bin("etcd-restore"))
                    .arg("--snapshot")
                    .arg(snapshot)
                    .arg("--data-dir")
                    .arg(n.root.join("var/lib/etcd"))
                    .args(["--name", &n.name, "--initial-cluster", &initial.join(",")])
                    .args(["--initial-advertise-peer-urls", &n.peer_url(), "--initial-cluster-token", "lab-restore"])
                    .args(&spec.restore_args)
                    .output()
                    .expect("run etcd-restore");
                assert!(out.status.success(), "etcd-restore: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let mut cluster = Cluster { spec, nodes, base, ca, kubelets: Vec::new(), peer_links: links, _slot: slot };
        for i in 0..cluster.nodes.len() {
            let kubelet = cluster.spawn_kubelet(i);
            cluster.kubelets.push(kubelet);
        }
        cluster.wait_healthy(&cluster.nodes.iter().map(|n| n.index).collect::<Vec<_>>(), Duration::from_secs(60));
        cluster
    }

    fn spawn_kubelet(&self, i: usize) -> Child {
        let n = &self.nodes[i];
        let log = File::create(n.root.join("kubelet.log")).expect("kubelet log");
        Command::new(bin("lab-kubelet"))
            .arg("--root")
            .arg(&n.root)
            .args(["--node-name", &n.name, "--default-version", &self.spec.version, "--exit-with-parent"])
            .arg("--etcd-dir")
            .arg(lab_dir().join("etcd"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start lab-kubelet")
    }

    pub fn node(&self, k: usize) -> &Node {
        &self.nodes[k - 1]
    }

    pub fn endpoints(&self) -> String {
        self.nodes.iter().map(Node::client_url).collect::<Vec<_>>().join(",")
    }

    /// A tool of the workspace as run on node `k`: its root as --rootfs (through ETCD_ROOTFS), the
    /// node's runtime endpoint, the emulated crictl first on PATH; no ETCDCTL_* from outside.
    pub fn tool(&self, name: &str, k: usize) -> Command {
        let node = self.node(k);
        let mut cmd = Command::new(bin(name));
        for (var, _) in std::env::vars() {
            if var.starts_with("ETCDCTL_") {
                cmd.env_remove(var);
            }
        }
        let path = format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_default());
        cmd.env("ETCD_ROOTFS", &node.root)
            .env("CONTAINER_RUNTIME_ENDPOINT", node.cri_endpoint())
            .env("PATH", path)
            .env_remove("CRICTL")
            .stdin(Stdio::null());
        cmd
    }

    /// [`paused_at`] with the go file in the lab's dir.
    pub fn paused_at(&self, cmd: Command, point: &str, act: impl FnOnce(u32)) -> (Run, Duration) {
        paused_at(&self.base, cmd, point, act)
    }

    /// A tool on node `k` with `-w json`.
    pub fn run_json(&self, name: &str, k: usize, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = self.tool(name, k);
        cmd.args(args).args(["-w", "json"]);
        run(cmd, stdin)
    }

    /// etcdctl of the cluster's version, with node 1's client certificate.
    pub fn etcdctl(&self, endpoints: &str, args: &[&str]) -> Output {
        let pki = self.node(1).pki();
        Command::new(etcd_dir(&self.spec.version).join("etcdctl"))
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .arg(format!("--cacert={}", pki.join("ca.crt").display()))
            .arg(format!("--cert={}", pki.join("healthcheck-client.crt").display()))
            .arg(format!("--key={}", pki.join("healthcheck-client.key").display()))
            .args(["--dial-timeout=2s", "--command-timeout=5s"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run etcdctl")
    }

    /// `etcdctl` that must succeed; its stdout.
    pub fn etcdctl_ok(&self, args: &[&str]) -> String {
        let out = self.etcdctl(&self.endpoints(), args);
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// An etcdctl member change that must succeed: etcd refuses them ("unhealthy cluster") for a
    /// few seconds after a member (re)connects, which is waited out. Its stdout.
    pub fn member_change(&self, endpoints: &str, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.etcdctl(endpoints, args);
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(err.contains("unhealthy cluster") && Instant::now() < deadline, "etcdctl {args:?}: {err}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until the given nodes answer `endpoint health`.
    pub fn wait_healthy(&self, nodes: &[usize], timeout: Duration) {
        let eps: Vec<String> = nodes.iter().map(|&k| self.node(k).client_url()).collect();
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.etcdctl(&eps.join(","), &["endpoint", "health"]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cluster not healthy within {timeout:?}: {}\nlab dir: {}",
                String::from_utf8_lossy(&out.stderr),
                self.base.display()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// A running container named etcd of another kube-system pod on node `k` (Cilium's
    /// clustermesh-apiserver runs one), created an hour ago so that etcd's stay the newest: a
    /// `sleep` the emulated runtime lists as running until the returned child is killed.
    pub fn plant_foreign_etcd(&self, k: usize) -> (Child, String) {
        let child = Command::new("sleep").arg("3600").spawn().expect("sleep");
        let (_, ticks) = cri::proc_stat(child.id()).expect("sleep runs");
        let created = cri::now_nanos() - 3_600_000_000_000;
        let foreign = cri::Container {
            id: cri::new_id(),
            pod_sandbox_id: cri::new_id(),
            pod_uid: "5f0c6d2e-8a1b-4c3d-9e2f-0a1b2c3d4e5f".into(),
            pod_name: "clustermesh-apiserver-7d9f8c-x2k4q".into(),
            namespace: "kube-system".into(),
            name: "etcd".into(),
            state: cri::CONTAINER_RUNNING.into(),
            created_at: created,
            started_at: created,
            pid: child.id(),
            pid_start_ticks: ticks,
            image: "clustermesh-etcd:1".into(),
            ..Default::default()
        };
        let id = foreign.id.clone();
        cri::with_state(&cri::state_dir_for_root(&self.node(k).root), |st| st.containers.push(foreign)).expect("state");
        (child, id)
    }

    /// `crictl ps -a -o json` of node `k` (through the emulation), newest first.
    pub fn containers(&self, k: usize) -> Vec<serde_json::Value> {
        let out = Command::new(bin("crictl"))
            .env("CONTAINER_RUNTIME_ENDPOINT", self.node(k).cri_endpoint())
            .args(["ps", "-a", "-o", "json"])
            .output()
            .expect("crictl");
        assert!(out.status.success(), "crictl ps: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("crictl json");
        v["containers"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until node `k`'s newest etcd container satisfies `pred`.
    pub fn wait_container(&self, k: usize, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.containers(k).into_iter().next().filter(|c| pred(c)) {
                return c;
            }
            assert!(Instant::now() < deadline, "node{k}: container never {what}: {:?}", self.containers(k));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid of node `k`'s running etcd, from the runtime's state.
    pub fn etcd_pid(&self, k: usize) -> i32 {
        let c = self.wait_container(k, "running", |c| c["state"] == "CONTAINER_RUNNING");
        let id = c["id"].as_str().expect("id");
        let out = Command::new(bin("crictl"))
            .env("CONTAINER_RUNTIME_ENDPOINT", self.node(k).cri_endpoint())
            .args(["inspect", id])
            .output()
            .expect("crictl inspect");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect json");
        v["info"]["pid"].as_i64().expect("pid") as i32
    }

    /// Takes node `k`'s manifest out of the manifests dir (as an operator stopping etcd does)
    /// and waits until the kubelet has stopped the container.
    pub fn stop_node(&self, k: usize) {
        let n = self.node(k);
        std::fs::rename(n.manifest(), n.parked_manifest()).expect("park manifest");
        self.wait_container(k, "exited", |c| c["state"] == "CONTAINER_EXITED");
    }

    /// Puts a parked manifest back and waits for the member to be healthy.
    pub fn start_node(&self, k: usize) {
        let n = self.node(k);
        std::fs::rename(n.parked_manifest(), n.manifest()).expect("unpark manifest");
        self.wait_healthy(&[k], Duration::from_secs(30));
    }

    pub fn freeze(&self, k: usize) -> i32 {
        let pid = self.etcd_pid(k);
        signal(pid, libc::SIGSTOP);
        pid
    }

    pub fn thaw(&self, pid: i32) {
        signal(pid, libc::SIGCONT);
    }

    /// A crictl that looks at another runtime: it lists no container at all (for `--crictl`).
    pub fn crictl_of_another_runtime(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.base.join("crictl-elsewhere");
        std::fs::write(&path, "#!/bin/sh\necho '{\"containers\":[]}'\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// Every pid the lab started or the kubelets started for it.
    fn all_container_pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for n in &self.nodes {
            let state = n.root.join("run/containerd/lab-cri/state.json");
            let Ok(text) = std::fs::read_to_string(state) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            for c in v["containers"].as_array().into_iter().flatten() {
                if let Some(pid) = c["pid"].as_i64().filter(|&p| p > 0) {
                    pids.push(pid as i32);
                }
            }
        }
        pids
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for k in &mut self.kubelets {
            let _ = k.kill();
        }
        for pid in self.all_container_pids() {
            // A recorded pid may be reused only after its process was reaped by the kubelet, which
            // is gone; SIGCONT first so a frozen etcd dies too.
            signal(pid, libc::SIGCONT);
            signal(pid, libc::SIGKILL);
        }
        for k in &mut self.kubelets {
            let _ = k.wait();
        }
        if std::thread::panicking() {
            eprintln!("lab left for inspection in {}", self.base.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

/// What a [`Proxy`] does to the bytes coming back from the server once `after` have passed.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Close both sides: the member died mid-stream.
    Cut { after: u64 },
    /// Stop forwarding, keep the connection: the member froze mid-stream.
    Stall { after: u64 },
}

/// Where a [`PeerLink`] listens on a node's IP (2381 is the metrics port).
const PEER_LINK_PORT: u16 = 2382;

/// A TCP relay on a node's IP from `port` to its peer port: the way other members reach it, which
/// a test can cut (every connection dropped, new ones refused) and heal, as a firewall would.
pub struct PeerLink {
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    addr: String,
}

impl PeerLink {
    pub fn start(ip: &str, port: u16, target_port: u16) -> PeerLink {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind(format!("{ip}:{port}")).expect("peer link listen");
        let target = format!("{ip}:{target_port}");
        let link = PeerLink {
            cut: Default::default(),
            open: Default::default(),
            stop: Default::default(),
            addr: format!("{ip}:{port}"),
        };
        let (cut, open, stop) = (link.cut.clone(), link.open.clone(), link.stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break; // the listener goes with the thread: the port is free again
                }
                let Ok(client) = client else { continue };
                if cut.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(server) = std::net::TcpStream::connect(&target) else { continue };
                let mut streams = open.lock().expect("link lock");
                streams.extend([client.try_clone().expect("clone"), server.try_clone().expect("clone")]);
                for (mut from, mut to) in
                    [(client.try_clone().expect("clone"), server.try_clone().expect("clone")), (server, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        link
    }

    /// Drops every connection through the link and refuses new ones until [`PeerLink::heal`].
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for s in self.open.lock().expect("link lock").drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn heal(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        self.cut();
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(&self.addr);
    }
}

/// A TCP proxy on 127.0.0.1 (in every lab certificate's SANs) in front of a member, to break a
/// stream at a chosen byte.
pub struct Proxy {
    pub url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    pub fn start(target: &str, fault: Fault) -> Proxy {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy listen");
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        let stop = Arc::new(AtomicBool::new(false));
        let passed = Arc::new(AtomicU64::new(0));
        let (target, stop2) = (target.to_string(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&target) else { continue };
                let (mut c_in, mut s_out) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                });
                let (mut s_in, mut c_out) = (server, client);
                let (passed, stop) = (passed.clone(), stop2.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    loop {
                        let Ok(n) = s_in.read(&mut buf) else { return };
                        if n == 0 {
                            let _ = c_out.shutdown(Shutdown::Both);
                            return;
                        }
                        let total = passed.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                        match fault {
                            Fault::Cut { after } if total > after => {
                                let _ = c_out.shutdown(Shutdown::Both);
                                let _ = s_in.shutdown(Shutdown::Both);
                                return;
                            }
                            Fault::Stall { after } if total > after => {
                                while !stop.load(Ordering::SeqCst) {
                                    std::thread::sleep(Duration::from_millis(50));
                                }
                                return;
                            }
                            _ => {}
                        }
                        if c_out.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Proxy { url, stop }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(self.url.trim_start_matches("https://"));
    }
}

/// The names in a directory, sorted, without etcd-snap's lock file (empty when it does not exist).
/// Whether any file under `dir` contains `needle` (a data dir's WAL holds every acknowledged write).
pub fn holds(dir: &Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.filter_map(Result::ok).any(|e| {
        let p = e.path();
        match std::fs::read(&p) {
            Ok(b) => b.windows(needle.len()).any(|w| w == needle),
            Err(_) => p.is_dir() && holds(&p, needle),
        }
    })
}

/// After a swap was killed: where the thing it was moving can be, in place or where the swap's
/// journal (`swap-in-progress.json` under `node_root`) says under `key`.
pub fn swap_places(node_root: &Path, key: &str, in_place: PathBuf) -> Vec<PathBuf> {
    let journal = std::fs::read(node_root.join("var/lib/etcd-recovery/swap-in-progress.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .unwrap_or_default();
    let mut places = vec![in_place];
    places.extend(journal[key].as_str().map(PathBuf::from));
    places
}

/// The address `last` in a node's /24 (127.0.S.11 -> 127.0.S.<last>): an address nothing listens on.
pub fn sibling_ip(ip: &str, last: u8) -> String {
    format!("{}.{last}", ip.rsplit_once('.').expect("an IPv4 address").0)
}

pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.retain(|n| n != ".etcd-snap.lock");
    v.sort();
    v
}

/// A mount on a dir (made if missing), unmounted when dropped, pass or fail. Needs root, as CI runs.
pub struct Mounted(PathBuf);

impl Mounted {
    /// A tmpfs with the given mount options (size, mode, ro).
    pub fn mount(dir: &Path, options: &str) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs"]).arg(dir).status().unwrap();
        assert!(ok.success(), "mounting a tmpfs needs root");
        Mounted(dir.to_path_buf())
    }

    /// `src` bind-mounted on `dir`: a mount point on the same filesystem (and device) as its parent.
    pub fn bind(src: &Path, dir: &Path) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount").arg("--bind").arg(src).arg(dir).status().unwrap();
        assert!(ok.success(), "a bind mount needs root");
        Mounted(dir.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
