//! The lab's kubelet: runs the static pods of one node root as host processes and keeps the CRI state that the
//! lab's `crictl` answers from (see `etcd_lab::cri`).
//!
//! `lab-kubelet --root R --node-name NAME --etcd-dir D --default-version V [--exit-with-parent]`

use etcd_lab::cri::{self, Container, Mount, Pod, State};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime};

const LOOP: Duration = Duration::from_millis(200);
/// Under the node root: each container's own layer (what it writes outside its volumes).
const LAYERS: &str = "var/lib/lab-kubelet/containers";
/// The API's default `terminationGracePeriodSeconds`, which static pods get too (kubeadm's set none).
const DEFAULT_GRACE_SECONDS: u64 = 30;
/// The kubelet's `--maximum-dead-containers-per-container` default: one exited container kept.
const GC_KEEP_EXITED: usize = 1;
/// A removed pod's containers go at the kubelet's next garbage collection (it runs every minute).
const GC_REMOVED_POD_MILLIS: u64 = 60 * 1000;
/// A container that ran this long resets the backoff (the kubelet's "stable" threshold, shortened).
const BACKOFF_RESET_NANOS: u64 = 60 * 1_000_000_000;
/// What containerd reports when it lost track of how a task ended.
const EXIT_UNKNOWN: i32 = 255;
/// What a container that could not be started reports (runc's "executable file not found").
const EXIT_START_FAILED: i32 = 128;
const CONTAINER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const USAGE: &str = "usage: lab-kubelet --root DIR --node-name NAME --etcd-dir DIR --default-version VERSION \
                     [--exit-with-parent]";

struct Args {
    root: PathBuf,
    node: String,
    etcd_dir: PathBuf,
    default_version: String,
    exit_with_parent: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut root = None;
    let mut node = None;
    let mut etcd_dir = None;
    let mut default_version = None;
    let mut exit_with_parent = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let value = |it: &mut dyn Iterator<Item = String>| {
            inline.clone().or_else(|| it.next()).ok_or_else(|| format!("flag {flag} needs a value"))
        };
        match flag.as_str() {
            "--root" => root = Some(PathBuf::from(value(&mut it)?)),
            "--node-name" => node = Some(value(&mut it)?),
            "--etcd-dir" => etcd_dir = Some(PathBuf::from(value(&mut it)?)),
            "--default-version" => default_version = Some(value(&mut it)?),
            "--exit-with-parent" => exit_with_parent = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    fn need<T>(v: Option<T>, f: &str) -> Result<T, String> {
        v.ok_or_else(|| format!("{f} is required"))
    }
    let root = need(root, "--root")?;
    let root = std::path::absolute(&root).map_err(|e| format!("--root {}: {e}", root.display()))?;
    let etcd_dir = need(etcd_dir, "--etcd-dir")?;
    let etcd_dir = std::path::absolute(&etcd_dir).map_err(|e| format!("--etcd-dir {}: {e}", etcd_dir.display()))?;
    Ok(Args {
        root,
        node: need(node, "--node-name")?,
        etcd_dir,
        default_version: need(default_version, "--default-version")?,
        exit_with_parent,
    })
}

// Only the parts of a Pod the lab acts on; everything else in the manifest is ignored.
#[derive(Deserialize, Default)]
struct PodManifest {
    #[serde(default)]
    metadata: Meta,
    spec: Spec,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    name: String,
    namespace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Spec {
    containers: Vec<ContainerSpec>,
    #[serde(default)]
    volumes: Vec<Volume>,
    termination_grace_period_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerSpec {
    name: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
    #[serde(default)]
    volume_mounts: Vec<VolumeMount>,
    working_dir: Option<String>,
}

#[derive(Deserialize)]
struct EnvVar {
    name: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VolumeMount {
    name: String,
    mount_path: String,
    #[serde(default)]
    sub_path: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Volume {
    name: String,
    host_path: Option<HostPath>,
}

#[derive(Deserialize)]
struct HostPath {
    path: String,
    #[serde(rename = "type", default)]
    kind: String,
}

struct DesiredPod {
    file: PathBuf,
    pod_name: String,
    namespace: String,
    manifest: PodManifest,
}

/// A container process this kubelet started (it alone can reap it).
struct Running {
    child: std::process::Child,
    id: String,
    pod_uid: String,
    pod_name: String,
    name: String,
    started_at: u64,
    term_deadline: Option<Instant>,
    killed: bool,
}

struct Kubelet {
    args: Args,
    manifests_dir: PathBuf,
    children: Vec<Running>,
    /// Containers of an earlier kubelet still alive and being stopped: id -> SIGKILL deadline.
    adopted_term: HashMap<String, Instant>,
    /// Unparsable manifests already reported (by uid, i.e. per content).
    reported_bad: HashSet<String>,
    /// Images that failed to pull, by pod (logged once).
    reported_pull: HashSet<String>,
}

fn backoff_millis(step: u32) -> u64 {
    if step == 0 { 500 } else { (10_000u64 << (step - 1).min(16)).min(300_000) }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(13)]
}

impl Kubelet {
    fn log(&self, msg: &str) {
        eprintln!("{} lab-kubelet {}: {msg}", common::time::rfc3339_nanos(SystemTime::now()), self.args.node);
    }

    fn scan_manifests(&mut self) -> BTreeMap<String, DesiredPod> {
        let mut out = BTreeMap::new();
        let Ok(entries) = fs::read_dir(&self.manifests_dir) else {
            return out;
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for path in files {
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                continue;
            };
            if name.starts_with('.') || !path.is_file() {
                continue;
            }
            let Ok(bytes) = fs::read(&path) else { continue };
            let uid = cri::pod_uid(&name, &bytes, &self.args.node);
            match serde_yaml::from_slice::<PodManifest>(&bytes) {
                Ok(manifest) => {
                    let pod_name = format!("{}-{}", manifest.metadata.name, self.args.node);
                    let namespace = manifest.metadata.namespace.clone().unwrap_or_else(|| "default".into());
                    // Like the kubelet, one pod per namespace/name: of two files that define it
                    // (etcd.yaml and a copy left beside it), the one read last wins.
                    let shadowed: Vec<String> = out
                        .iter()
                        .filter(|(_, d): &(&String, &DesiredPod)| d.pod_name == pod_name && d.namespace == namespace)
                        .map(|(u, _)| u.clone())
                        .collect();
                    for u in shadowed {
                        let d = out.remove(&u).expect("listed above");
                        if self.reported_bad.insert(format!("shadowed {u} {uid}")) {
                            self.log(&format!(
                                "{} and {} define the same pod {namespace}/{pod_name}: running {}",
                                d.file.display(),
                                path.display(),
                                path.display()
                            ));
                        }
                    }
                    out.insert(uid, DesiredPod { file: path, pod_name, namespace, manifest });
                }
                Err(e) => {
                    if self.reported_bad.insert(uid) {
                        self.log(&format!("skipping manifest {}: {e}", path.display()));
                    }
                }
            }
        }
        out
    }

    fn sync(&mut self, st: &mut State, desired: &BTreeMap<String, DesiredPod>) {
        self.reap(st);
        self.check_adopted(st);
        self.sync_pods(st, desired);
        self.enforce_grace(st);
        self.start_missing(st, desired);
        self.gc(st);
    }

    fn reap(&mut self, st: &mut State) {
        let mut i = 0;
        while i < self.children.len() {
            match self.children[i].child.try_wait() {
                Ok(Some(status)) => {
                    let r = self.children.swap_remove(i);
                    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                    self.on_exit(st, &r.id, &r.pod_uid, &r.name, code, r.started_at);
                }
                Ok(None) => i += 1,
                Err(e) => {
                    self.log(&format!("waiting for container {}: {e}", short(&self.children[i].id)));
                    i += 1;
                }
            }
        }
    }

    /// Records the exit and, while the pod exists, schedules the restart with backoff.
    fn on_exit(&self, st: &mut State, id: &str, uid: &str, name: &str, code: i32, started_at: u64) {
        let now = cri::now_nanos();
        let mut attempt = None;
        if let Some(c) = st.containers.iter_mut().find(|c| c.id == id) {
            if c.finished_at == 0 || c.is_running() {
                c.finished_at = now;
            }
            c.state = cri::CONTAINER_EXITED.into();
            c.exit_code = code;
            c.pid = 0;
            c.pid_start_ticks = 0;
            attempt = Some(c.attempt);
        }
        let attempt = attempt.map(|a| format!("attempt {a}")).unwrap_or_else(|| "record removed".into());
        let mut msg = format!("container {} ({name}, {attempt}, pod uid {uid}) exited with code {code}", short(id));
        if let Some(pod) = st.pods.get_mut(uid)
            && !pod.removed
        {
            let pc = pod.containers.entry(name.to_string()).or_default();
            if now.saturating_sub(started_at) >= BACKOFF_RESET_NANOS {
                pc.backoff_step = 0;
            }
            let delay = backoff_millis(pc.backoff_step);
            pc.backoff_step = pc.backoff_step.saturating_add(1);
            pc.next_start_after_unix_millis = now / 1_000_000 + delay;
            msg.push_str(&format!("; restart in {delay} ms"));
        }
        self.log(&msg);
    }

    /// Running records without a child of ours (left by an earlier kubelet): exited once their pid is gone.
    fn check_adopted(&mut self, st: &mut State) {
        let gone: Vec<(String, String, String, u64)> = st
            .containers
            .iter()
            .filter(|c| c.is_running() && !self.children.iter().any(|r| r.id == c.id))
            .filter(|c| !cri::pid_alive(c.pid, c.pid_start_ticks))
            .map(|c| (c.id.clone(), c.pod_uid.clone(), c.name.clone(), c.started_at))
            .collect();
        for (id, uid, name, started) in gone {
            self.adopted_term.remove(&id);
            self.on_exit(st, &id, &uid, &name, EXIT_UNKNOWN, started);
        }
    }

    fn sync_pods(&mut self, st: &mut State, desired: &BTreeMap<String, DesiredPod>) {
        let now = cri::now_nanos();
        for (uid, d) in desired {
            match st.pods.get_mut(uid) {
                None => {
                    let pod = Pod {
                        sandbox_id: cri::new_id(),
                        pod_name: d.pod_name.clone(),
                        namespace: d.namespace.clone(),
                        manifest_file: d.file.display().to_string(),
                        created_at: now,
                        grace_seconds: d
                            .manifest
                            .spec
                            .termination_grace_period_seconds
                            .unwrap_or(DEFAULT_GRACE_SECONDS),
                        ..Pod::default()
                    };
                    self.log(&format!(
                        "pod {} uid {uid} sandbox {} from {}",
                        d.pod_name,
                        short(&pod.sandbox_id),
                        d.file.display()
                    ));
                    st.pods.insert(uid.clone(), pod);
                }
                Some(pod) if pod.removed => {
                    // the same content came back: a new sandbox, attempts continue
                    pod.removed = false;
                    pod.removed_at_unix_millis = 0;
                    pod.sandbox_id = cri::new_id();
                    pod.manifest_file = d.file.display().to_string();
                    self.log(&format!("pod {} uid {uid} is back, sandbox {}", d.pod_name, short(&pod.sandbox_id)));
                }
                Some(_) => {}
            }
        }
        let gone: Vec<String> = st
            .pods
            .iter()
            .filter(|(uid, p)| !p.removed && !desired.contains_key(*uid))
            .map(|(u, _)| u.clone())
            .collect();
        for uid in gone {
            let pod = st.pods.get_mut(&uid).expect("listed above");
            pod.removed = true;
            pod.removed_at_unix_millis = now / 1_000_000;
            self.log(&format!(
                "pod {} uid {uid}: manifest {} gone, stopping its containers",
                pod.pod_name, pod.manifest_file
            ));
            let deadline = Instant::now() + Duration::from_secs(pod.grace_seconds);
            for r in self.children.iter_mut().filter(|r| r.pod_uid == uid && r.term_deadline.is_none()) {
                r.term_deadline = Some(deadline);
                cri::signal(r.child.id(), libc::SIGTERM);
            }
            for c in st.containers.iter().filter(|c| c.pod_uid == uid && c.is_running()) {
                if !self.children.iter().any(|r| r.id == c.id) && cri::signal(c.pid, libc::SIGTERM) {
                    self.adopted_term.insert(c.id.clone(), deadline);
                }
            }
            for c in st.containers.iter().filter(|c| c.pod_uid == uid && c.is_running()) {
                self.log(&format!("sent SIGTERM to container {} pid {}", short(&c.id), c.pid));
            }
        }
    }

    /// SIGKILL what outlived its grace period; never blocks.
    fn enforce_grace(&mut self, st: &State) {
        let now = Instant::now();
        let mut killed = Vec::new();
        for r in self.children.iter_mut() {
            if !r.killed && r.term_deadline.is_some_and(|d| now >= d) {
                r.killed = true;
                cri::signal(r.child.id(), libc::SIGKILL);
                killed.push((r.id.clone(), r.child.id()));
            }
        }
        let due: Vec<String> = self.adopted_term.iter().filter(|(_, d)| now >= **d).map(|(i, _)| i.clone()).collect();
        for id in due {
            self.adopted_term.remove(&id);
            if let Some(c) = st.containers.iter().find(|c| c.id == id && c.is_running())
                && cri::pid_alive(c.pid, c.pid_start_ticks)
            {
                cri::signal(c.pid, libc::SIGKILL);
                killed.push((id, c.pid));
            }
        }
        for (id, pid) in killed {
            self.log(&format!("grace period over: sent SIGKILL to container {} pid {pid}", short(&id)));
        }
    }

    fn start_missing(&mut self, st: &mut State, desired: &BTreeMap<String, DesiredPod>) {
        let now_ms = cri::now_millis();
        for (uid, d) in desired {
            // like the kubelet's pod workers: a static pod waits until the old pod of the same full name is down
            let predecessor_up = st.containers.iter().any(|c| {
                c.is_running()
                    && c.pod_uid != *uid
                    && c.pod_name == d.pod_name
                    && c.namespace == d.namespace
                    && st.pods.get(&c.pod_uid).is_none_or(|p| p.removed)
            }) || self
                .children
                .iter()
                .any(|r| r.pod_uid != *uid && r.pod_name == d.pod_name && r.term_deadline.is_some());
            if predecessor_up {
                continue;
            }
            for spec in &d.manifest.spec.containers {
                let up = self.children.iter().any(|r| r.pod_uid == *uid && r.name == spec.name)
                    || st.containers.iter().any(|c| c.pod_uid == *uid && c.name == spec.name && c.is_running());
                if up {
                    continue;
                }
                let Some(pod) = st.pods.get_mut(uid) else {
                    continue;
                };
                // An image that cannot be pulled makes no container and counts no restart.
                if self.etcd_version(&spec.image).is_none() {
                    if self.reported_pull.insert(format!("{uid}/{}", spec.image)) {
                        self.log(&format!(
                            "pod {}: failed to pull image {:?}: ErrImagePull (not in this lab)",
                            d.pod_name, spec.image
                        ));
                    }
                    continue;
                }
                let pc = pod.containers.entry(spec.name.clone()).or_default();
                if now_ms < pc.next_start_after_unix_millis {
                    continue;
                }
                let attempt = if pc.started { pc.restarts + 1 } else { 0 };
                pc.started = true;
                pc.restarts = attempt;
                let pod = pod.clone();
                self.start(st, uid, &pod, d, spec, attempt);
            }
        }
    }

    /// The lab's "registry" holds the installed etcd versions: another image fails to pull, as on a
    /// real node (ErrImagePull).
    fn etcd_version(&self, image: &str) -> Option<String> {
        cri::version_from_image(image).filter(|v| self.args.etcd_dir.join(v).join("etcd").is_file())
    }

    fn mounts_for(&self, d: &DesiredPod, spec: &ContainerSpec) -> Vec<Mount> {
        let root = self.args.root.display().to_string();
        let root = root.trim_end_matches('/');
        let mut out = Vec::new();
        for vm in &spec.volume_mounts {
            let Some(hp) =
                d.manifest.spec.volumes.iter().find(|v| v.name == vm.name).and_then(|v| v.host_path.as_ref())
            else {
                continue;
            };
            let mut host = format!("{root}{}", hp.path);
            if !vm.sub_path.is_empty() {
                host = format!("{}/{}", host.trim_end_matches('/'), vm.sub_path);
            }
            // the kubelet creates *OrCreate host paths (mode 0755 / empty file)
            match hp.kind.as_str() {
                "DirectoryOrCreate" => {
                    let _ = fs::create_dir_all(&host);
                }
                "FileOrCreate" => {
                    if let Some(p) = Path::new(&host).parent() {
                        let _ = fs::create_dir_all(p);
                    }
                    let _ = OpenOptions::new().create(true).append(true).open(&host);
                }
                _ => {}
            }
            out.push(Mount { container_path: vm.mount_path.clone(), host_path: host });
        }
        out
    }

    fn start(&mut self, st: &mut State, uid: &str, pod: &Pod, d: &DesiredPod, spec: &ContainerSpec, attempt: u32) {
        let Some(version) = self.etcd_version(&spec.image) else { return };
        let bin_dir = self.args.etcd_dir.join(&version);
        let id = cri::new_id();
        let mounts = self.mounts_for(d, spec);
        // Outside its volumes a container writes to its own layer, gone with the container: a path
        // no mount covers lands in a fresh dir, never on the machine running the lab.
        let layer = self.args.root.join(LAYERS).join(&id);
        let _ = fs::create_dir_all(&layer);
        let with_layer: Vec<cri::Mount> = mounts
            .iter()
            .cloned()
            .chain([cri::Mount { container_path: "/".into(), host_path: layer.display().to_string() }])
            .collect();
        let argv: Vec<&String> = spec.command.iter().chain(&spec.args).collect();
        let exe = argv.first().and_then(|a| cri::etcd_tool_name(a)).map(|n| bin_dir.join(n));
        let mut command: Vec<String> = vec![
            exe.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| argv.first().map(|s| s.to_string()).unwrap_or_default()),
        ];
        command.extend(argv.iter().skip(1).map(|a| cri::map_container_path(a, &with_layer)));
        let work_dir = match &spec.working_dir {
            Some(w) => cri::map_container_path(w, &with_layer),
            None => self.args.root.display().to_string(),
        };
        let env: Vec<(String, String)> = spec.env.iter().map(|e| (e.name.clone(), e.value.clone())).collect();

        let log_dir =
            self.args.root.join("var/log/pods").join(format!("{}_{}_{uid}", d.namespace, d.pod_name)).join(&spec.name);
        let log_path = log_dir.join(format!("{attempt}.log"));
        let _ = fs::create_dir_all(&log_dir);
        let log_file = File::create(&log_path);

        let now = cri::now_nanos();
        let mut rec = Container {
            id,
            pod_sandbox_id: pod.sandbox_id.clone(),
            pod_uid: uid.to_string(),
            pod_name: d.pod_name.clone(),
            namespace: d.namespace.clone(),
            name: spec.name.clone(),
            attempt,
            state: cri::CONTAINER_CREATED.into(),
            created_at: now,
            image: spec.image.clone(),
            image_ref: cri::image_ref(&spec.image),
            version,
            bin_dir: bin_dir.display().to_string(),
            log_path: log_path.display().to_string(),
            command: command.clone(),
            env: env.clone(),
            work_dir: work_dir.clone(),
            mounts,
            ..Container::default()
        };

        let spawned = match (&exe, log_file) {
            (None, _) => Err(format!(
                "exec: \"{}\": executable file not found in $PATH",
                argv.first().map(|s| s.as_str()).unwrap_or("")
            )),
            (_, Err(e)) => Err(format!("creating log file {}: {e}", log_path.display())),
            (Some(exe), Ok(_)) => {
                spawn(exe, &command[1..], &env, &work_dir).map_err(|e| format!("{}: {e}", exe.display()))
            }
        };
        match spawned {
            Ok(mut child) => {
                let pid = child.id();
                rec.pid = pid;
                rec.pid_start_ticks = cri::proc_stat(pid).map(|s| s.1).unwrap_or(0);
                rec.state = cri::CONTAINER_RUNNING.into();
                rec.started_at = cri::now_nanos();
                if let Some(out) = child.stdout.take() {
                    copy_to_log(out, log_path.clone(), "stdout");
                }
                if let Some(err) = child.stderr.take() {
                    copy_to_log(err, log_path.clone(), "stderr");
                }
                self.log(&format!(
                    "started container {} ({}, attempt {attempt}, pod {} uid {uid}, sandbox {}) pid {pid}: {}",
                    short(&rec.id),
                    spec.name,
                    d.pod_name,
                    short(&pod.sandbox_id),
                    command.join(" ")
                ));
                self.children.push(Running {
                    child,
                    id: rec.id.clone(),
                    pod_uid: uid.to_string(),
                    pod_name: d.pod_name.clone(),
                    name: spec.name.clone(),
                    started_at: rec.started_at,
                    term_deadline: None,
                    killed: false,
                });
                st.containers.push(rec);
            }
            Err(msg) => {
                if let Ok(mut f) = OpenOptions::new().append(true).create(true).open(&log_path) {
                    let _ = f.write_all(&cri::cri_log_line(SystemTime::now(), "stderr", msg.as_bytes()));
                }
                self.log(&format!(
                    "container {} ({}, attempt {attempt}) failed to start: {msg}",
                    short(&rec.id),
                    spec.name
                ));
                let (id, started) = (rec.id.clone(), rec.created_at);
                st.containers.push(rec);
                self.on_exit(st, &id, uid, &spec.name, EXIT_START_FAILED, started);
            }
        }
    }

    fn gc(&mut self, st: &mut State) {
        let now_ms = cri::now_millis();
        let expired = |p: &Pod| p.removed && now_ms.saturating_sub(p.removed_at_unix_millis) >= GC_REMOVED_POD_MILLIS;
        let mut groups: HashMap<(String, String), Vec<(u64, String)>> = HashMap::new();
        for c in st.containers.iter().filter(|c| !c.is_running() && c.state != cri::CONTAINER_CREATED) {
            groups.entry((c.pod_uid.clone(), c.name.clone())).or_default().push((c.created_at, c.id.clone()));
        }
        let mut drop: HashSet<String> = HashSet::new();
        for ((uid, _), mut list) in groups {
            let pod_gone = st.pods.get(&uid).is_none_or(expired);
            list.sort_by_key(|e| std::cmp::Reverse(e.0));
            let keep = if pod_gone { 0 } else { GC_KEEP_EXITED };
            drop.extend(list.into_iter().skip(keep).map(|(_, id)| id));
        }
        if !drop.is_empty() {
            let layers = self.args.root.join(LAYERS);
            st.containers.retain(|c| {
                if drop.contains(&c.id) {
                    let _ = fs::remove_file(&c.log_path);
                    let _ = fs::remove_dir_all(layers.join(&c.id));
                    false
                } else {
                    true
                }
            });
        }
        let dead_pods: Vec<String> = st
            .pods
            .iter()
            .filter(|(uid, p)| expired(p) && !st.containers.iter().any(|c| &c.pod_uid == *uid))
            .map(|(u, _)| u.clone())
            .collect();
        for uid in dead_pods {
            if let Some(p) = st.pods.remove(&uid) {
                let dir = self.args.root.join("var/log/pods").join(format!("{}_{}_{uid}", p.namespace, p.pod_name));
                let _ = fs::remove_dir_all(dir);
                self.log(&format!("garbage-collected pod {} uid {uid}", p.pod_name));
            }
        }
    }
}

fn spawn(
    exe: &Path,
    args: &[String],
    env: &[(String, String)],
    work_dir: &str,
) -> std::io::Result<std::process::Child> {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env_clear()
        .env("PATH", CONTAINER_PATH)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(work_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let kubelet = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // the kubelet died before prctl took effect
            if libc::getppid() != kubelet {
                return Err(std::io::Error::other("kubelet exited"));
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// One thread per stream: each output line becomes a CRI log line.
fn copy_to_log(pipe: impl Read + Send + 'static, path: PathBuf, stream: &'static str) {
    std::thread::spawn(move || {
        let Ok(mut f) = OpenOptions::new().append(true).open(&path) else {
            return;
        };
        let mut r = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                    }
                    // O_APPEND and one write per line keep both streams' lines whole
                    let _ = f.write_all(&cri::cri_log_line(SystemTime::now(), stream, &buf));
                }
            }
        }
    });
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lab-kubelet: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let state_dir = cri::state_dir_for_root(&args.root);
    if let Err(e) = fs::create_dir_all(&state_dir) {
        eprintln!("lab-kubelet: creating {}: {e}", state_dir.display());
        return ExitCode::FAILURE;
    }
    // the socket only has to exist for crictl's endpoint check
    let sock = args.root.join(cri::SOCKET_IN_ROOT);
    if !sock.exists()
        && let Err(e) = File::create(&sock)
    {
        eprintln!("lab-kubelet: creating {}: {e}", sock.display());
        return ExitCode::FAILURE;
    }
    let lock_path = state_dir.join("kubelet.lock");
    let lock = match OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("lab-kubelet: opening {}: {e}", lock_path.display());
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = lock.try_lock() {
        eprintln!("lab-kubelet: another kubelet runs for {} ({}: {e})", args.root.display(), lock_path.display());
        return ExitCode::FAILURE;
    }
    // SAFETY: getppid has no preconditions.
    let ppid = unsafe { libc::getppid() };
    let mut k = Kubelet {
        manifests_dir: args.root.join("etc/kubernetes/manifests"),
        args,
        children: Vec::new(),
        adopted_term: HashMap::new(),
        reported_bad: HashSet::new(),
        reported_pull: HashSet::new(),
    };
    k.log(&format!(
        "started pid {} root {} etcd dir {} default version {}",
        std::process::id(),
        k.args.root.display(),
        k.args.etcd_dir.display(),
        k.args.default_version
    ));
    // restart backoff lives in the kubelet's memory: a new kubelet starts from scratch
    let reset = cri::with_state(&state_dir, |st| {
        for pc in st.pods.values_mut().flat_map(|p| p.containers.values_mut()) {
            pc.backoff_step = 0;
            pc.next_start_after_unix_millis = 0;
        }
    });
    if let Err(e) = reset {
        k.log(&format!("state {}: {e}", state_dir.display()));
    }
    loop {
        // SAFETY: as above.
        if k.args.exit_with_parent && unsafe { libc::getppid() } != ppid {
            // containers die with us through PDEATHSIG
            k.log("parent process gone, exiting");
            return ExitCode::SUCCESS;
        }
        let desired = k.scan_manifests();
        if let Err(e) = cri::with_state(&state_dir, |st| k.sync(st, &desired)) {
            k.log(&format!("state {}: {e}", state_dir.display()));
        }
        std::thread::sleep(LOOP);
    }
}
