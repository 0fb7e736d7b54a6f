//! The etcd static pod manifest: its flags, endpoints and host paths (through the hostPath mounts).

use anyhow::{Context, Result, anyhow, bail};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Annotation kubeadm puts on the etcd pod.
pub const CLIENT_URLS_ANNOTATION: &str = "kubeadm.kubernetes.io/etcd.advertise-client-urls";

#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    /// The etcd container's command followed by its args, as written.
    pub argv: Vec<String>,
    pub annotations: BTreeMap<String, String>,
    /// (mountPath in the container, hostPath on the host), from the container's volumeMounts.
    pub mounts: Vec<(String, String)>,
    /// The whole pod, kept for edits.
    doc: Value,
    /// The file's text and the pod it was read as: edits rewrite only the lines they change.
    text: String,
    original: Value,
    /// Index of the etcd container in spec.containers.
    container: usize,
}

/// etcd's data dir when a manifest names none (kubeadm's).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/etcd";

/// kubeadm's data dir on the host under `rootfs`: where a node without a manifest keeps its data.
pub fn default_data_dir(rootfs: &Path) -> PathBuf {
    crate::cli::host_path(rootfs, DEFAULT_DATA_DIR)
}

/// Absolute, at least one name below /, no `..` (`.` and doubled slashes are harmless).
fn plainly_below_root(p: &Path) -> bool {
    use std::path::Component;
    p.is_absolute()
        && p.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && p.components().any(|c| matches!(c, Component::Normal(_)))
}

fn annotations_of(doc: &Value) -> BTreeMap<String, String> {
    let entries = doc["metadata"]["annotations"].as_mapping();
    entries
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_sequence().map(|s| s.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).with_context(|| format!("manifest {}", path.display()))?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Manifest> {
        let shown = path.display();
        let doc: Value = serde_yaml::from_str(text).map_err(|e| match e.location() {
            Some(l) => anyhow!("manifest {shown}: invalid YAML at line {} column {}: {e}", l.line(), l.column()),
            None => anyhow!("manifest {shown}: invalid YAML: {e}"),
        })?;
        let containers = doc["spec"]["containers"].as_sequence().cloned().unwrap_or_default();
        let index = containers
            .iter()
            .position(|c| c["name"].as_str() == Some("etcd"))
            .or_else(|| containers.iter().position(|c| c["command"][0].as_str() == Some("etcd")))
            .ok_or_else(|| anyhow!("manifest {shown}: no etcd container in spec.containers"))?;
        let container = &containers[index];
        let mut argv = str_list(&container["command"]);
        argv.extend(str_list(&container["args"]));
        if argv.is_empty() {
            bail!("manifest {shown}: the etcd container has no command");
        }
        let annotations = annotations_of(&doc);
        let volumes = doc["spec"]["volumes"].as_sequence().cloned().unwrap_or_default();
        let mounts = container["volumeMounts"]
            .as_sequence()
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| {
                        let name = m["name"].as_str()?;
                        let vol = volumes.iter().find(|v| v["name"].as_str() == Some(name))?;
                        // `/var/lib/etcd/` is `/var/lib/etcd`; a subPath is a dir below the volume's.
                        let at = m["mountPath"].as_str()?;
                        let at = if at.len() > 1 { at.trim_end_matches('/') } else { at };
                        let mut host = vol["hostPath"]["path"].as_str()?.to_string();
                        if let Some(sub) = m["subPath"].as_str().map(|s| s.trim_matches('/')).filter(|s| !s.is_empty())
                        {
                            host = format!("{}/{sub}", host.trim_end_matches('/'));
                        }
                        Some((at.to_string(), host))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (text, original) = (text.to_string(), doc.clone());
        Ok(Manifest { path: path.to_path_buf(), argv, annotations, mounts, doc, text, original, container: index })
    }

    fn command_mut(&mut self) -> Result<&mut Vec<Value>> {
        let path = self.path.display().to_string();
        let cmd = self.doc["spec"]["containers"][self.container]
            .get_mut("command")
            .and_then(Value::as_sequence_mut)
            .ok_or_else(|| anyhow!("manifest {path}: the etcd container has no command list"))?;
        // Edits go after the program: without one first, a flag set would become the program.
        if !cmd.first().and_then(Value::as_str).is_some_and(|p| !p.is_empty() && !p.starts_with('-')) {
            return Err(anyhow!("manifest {path}: the etcd container's command does not start with the program"));
        }
        Ok(cmd)
    }

    fn refresh_argv(&mut self) {
        let c = &self.doc["spec"]["containers"][self.container];
        let mut argv = str_list(&c["command"]);
        argv.extend(str_list(&c["args"]));
        self.argv = argv;
    }

    /// Removes every occurrence of `--name` (`--name=v`, bare, or `--name v`) from the command and
    /// from `args` (etcd reads both); true if one was there.
    pub fn remove_flag(&mut self, name: &str) -> Result<bool> {
        // Fails early, as before, when there is no command list to edit.
        self.command_mut()?;
        let mut changed = false;
        for (list, first) in [("command", 1), ("args", 0)] {
            // get_mut, not indexing: indexing a mapping for writing inserts the key (`args: null`,
            // which a kubelet refuses to read).
            let container = &mut self.doc["spec"]["containers"][self.container];
            let Some(seq) = container.get_mut(list).and_then(Value::as_sequence_mut) else { continue };
            changed |= remove_from(seq, first, name);
        }
        self.refresh_argv();
        Ok(changed)
    }

    /// Sets `--name=value`: once, where it was, else in kubeadm's alphabetical order.
    pub fn set_flag(&mut self, name: &str, value: &str) -> Result<()> {
        // Where it was in the command list (one in `args` moves into the command).
        let first = self.command_mut()?.iter().skip(1).position(|a| {
            let b = a.as_str().unwrap_or("").trim_start_matches('-');
            b == name || b.split_once('=').is_some_and(|(k, _)| k == name)
        });
        self.remove_flag(name)?;
        let flag = Value::String(format!("--{name}={value}"));
        let cmd = self.command_mut()?;
        let at = match first {
            Some(p) => (p + 1).min(cmd.len()),
            // Before a flag, never between a `--flag value` pair: Go's flag parser would give the
            // new flag to that one as its value.
            None => (1..cmd.len())
                .find(|&i| {
                    cmd[i]
                        .as_str()
                        .is_some_and(|a| a.starts_with('-') && a.trim_start_matches('-').split('=').next() > Some(name))
                })
                .unwrap_or(cmd.len()),
        };
        cmd.insert(at, flag);
        self.refresh_argv();
        Ok(())
    }

    /// Sets a pod annotation (kubeadm keeps the client URLs in one).
    pub fn set_annotation(&mut self, key: &str, value: &str) -> Result<()> {
        let meta = &mut self.doc["metadata"];
        if meta.get("annotations").and_then(Value::as_mapping).is_none() {
            meta.as_mapping_mut()
                .ok_or_else(|| anyhow!("manifest {}: no metadata", self.path.display()))?
                .insert("annotations".into(), Value::Mapping(Default::default()));
        }
        meta["annotations"].as_mapping_mut().expect("just made").insert(key.into(), value.into());
        self.annotations.insert(key.into(), value.into());
        Ok(())
    }

    /// The manifest's text: as read, with only the edited lines changed when they can be found;
    /// else the pod written whole (comments and layout lost, said on stderr).
    pub fn to_yaml(&self) -> Result<String> {
        if self.doc == self.original {
            return Ok(self.text.clone());
        }
        if let Some(text) = self.edited_text() {
            return Ok(text);
        }
        // Written whole, a plain value the kubelet's go-yaml v2 reads otherwise than YAML 1.2 (this
        // parser) would change: `0644` would come back as the string '0644', `yes` as 'yes'.
        if let Some((line, value)) = crate::yaml_edit::yaml11_hazard(&self.text) {
            bail!(
                "manifest {}: its lines to edit were not found, and written whole its line {line} ({value}) would \
                 read otherwise to the kubelet; quote that value, or make the edit by hand",
                self.path.display()
            );
        }
        log::warn!("manifest {}: written whole, its comments and layout not kept", self.path.display());
        let text = crate::yaml_edit::quote_for_yaml11(&serde_yaml::to_string(&self.doc)?);
        // The quoting works line by line: a key or value over several lines could be changed.
        match serde_yaml::from_str::<Value>(&text) {
            Ok(back) if back == self.doc => Ok(text),
            _ => bail!(
                "manifest {}: cannot be written back as it reads (a key or value over several lines); make the \
                 edit by hand",
                self.path.display()
            ),
        }
    }

    /// The text as read with the edits of the command, args and annotations made line by line;
    /// None unless it reads back as exactly the edited pod.
    fn edited_text(&self) -> Option<String> {
        let mut text = self.text.clone();
        let (before, after) =
            (&self.original["spec"]["containers"][self.container], &self.doc["spec"]["containers"][self.container]);
        for list in ["command", "args"] {
            let (old, new) = (str_list(&before[list]), str_list(&after[list]));
            if old != new {
                text = crate::yaml_edit::replace_seq(&text, list, &old, &new)?;
            }
        }
        let was = annotations_of(&self.original);
        for (key, value) in &self.annotations {
            if was.get(key) != Some(value) {
                let old = was.get(key).map(String::as_str);
                text = crate::yaml_edit::set_entry(&text, "annotations", key, old, value)
                    .or_else(|| crate::yaml_edit::add_mapping(&text, "metadata", "annotations", key, value))?;
            }
        }
        let back: Value = serde_yaml::from_str(&text).ok()?;
        (back == self.doc).then_some(text)
    }

    /// Writes the (edited) manifest over `self.path` atomically (see [`write_atomic`]).
    pub fn save(&self) -> Result<()> {
        write_atomic(&self.path, self.to_yaml()?.as_bytes())
    }

    /// Every `--name[=value]` of the command line in order; `--name value` is taken as a pair too,
    /// and a bare `--name` means "true", as etcd's flag parser reads them.
    pub fn flag_list(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut args = self.argv.iter().skip(1).peekable();
        while let Some(arg) = args.next() {
            let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                continue;
            };
            match body.split_once('=') {
                Some((k, v)) => out.push((k.to_string(), v.to_string())),
                None => match args.peek() {
                    Some(next) if !next.starts_with('-') => out.push((body.to_string(), args.next().unwrap().clone())),
                    _ => out.push((body.to_string(), "true".to_string())),
                },
            }
        }
        out
    }

    /// Flags as a map; the last occurrence wins, as in etcd.
    pub fn flags(&self) -> BTreeMap<String, String> {
        self.flag_list().into_iter().collect()
    }

    pub fn flag(&self, name: &str) -> Option<String> {
        self.flag_list().into_iter().rev().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Settings of etcd's that the tools cannot see or change in the command: `--config-file`
    /// (etcd then ignores every other flag) and `ETCD_<FLAG>` variables in the container's env for
    /// what the tools read or edit (etcd takes one when its flag is not in the command).
    pub fn hidden_settings(&self) -> Vec<String> {
        const READ_OR_EDITED: [&str; 12] = [
            "name",
            "data-dir",
            "wal-dir",
            "force-new-cluster",
            "initial-cluster",
            "initial-cluster-state",
            "initial-cluster-token",
            "initial-advertise-peer-urls",
            "advertise-client-urls",
            "listen-client-urls",
            "listen-peer-urls",
            "config-file",
        ];
        let flags = self.flags();
        let mut out: Vec<String> = flags.keys().filter(|k| *k == "config-file").map(|k| format!("--{k}")).collect();
        let env = self.doc["spec"]["containers"][self.container]["env"].as_sequence().cloned().unwrap_or_default();
        for var in env.iter().filter_map(|e| e["name"].as_str()) {
            let Some(flag) = var.strip_prefix("ETCD_").map(|f| f.to_ascii_lowercase().replace('_', "-")) else {
                continue;
            };
            if READ_OR_EDITED.contains(&flag.as_str()) && !flags.contains_key(&flag) {
                out.push(format!("{var} (env)"));
            }
        }
        // A wrapper (`sh -c "exec etcd ..."`) hides etcd's flags in one string the tools cannot read.
        let program = self.argv.first().map(String::as_str).unwrap_or_default();
        if program.rsplit('/').next() != Some("etcd") {
            out.push(format!("the command runs {program:?}, not etcd itself"));
        }
        // What the kubelet fills in at start: the tools would read the words as written.
        for arg in self.argv.iter().filter(|a| a.contains("$(")) {
            out.push(format!("{arg} (the kubelet expands $(VAR))"));
        }
        let mounts = self.doc["spec"]["containers"][self.container]["volumeMounts"].as_sequence();
        for m in mounts.into_iter().flatten().filter(|m| m.get("subPathExpr").is_some()) {
            out.push(format!("the subPathExpr of the mount at {}", m["mountPath"].as_str().unwrap_or("?")));
        }
        out
    }

    /// What to say about [`Manifest::hidden_settings`], `None` when there are none.
    pub fn hidden_problem(&self) -> Option<String> {
        let hidden = self.hidden_settings();
        (!hidden.is_empty()).then(|| {
            format!(
                "{}: {}: etcd takes settings from there that the tools cannot see (they read and edit only its \
                 command flags, written out, and its plain mounts); move them into the command, written out",
                self.path.display(),
                hidden.join(", ")
            )
        })
    }

    /// The etcd container's image, as written.
    pub fn image(&self) -> &str {
        self.doc["spec"]["containers"][self.container]["image"].as_str().unwrap_or("")
    }

    /// `--force-new-cluster` in the command and not false as Go reads a bool (`=0`, `=f`, `=False`
    /// are false too); a value Go cannot read counts as set, the dangerous side.
    pub fn force_new_cluster(&self) -> bool {
        self.flag("force-new-cluster").is_some_and(|v| go_true(&v))
    }

    /// `ETCD_FORCE_NEW_CLUSTER` set true in the container's env, without the flag in the command
    /// (etcd takes it then). Only reported: the procedures refuse any such hidden setting.
    pub fn force_new_cluster_env(&self) -> bool {
        let env = self.doc["spec"]["containers"][self.container]["env"].as_sequence().cloned().unwrap_or_default();
        self.flag("force-new-cluster").is_none()
            && env.iter().any(|e| {
                e["name"].as_str() == Some("ETCD_FORCE_NEW_CLUSTER") && e["value"].as_str().is_some_and(go_true)
            })
    }

    /// The client URLs other hosts use: `--advertise-client-urls`, else kubeadm's annotation.
    pub fn client_urls(&self) -> Vec<String> {
        let list = self.flag("advertise-client-urls").or_else(|| self.annotations.get(CLIENT_URLS_ANNOTATION).cloned());
        list.map(|l| crate::cli::split_list(&l)).unwrap_or_default()
    }

    /// `--initial-cluster` as (name, peer URL) pairs.
    pub fn initial_cluster(&self) -> Vec<(String, String)> {
        self.flag("initial-cluster")
            .map(|l| {
                crate::cli::split_list(&l)
                    .into_iter()
                    .filter_map(|e| e.split_once('=').map(|(n, u)| (n.to_string(), u.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A path as the container sees it, as a path on the host: through the hostPath mount that
    /// holds it (the longest mountPath wins), under `rootfs`. Unmounted paths are taken as they are.
    pub fn host_path(&self, rootfs: &Path, container_path: &str) -> PathBuf {
        crate::cli::host_path(rootfs, &self.on_host(container_path))
    }

    /// [`Manifest::data_dir`], with a `--data-dir` given beside the manifest checked against it:
    /// another dir would be acted on while etcd goes on using its own (usage error, exit 2).
    pub fn data_dir_matching(&self, flag: Option<&str>, rootfs: &Path) -> Result<PathBuf> {
        let dir = self.data_dir(rootfs)?;
        if let Some(d) = flag
            && Path::new(d) != dir
            && crate::cli::host_path(rootfs, d) != dir
        {
            return Err(crate::exit::coded(
                crate::exit::USAGE,
                format!("--data-dir {d}: the manifest runs etcd with --data-dir {}; drop the flag", dir.display()),
            ));
        }
        Ok(dir)
    }

    /// The data dir etcd is given (`--data-dir`, kubeadm's /var/lib/etcd when absent), on the
    /// host. The tools move it aside and put others in its place, so a path that is not plainly
    /// below / (relative, `..`, / itself), in the container or through its mount, is refused.
    pub fn data_dir(&self, rootfs: &Path) -> Result<PathBuf> {
        // The tools read and move the WAL as part of the data dir.
        if let Some(w) = self.flag("wal-dir").filter(|w| !w.is_empty()) {
            bail!(
                "{}: --wal-dir {w}: a WAL outside the data dir is not supported; refusing to act",
                self.path.display()
            );
        }
        let dir = self.flag("data-dir").unwrap_or_else(|| DEFAULT_DATA_DIR.into());
        let on_host = self.on_host(&dir);
        for p in [&dir, &on_host] {
            if !plainly_below_root(Path::new(p)) {
                bail!(
                    "{}: --data-dir {dir}{}: not a plain absolute path below /; refusing to act on it",
                    self.path.display(),
                    if *p == dir { String::new() } else { format!(" (on the host {on_host})") }
                );
            }
        }
        Ok(crate::cli::host_path(rootfs, &on_host))
    }

    /// A path as the container sees it, as the host does, without the rootfs.
    fn on_host(&self, container_path: &str) -> String {
        let best = self
            .mounts
            .iter()
            .filter(|(mount, _)| {
                container_path == mount
                    || container_path.strip_prefix(mount.as_str()).is_some_and(|rest| rest.starts_with('/'))
            })
            .max_by_key(|(mount, _)| mount.len());
        match best {
            Some((mount, host)) => {
                let p = format!("{}{}", host.trim_end_matches('/'), &container_path[mount.len()..]);
                if p.is_empty() { "/".into() } else { p }
            }
            None => container_path.to_string(),
        }
    }

    /// The certificate files the manifest names, on the host, with the flags naming each.
    pub fn certificate_files(&self, rootfs: &Path) -> Vec<(PathBuf, Vec<String>)> {
        let mut out: Vec<(PathBuf, Vec<String>)> = Vec::new();
        for flag in ["cert-file", "peer-cert-file", "trusted-ca-file", "peer-trusted-ca-file"] {
            if let Some(p) = self.flag(flag).filter(|p| !p.is_empty()) {
                let host = self.host_path(rootfs, &p);
                match out.iter_mut().find(|(h, _)| *h == host) {
                    Some((_, flags)) => flags.push(format!("--{flag}")),
                    None => out.push((host, vec![format!("--{flag}")])),
                }
            }
        }
        out
    }
}

/// What a kubeadm etcd manifest is made of.
pub struct KubeadmEtcd<'a> {
    pub name: &'a str,
    /// The node's address as it appears in URLs (IPv6 in brackets).
    pub host: &'a str,
    pub image: &'a str,
    pub initial_cluster: &'a str,
    /// `--initial-cluster-state=existing`, as `kubeadm join` writes it.
    pub existing: bool,
}

/// The etcd static pod manifest `kubeadm` 1.31–1.33 writes for a stacked control plane.
/// etcd 3.6 images (kubeadm 1.34) take the `--experimental-*` flags under their new names, and
/// kubeadm then probes through a named container port.
fn etcd_3_6_or_later(image: &str) -> bool {
    etcd_release(image) >= (3, 6, 0)
}

/// (major, minor, patch) of an etcd image's tag (a digest after it aside); zeros for what it
/// does not say.
pub fn etcd_release(image: &str) -> (u32, u32, u32) {
    let image = image.split('@').next().unwrap_or(image);
    let tag = image.rsplit_once(':').map_or("", |(_, t)| t).trim_start_matches('v');
    let mut parts = tag.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let mut next = || parts.next().unwrap_or(0);
    (next(), next(), next())
}

pub fn render_kubeadm(k: &KubeadmEtcd) -> String {
    let h = k.host;
    let v36 = etcd_3_6_or_later(k.image);
    // kubeadm takes the loopback of the advertise address's family: an IPv6-only node has no 127.0.0.1.
    let (lo_url, lo_probe) = match h.starts_with('[') {
        true => ("[::1]", "'::1'"),
        false => ("127.0.0.1", "127.0.0.1"),
    };
    let mut flags = vec![
        format!("--advertise-client-urls=https://{h}:2379"),
        "--cert-file=/etc/kubernetes/pki/etcd/server.crt".into(),
        "--client-cert-auth=true".into(),
        "--data-dir=/var/lib/etcd".into(),
    ];
    match v36 {
        true => flags.push("--feature-gates=InitialCorruptCheck=true".into()),
        false => flags.extend([
            "--experimental-initial-corrupt-check=true".into(),
            "--experimental-watch-progress-notify-interval=5s".into(),
        ]),
    }
    flags.extend([
        format!("--initial-advertise-peer-urls=https://{h}:2380"),
        format!("--initial-cluster={}", k.initial_cluster),
    ]);
    if k.existing {
        flags.push("--initial-cluster-state=existing".into());
    }
    flags.extend([
        "--key-file=/etc/kubernetes/pki/etcd/server.key".into(),
        format!("--listen-client-urls=https://{lo_url}:2379,https://{h}:2379"),
        format!("--listen-metrics-urls=http://{lo_url}:2381"),
        format!("--listen-peer-urls=https://{h}:2380"),
        format!("--name={}", k.name),
        "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt".into(),
        "--peer-client-cert-auth=true".into(),
        "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key".into(),
        "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt".into(),
        "--snapshot-count=10000".into(),
        "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt".into(),
    ]);
    if v36 {
        flags.push("--watch-progress-notify-interval=5s".into());
    }
    let command: String = flags.iter().map(|f| format!("    - {f}\n")).collect();
    let port = if v36 { "probe-port" } else { "2381" };
    // /livez and /readyz came with etcd 3.5.11: before, a 404 (the kubelet would kill etcd after its
    // startup probe's 4 minutes). kubeadm probed /health then: liveness serializable and blind to
    // NOSPACE (neither an alarm nor a lost quorum should get etcd killed; from etcd 3.5.3, older
    // ones ignore the parameters, as kubeadm's plain /health did), startup linearizable.
    let health_only = etcd_release(k.image) < (3, 5, 11);
    let probe = |path: &str, extra: &str| {
        format!(
            "      failureThreshold: {extra}\n      httpGet:\n        host: {lo_probe}\n        path: {path}\n        port: {port}\n        scheme: HTTP\n"
        )
    };
    let ports = match v36 {
        true => "    ports:\n    - containerPort: 2381\n      name: probe-port\n      protocol: TCP\n",
        false => "",
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  annotations:\n    {CLIENT_URLS_ANNOTATION}: https://{h}:2379\n  labels:\n    component: etcd\n    tier: control-plane\n  name: etcd\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n    - etcd\n{command}    image: {image}\n    imagePullPolicy: IfNotPresent\n    livenessProbe:\n{live}      initialDelaySeconds: 10\n      periodSeconds: 10\n      timeoutSeconds: 15\n    name: etcd\n{ports}    readinessProbe:\n{ready}      periodSeconds: 1\n      timeoutSeconds: 15\n    resources:\n      requests:\n        cpu: 100m\n        memory: 100Mi\n    startupProbe:\n{startup}      initialDelaySeconds: 10\n      periodSeconds: 10\n      timeoutSeconds: 15\n    volumeMounts:\n    - mountPath: /var/lib/etcd\n      name: etcd-data\n    - mountPath: /etc/kubernetes/pki/etcd\n      name: etcd-certs\n  hostNetwork: true\n  priority: 2000001000\n  priorityClassName: system-node-critical\n  securityContext:\n    seccompProfile:\n      type: RuntimeDefault\n  volumes:\n  - hostPath:\n      path: /etc/kubernetes/pki/etcd\n      type: DirectoryOrCreate\n    name: etcd-certs\n  - hostPath:\n      path: /var/lib/etcd\n      type: DirectoryOrCreate\n    name: etcd-data\nstatus: {{}}\n",
        image = k.image,
        live = probe(if health_only { "/health?exclude=NOSPACE&serializable=true" } else { "/livez" }, "8"),
        ready = probe(if health_only { "/health?serializable=false" } else { "/readyz" }, "3"),
        startup = probe(if health_only { "/health?serializable=false" } else { "/readyz" }, "24"),
    )
}

/// The static pod a manifest file defines, as the kubelet keys it: (namespace, name).
fn pod_key(text: &str) -> Option<(String, String)> {
    let doc: Value = serde_yaml::from_str(text).ok()?;
    let name = doc["metadata"]["name"].as_str()?.to_string();
    let namespace = doc["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
    Some((namespace, name))
}

/// Other files in the manifests dir that define the same static pod as `path` (kube-system/etcd
/// when `path` is missing or unreadable): the kubelet reads every file there but dot files, keys
/// static pods by namespace and name, and so runs one file or the other. A copy left as
/// `etcd.yaml.bak` can start etcd again after a clean, or undo a swap's manifest.
pub fn rival_manifests(path: &Path) -> Vec<PathBuf> {
    let ours = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| pod_key(&t))
        .unwrap_or_else(|| ("kube-system".to_string(), "etcd".to_string()));
    let Ok(entries) = std::fs::read_dir(crate::durable::parent_dir(path)) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.')) && p.file_name() != path.file_name()
        })
        // The kubelet's own size limit for a manifest: 10 MiB.
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() <= 10 << 20))
        .filter(|p| std::fs::read_to_string(p).ok().and_then(|t| pod_key(&t)).as_ref() == Some(&ours))
        .collect();
    out.sort();
    out
}

/// What to say about rival manifests (see [`rival_manifests`]), `None` when there are none.
pub fn rivals_problem(path: &Path) -> Option<String> {
    let rivals = rival_manifests(path);
    (!rivals.is_empty()).then(|| {
        let names: Vec<String> = rivals.iter().map(|p| p.display().to_string()).collect();
        format!(
            "{} also define{} the etcd static pod: the kubelet runs one file or the other; move {} out of {}",
            names.join(", "),
            if names.len() == 1 { "s" } else { "" },
            if names.len() == 1 { "it" } else { "them" },
            crate::durable::parent_dir(path).display()
        )
    })
}

/// The plan check of every procedure that edits or moves the manifest: no other file in the
/// manifests dir runs the same pod.
pub fn rivals_check(plan: &mut crate::report::Plan, path: &Path) {
    let problem = rivals_problem(path);
    let ok = problem.is_none();
    plan.check(
        "no other manifest defines the etcd pod",
        ok,
        problem.unwrap_or_else(|| format!("only {} in its dir", path.display())),
    );
}

/// The plan check of every procedure that reads or edits the manifest's flags: none of what it
/// relies on is set where it cannot see it (see [`Manifest::hidden_settings`]).
/// `overridden` (why going on is allowed) makes a failure pass.
pub fn hidden_check(plan: &mut crate::report::Plan, manifest: &Manifest, overridden: Option<&str>) {
    let problem = manifest.hidden_problem();
    let ok = problem.is_none() || overridden.is_some();
    let why = overridden.filter(|_| problem.is_some()).map(|o| format!(" ({o})")).unwrap_or_default();
    plan.check(
        "etcd's settings are in its command",
        ok,
        problem.map_or_else(|| "no --config-file, no ETCD_* variable for a flag the tools use".into(), |p| p + &why),
    );
}

/// The image repository kubeadm uses on this node, read off another control-plane manifest
/// (`kube-apiserver.yaml`): `<repo>/kube-apiserver:v1.31.0` gives `<repo>`.
pub fn image_repository(manifests_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifests_dir.join("kube-apiserver.yaml")).ok()?;
    let doc: Value = serde_yaml::from_str(&text).ok()?;
    let image = doc["spec"]["containers"].as_sequence()?.iter().find_map(|c| c["image"].as_str())?;
    let (repo, _) = image.rsplit_once('/')?;
    Some(repo.to_string())
}

/// Replaces `path` atomically: `.<name>.tmp` in the same dir (a dot file, which the kubelet ignores),
/// fsync, rename over, fsync the dir. The mode is 0600 like kubeadm's manifests. No reader ever
/// sees a half-written file, and no stray file is left in a manifests dir on failure.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_mode(path, data, 0o600)
}

/// Not one of the spellings Go's `strconv.ParseBool` reads as false.
fn go_true(v: &str) -> bool {
    !matches!(v, "0" | "f" | "F" | "false" | "FALSE" | "False")
}

/// The temp file [`write_atomic`] writes `path` through: `.<name>.tmp` beside it.
pub fn temp_path(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| anyhow!("{}: not a file path", path.display()))?;
    Ok(path.with_file_name(format!(".{}.tmp", name.to_string_lossy())))
}

/// Removes the temp file a killed [`write_atomic`] of `path` left (the kubelet skips it, but a
/// manifests dir should hold only manifests). Only under the node lock: a running write owns it.
pub fn remove_stale_temp(path: &Path) {
    let Ok(tmp) = temp_path(path) else { return };
    match std::fs::remove_file(&tmp) {
        Ok(()) => log::info!("{}: removed, left by an interrupted write", tmp.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("{}: left by an interrupted write, cannot remove: {e}", tmp.display()),
    }
}

/// [`write_atomic`] with another mode (e.g. 0644 for a file other users' daemons read).
pub fn write_atomic_mode(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    let tmp = temp_path(path)?;
    let result = (|| -> std::io::Result<()> {
        let mut f = crate::durable::open_exact(
            std::fs::OpenOptions::new().write(true).create(true).truncate(true),
            &tmp,
            mode,
        )?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        bail!("{}: cannot write: {e}", path.display());
    }
    // The rename is the point of no return: the new content is what readers see now, so a failed
    // dir fsync is reported, not taken for a failed write (a caller would "undo" what landed).
    if let Err(e) = crate::durable::sync_parent(path) {
        log::warn!("{}: written, but the dir fsync failed: {e}", path.display());
    }
    Ok(())
}

/// Removes `--name`, `--name=v` and `--name v` from `seq[first..]`; true if any was there.
fn remove_from(seq: &mut Vec<Value>, first: usize, name: &str) -> bool {
    let before = seq.len();
    let mut i = first;
    while i < seq.len() {
        let arg = seq[i].as_str().unwrap_or("");
        let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'));
        match body {
            Some(b) if b == name => {
                let takes_next = seq.get(i + 1).and_then(Value::as_str).is_some_and(|n| !n.starts_with('-'));
                seq.remove(i);
                if takes_next {
                    seq.remove(i);
                }
            }
            Some(b) if b.split_once('=').is_some_and(|(k, _)| k == name) => {
                seq.remove(i);
            }
            _ => i += 1,
        }
    }
    seq.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;

    // The kubeadm 1.31 and 1.34 layouts (shared/reference/), trimmed to what is read here.
    const V131: &str = include_str!("../testdata/etcd.yaml.kubeadm-1.31");
    const V134: &str = include_str!("../testdata/etcd.yaml.kubeadm-1.34");

    #[test]
    fn settings_outside_the_command_are_found() {
        let path = Path::new("/etc/kubernetes/manifests/etcd.yaml");
        assert_eq!(Manifest::parse(path, V131).unwrap().hidden_settings(), Vec::<String>::new());
        let env = "    env:\n    - name: ETCD_FORCE_NEW_CLUSTER\n      value: \"true\"\n    - name: ETCD_DATA_DIR\n      \
                   value: /x\n    - name: ETCD_QUOTA_BACKEND_BYTES\n      value: \"8589934592\"\n    - name: GOMAXPROCS\n      \
                   value: \"2\"\n    image:";
        let text = V131.replacen("    image:", env, 1);
        let m = Manifest::parse(path, &text).unwrap();
        // --data-dir is in the command: its flag wins over the variable.
        assert_eq!(m.hidden_settings(), ["ETCD_FORCE_NEW_CLUSTER (env)"]);
        let mut m = Manifest::parse(path, V131).unwrap();
        m.set_flag("config-file", "/etc/etcd.conf").unwrap();
        assert_eq!(m.hidden_settings(), ["--config-file"]);
        assert!(m.hidden_problem().unwrap().contains("--config-file: etcd takes settings"), "{:?}", m.hidden_problem());
    }

    #[test]
    fn rival_manifests_are_other_files_of_the_same_pod() {
        let dir = std::env::temp_dir().join(format!("manifest-rivals-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ours = dir.join("etcd.yaml");
        assert_eq!(rival_manifests(&ours), Vec::<PathBuf>::new(), "an empty dir");
        std::fs::write(&ours, V131).unwrap();
        std::fs::write(dir.join("etcd.yaml.bak"), V131).unwrap();
        // Reformatted, another suffix: still the same pod.
        std::fs::write(dir.join("etcd-old"), "metadata: {namespace: kube-system, name: etcd}\n").unwrap();
        std::fs::write(dir.join(".etcd.yaml.swp"), V131).unwrap();
        std::fs::write(dir.join("etcd-default.yaml"), "metadata: {name: etcd}\n").unwrap();
        std::fs::write(dir.join("kube-apiserver.yaml"), V131.replace("name: etcd\n", "name: kube-apiserver\n"))
            .unwrap();
        std::fs::write(dir.join("notes.txt"), "not: [yaml").unwrap();
        let rivals = rival_manifests(&ours);
        assert_eq!(rivals, [dir.join("etcd-old"), dir.join("etcd.yaml.bak")]);
        let problem = rivals_problem(&ours).unwrap();
        assert!(problem.contains("etcd.yaml.bak") && problem.contains("move them out of"), "{problem}");
        // The manifest moved away (a clean): the copies still run kube-system/etcd.
        std::fs::remove_file(&ours).unwrap();
        assert_eq!(rival_manifests(&ours).len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// An edited manifest keeps YAML 1.1's booleans-to-be as strings (the kubelet reads 1.1), and
    /// the text still parses to the same document; block scalars are untouched. Edited line by
    /// line, the other lines stay as written; written whole (a flow list cannot be edited by
    /// line), the words are quoted.
    #[test]
    fn yaml11_words_stay_strings() {
        let text = V131.replacen(
            "  containers:\n",
            "  containers:\n  - name: sidecar\n    image: x\n    args: [\"on\", \"--x=yes\"]\n    \
             env:\n    - name: FEATURE\n      value: \"on\"\n    - name: NOTE\n      value: |\n        \
             enabled: yes\n        off\n",
            1,
        );
        let flow = text.replacen("  - command:\n    - etcd\n", "  - command: [etcd]\n    args:\n", 1);
        for (text, whole) in [(text, false), (flow, true)] {
            let mut m = Manifest::parse(Path::new("etcd.yaml"), &text).unwrap();
            m.set_annotation("example/flag", "yes").unwrap();
            m.set_flag("snapshot-count", "10001").unwrap();
            let out = m.to_yaml().unwrap();
            assert!(out.contains("example/flag: 'yes'\n") && out.contains("- --snapshot-count=10001\n"), "{out}");
            if whole {
                assert!(out.contains("value: 'on'\n") && out.contains("- 'on'\n") && out.contains("- --x=yes\n"));
            } else {
                let gone = text.lines().filter(|l| !out.lines().any(|o| o == *l)).map(|l| format!("-{l}"));
                let new = out.lines().filter(|o| !text.lines().any(|l| l == *o)).map(|o| format!("+{o}"));
                let changed: Vec<String> = gone.chain(new).collect();
                let want =
                    ["-    - --snapshot-count=10000", "+    example/flag: 'yes'", "+    - --snapshot-count=10001"];
                assert_eq!(changed, want, "only the edited lines change");
            }
            assert!(out.contains("  enabled: yes\n") && out.contains("  off\n"), "block scalar changed: {out}");
            let again: Value = serde_yaml::from_str(&out).unwrap();
            assert_eq!(again, m.doc);
        }
    }

    /// A hand-edited manifest keeps its comments and values through recover's and join's edits,
    /// and a flag set and taken out again leaves it byte for byte (`0644` is octal to the kubelet:
    /// written whole it came back as the string '0644', which the kubelet refuses).
    #[test]
    fn hand_edits_survive_the_edits() {
        let text = V131
            .replacen("    - --name=cp1\n", "    # cp1 is the old name, see the runbook\n    - --name=cp1\n", 1)
            .replacen(
                "  volumes:\n",
                "  volumes:\n  - name: extra # for the audit\n    secret:\n      defaultMode: 0644\n",
                1,
            );
        let mut m = Manifest::parse(Path::new("etcd.yaml"), &text).unwrap();
        m.set_flag("force-new-cluster", "true").unwrap();
        let forced = m.to_yaml().unwrap();
        for kept in
            ["# cp1 is the old name, see the runbook\n    - --name=cp1\n", "# for the audit\n", "defaultMode: 0644\n"]
        {
            assert!(forced.contains(kept), "{kept} lost: {forced}");
        }
        assert!(Manifest::parse(Path::new("etcd.yaml"), &forced).unwrap().force_new_cluster());
        m.remove_flag("force-new-cluster").unwrap();
        assert_eq!(m.to_yaml().unwrap(), text, "set and taken out again");
        // Read with the flag in (a rerun, a join's template) and taken out: only its line goes.
        let mut flagged = Manifest::parse(Path::new("etcd.yaml"), &forced).unwrap();
        assert!(flagged.remove_flag("force-new-cluster").unwrap());
        assert_eq!(flagged.to_yaml().unwrap(), text, "taken out of a manifest read with it");
        m.set_flag("initial-cluster", "cp1=https://192.168.0.150:2380,cp2=https://192.168.0.151:2380").unwrap();
        m.set_flag("initial-cluster-state", "existing").unwrap();
        m.set_annotation("example.io/joined-at", "2026-11-24T20:00:00Z").unwrap();
        let joined = m.to_yaml().unwrap();
        assert!(joined.contains("# cp1 is the old name") && joined.contains("defaultMode: 0644\n"), "{joined}");
        assert_eq!(serde_yaml::from_str::<Value>(&joined).unwrap(), m.doc);
    }

    /// A manifest without annotations gets them line by line; one whose lines cannot be found
    /// (a flow-style command) and that holds a value YAML 1.1 reads otherwise is not written whole.
    #[test]
    fn annotations_are_added_and_hazards_are_not_rewritten() {
        let bare = V131.replace(
            "  annotations:\n    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://192.168.0.150:2379\n",
            "",
        );
        let mut m = Manifest::parse(Path::new("etcd.yaml"), &bare).unwrap();
        m.set_annotation("etcd-recovery/joined-at", "2026-11-24T20:00:00Z").unwrap();
        let out = m.to_yaml().unwrap();
        assert!(
            out.starts_with("apiVersion: v1\nkind: Pod\nmetadata:\n  annotations:\n    etcd-recovery/joined-at: "),
            "{out}"
        );
        assert_eq!(serde_yaml::from_str::<Value>(&out).unwrap(), m.doc);

        let flow = V131.replacen("  - command:\n    - etcd\n", "  - command: [etcd]\n    args:\n", 1);
        let hazard = flow.replacen("  hostNetwork: true\n", "  hostNetwork: yes\n", 1);
        assert_ne!(hazard, flow);
        let mut m = Manifest::parse(Path::new("etcd.yaml"), &hazard).unwrap();
        m.set_flag("force-new-cluster", "true").unwrap();
        let e = m.to_yaml().unwrap_err().to_string();
        assert!(e.contains("would read otherwise to the kubelet") && e.contains("(yes)"), "{e}");
        let mut m = Manifest::parse(Path::new("etcd.yaml"), &flow).unwrap();
        m.set_flag("force-new-cluster", "true").unwrap();
        assert!(m.to_yaml().is_ok(), "no hazard: written whole");
    }

    #[test]
    fn reads_kubeadm_131() {
        let m = Manifest::parse(Path::new("etcd.yaml"), V131).unwrap();
        assert_eq!(m.argv[0], "etcd");
        assert_eq!(m.flag("name").as_deref(), Some("cp1"));
        assert_eq!(m.client_urls(), vec!["https://192.168.0.150:2379"]);
        assert_eq!(m.initial_cluster(), vec![("cp1".to_string(), "https://192.168.0.150:2380".to_string())]);
        assert!(!m.force_new_cluster());
        assert_eq!(m.flags()["snapshot-count"], "10000");
        let root = Path::new("/node");
        assert_eq!(m.host_path(root, "/var/lib/etcd"), Path::new("/node/var/lib/etcd"));
        let certs = m.certificate_files(root);
        assert_eq!(certs.len(), 3, "{certs:?}");
        assert_eq!(certs[2].0, Path::new("/node/etc/kubernetes/pki/etcd/ca.crt"));
        assert_eq!(certs[2].1, vec!["--trusted-ca-file", "--peer-trusted-ca-file"]);
    }

    #[test]
    fn reads_kubeadm_134() {
        let m = Manifest::parse(Path::new("etcd.yaml"), V134).unwrap();
        assert_eq!(m.flag("name").as_deref(), Some("master"));
        assert_eq!(m.flag("feature-gates").as_deref(), Some("InitialCorruptCheck=true"));
        assert_eq!(m.client_urls(), vec!["https://172.31.108.209:2379"]);
        assert_eq!(m.mounts.len(), 2);
    }

    #[test]
    fn client_urls_fall_back_to_the_annotation() {
        let text = V131.replace("    - --advertise-client-urls=https://192.168.0.150:2379\n", "");
        let m = Manifest::parse(Path::new("etcd.yaml"), &text).unwrap();
        assert_eq!(m.flag("advertise-client-urls"), None);
        assert_eq!(m.client_urls(), vec!["https://192.168.0.150:2379"]);
    }

    #[test]
    fn hostpath_mapping_uses_the_mount() {
        let text = V131.replace("path: /var/lib/etcd", "path: /data/etcd");
        let m = Manifest::parse(Path::new("etcd.yaml"), &text).unwrap();
        assert_eq!(m.host_path(Path::new("/"), "/var/lib/etcd/member"), Path::new("/data/etcd/member"));
        assert_eq!(m.host_path(Path::new("/"), "/var/lib/etcdx"), Path::new("/var/lib/etcdx"));
        assert_eq!(m.data_dir(Path::new("/node")).unwrap(), Path::new("/node/data/etcd"));
    }

    /// A mount's subPath is a dir below its volume's path, and a trailing slash on the mount path
    /// changes nothing: both decide which dir clean moves and swap restores into.
    #[test]
    fn sub_paths_and_trailing_slashes_map_to_the_right_dir() {
        let with = |mount: &str, extra: &str| {
            let text = V131
                .replace("    - mountPath: /var/lib/etcd\n", &format!("    - mountPath: {mount}\n{extra}"))
                .replace("      path: /var/lib/etcd\n", "      path: /srv\n");
            Manifest::parse(Path::new("etcd.yaml"), &text).unwrap()
        };
        let rootfs = Path::new("/");
        assert_eq!(with("/var/lib/etcd", "      subPath: etcd\n").data_dir(rootfs).unwrap(), Path::new("/srv/etcd"));
        assert_eq!(with("/var/lib/etcd/", "").data_dir(rootfs).unwrap(), Path::new("/srv"));
        let expr = with("/var/lib/etcd", "      subPathExpr: $(NODE_NAME)\n");
        assert!(expr.hidden_problem().unwrap().contains("the subPathExpr of the mount at /var/lib/etcd"));
        let text = V131.replace("--name=cp1", "--name=$(NODE_NAME)");
        let var = Manifest::parse(Path::new("etcd.yaml"), &text).unwrap();
        assert!(var.hidden_problem().unwrap().contains("--name=$(NODE_NAME) (the kubelet expands $(VAR))"));
        assert!(Manifest::parse(Path::new("etcd.yaml"), V131).unwrap().hidden_problem().is_none());
        let wrapped = V131.replacen("    - etcd\n", "    - /bin/sh\n    - -c\n    - exec etcd --name=cp9\n", 1);
        let m = Manifest::parse(Path::new("etcd.yaml"), &wrapped).unwrap();
        assert!(m.hidden_problem().unwrap().contains("the command runs \"/bin/sh\", not etcd itself"));
        let full = V131.replacen("    - etcd\n", "    - /usr/local/bin/etcd\n", 1);
        assert!(Manifest::parse(Path::new("etcd.yaml"), &full).unwrap().hidden_problem().is_none());
    }

    #[test]
    fn data_dirs_not_plainly_below_root_are_refused() {
        let with = |dir: &str, host: &str| {
            let text = V131
                .replace("--data-dir=/var/lib/etcd", &format!("--data-dir={dir}"))
                .replace("path: /var/lib/etcd", &format!("path: {host}"));
            Manifest::parse(Path::new("etcd.yaml"), &text).unwrap().data_dir(Path::new("/node"))
        };
        assert_eq!(with("/var/lib/etcd", "/var/lib/etcd").unwrap(), Path::new("/node/var/lib/etcd"));
        assert_eq!(with("/var/lib/etcd/", "/var/lib//etcd").unwrap(), Path::new("/node/var/lib//etcd"));
        for (dir, host, says) in [
            ("/var/lib/etcd/..", "/var/lib/etcd", "--data-dir /var/lib/etcd/..: not a plain absolute path"),
            ("/var/lib/etcd/../../..", "/var/lib/etcd", "/var/lib/etcd/../../..: not a plain"),
            ("/", "/var/lib/etcd", "--data-dir /: not a plain absolute path below /"),
            ("var/lib/etcd", "/var/lib/etcd", "--data-dir var/lib/etcd: not a plain"),
            ("/var/lib/etcd", "/srv/../", "(on the host /srv/..): not a plain"),
            ("/var/lib/etcd", "/", "(on the host /): not a plain"),
        ] {
            let e = with(dir, host).unwrap_err().to_string();
            assert!(e.starts_with("etcd.yaml: ") && e.contains(says), "{dir} via {host}: {e}");
        }
    }

    #[test]
    fn flag_forms() {
        let text = V131.replace("- --name=cp1", "- --force-new-cluster\n    - --name\n    - cp9");
        let m = Manifest::parse(Path::new("etcd.yaml"), &text).unwrap();
        assert!(m.force_new_cluster());
        assert_eq!(m.flag("name").as_deref(), Some("cp9"));
        // As Go's ParseBool reads it; what it cannot read counts as set.
        for (v, set) in [("false", false), ("0", false), ("f", false), ("False", false), ("true", true), ("1", true)] {
            let text = V131.replace("- --name=cp1", &format!("- --force-new-cluster={v}"));
            assert_eq!(Manifest::parse(Path::new("etcd.yaml"), &text).unwrap().force_new_cluster(), set, "{v}");
        }
        // The env var is etcd's too when the command lacks the flag.
        let env = "    env:\n    - name: ETCD_FORCE_NEW_CLUSTER\n      value: \"true\"\n    image:";
        let text = V131.replacen("    image:", env, 1);
        let m = Manifest::parse(Path::new("etcd.yaml"), &text).unwrap();
        assert!(!m.force_new_cluster() && m.force_new_cluster_env(), "{text}");
    }

    /// Editing a container without `args` adds none (an `args: null` is refused by the kubelet).
    #[test]
    fn edits_add_no_keys() {
        let mut m = Manifest::parse(Path::new("etcd.yaml"), V131).unwrap();
        m.set_flag("force-new-cluster", "true").unwrap();
        m.remove_flag("force-new-cluster").unwrap();
        let text = m.to_yaml().unwrap();
        assert!(!text.contains("args"), "{text}");
        let before: Value = serde_yaml::from_str(V131).unwrap();
        let after: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(before, after, "a flag set and removed again leaves the manifest as it was");
    }

    /// A command list without the program first is not edited: a flag set there would run as it.
    #[test]
    fn no_edits_without_the_program_first() {
        for cmd in ["[]", "[--name=cp1]", "[[etcd]]"] {
            let text = format!("spec:\n  containers:\n  - name: etcd\n    command: {cmd}\n    args: [--name=cp1]\n");
            let mut m = Manifest::parse(Path::new("etcd.yaml"), &text).unwrap();
            let err = m.set_flag("data-dir", "/d").unwrap_err().to_string();
            assert!(err.contains("does not start with the program"), "{cmd}: {err}");
            assert!(m.remove_flag("name").is_err(), "{cmd}");
        }
    }

    /// etcd reads `args` after `command`: a flag there is edited there too, never left to shadow.
    #[test]
    fn flags_in_args_are_edited_too() {
        let text = "spec:\n  containers:\n  - name: etcd\n    command: [etcd, --name=cp1]\n    \
                    args: [--force-new-cluster, --data-dir, /var/lib/etcd]\n";
        let mut m = Manifest::parse(Path::new("etcd.yaml"), text).unwrap();
        assert!(m.force_new_cluster());
        assert!(m.remove_flag("force-new-cluster").unwrap());
        assert!(!m.force_new_cluster());
        m.set_flag("data-dir", "/data").unwrap();
        let back = Manifest::parse(Path::new("etcd.yaml"), &m.to_yaml().unwrap()).unwrap();
        assert_eq!(back.argv, ["etcd", "--data-dir=/data", "--name=cp1"]);
    }

    #[test]
    fn edits_flags_and_writes_atomically() {
        let dir = std::env::temp_dir().join(format!("manifest-edit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("etcd.yaml");
        std::fs::write(&path, V131).unwrap();
        let mut m = Manifest::load(&path).unwrap();
        m.set_flag("force-new-cluster", "true").unwrap();
        m.set_flag("initial-cluster-state", "existing").unwrap();
        m.set_flag("name", "cp2").unwrap();
        m.save().unwrap();
        let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(entries, vec![std::ffi::OsString::from("etcd.yaml")], "no temp file left");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let mut back = Manifest::load(&path).unwrap();
        assert!(back.force_new_cluster());
        assert_eq!(back.flag("name").as_deref(), Some("cp2"));
        // Alphabetical like kubeadm: after --experimental-watch-..., before --initial-advertise-...
        let pos = |a: &str| back.argv.iter().position(|x| x == a).unwrap();
        assert_eq!(pos("--force-new-cluster=true"), pos("--experimental-watch-progress-notify-interval=5s") + 1);
        assert_eq!(
            pos("--initial-cluster-state=existing"),
            pos("--initial-cluster=cp1=https://192.168.0.150:2380") + 1
        );
        assert_eq!(pos("--name=cp2"), pos("--listen-peer-urls=https://192.168.0.150:2380") + 1);
        assert!(back.remove_flag("force-new-cluster").unwrap());
        assert!(!back.remove_flag("force-new-cluster").unwrap());
        assert!(!back.force_new_cluster());
        // The rest of the pod survives the round trip.
        assert_eq!(back.mounts, Manifest::parse(&path, V131).unwrap().mounts);
        assert_eq!(back.argv.len(), Manifest::parse(&path, V131).unwrap().argv.len() + 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A new flag goes before a flag, not between `--advertise-client-urls` and its value.
    #[test]
    fn a_new_flag_does_not_split_a_flag_from_its_value() {
        let text = V131.replace(
            "    - --advertise-client-urls=https://192.168.0.150:2379\n",
            "    - --advertise-client-urls\n    - https://192.168.0.150:2379\n",
        );
        let mut m = Manifest::parse(Path::new("etcd.yaml"), &text).unwrap();
        m.set_flag("force-new-cluster", "true").unwrap();
        let at = m.argv.iter().position(|a| a == "--advertise-client-urls").unwrap();
        assert_eq!(m.argv[at + 1], "https://192.168.0.150:2379", "{:?}", m.argv);
        assert_eq!(m.flag("advertise-client-urls").as_deref(), Some("https://192.168.0.150:2379"));
        assert!(m.force_new_cluster());
    }

    #[test]
    fn removes_every_form_of_a_flag() {
        let text =
            V131.replace("- --name=cp1", "- --force-new-cluster\n    - --name=cp1\n    - --force-new-cluster=true");
        let mut m = Manifest::parse(Path::new("etcd.yaml"), &text).unwrap();
        assert!(m.remove_flag("force-new-cluster").unwrap());
        assert!(!m.force_new_cluster());
        assert_eq!(m.flag("name").as_deref(), Some("cp1"));
    }

    #[test]
    fn renders_what_kubeadm_writes() {
        let text = render_kubeadm(&KubeadmEtcd {
            name: "cp1",
            host: "192.168.0.150",
            image: "etcd:3.5.21-0",
            initial_cluster: "cp1=https://192.168.0.150:2380",
            existing: false,
        });
        let ours = Manifest::parse(Path::new("etcd.yaml"), &text).unwrap();
        let kubeadm = Manifest::parse(Path::new("etcd.yaml"), V131).unwrap();
        assert_eq!(ours.argv, kubeadm.argv);
        assert_eq!(ours.mounts, kubeadm.mounts);
        assert_eq!(ours.annotations, kubeadm.annotations);
        let a: Value = serde_yaml::from_str(&text).unwrap();
        let mut b: Value = serde_yaml::from_str(V131).unwrap();
        b["metadata"].as_mapping_mut().unwrap().remove("creationTimestamp");
        assert_eq!(a, b, "the whole pod as kubeadm writes it");
        let joined = render_kubeadm(&KubeadmEtcd {
            name: "cp2",
            host: "10.0.0.2",
            image: "etcd:3.5.21-0",
            initial_cluster: "cp1=https://10.0.0.1:2380,cp2=https://10.0.0.2:2380",
            existing: true,
        });
        let m = Manifest::parse(Path::new("etcd.yaml"), &joined).unwrap();
        assert_eq!(m.flag("initial-cluster-state").as_deref(), Some("existing"));
    }

    /// On an IPv6 node kubeadm listens and probes on ::1: 127.0.0.1 may not exist there.
    /// etcd before 3.5.11 answers 404 on /livez and /readyz: its probes go to /health as kubeadm's did.
    #[test]
    fn renders_health_probes_for_etcd_3_4() {
        let render = |image: &str| {
            let k = KubeadmEtcd { name: "cp2", host: "10.0.0.2", image, initial_cluster: "cp2=x", existing: true };
            let pod: Value = serde_yaml::from_str(&render_kubeadm(&k)).unwrap();
            let c = &pod["spec"]["containers"][0];
            ["livenessProbe", "readinessProbe", "startupProbe"]
                .map(|p| c[p]["httpGet"]["path"].as_str().unwrap().to_string())
        };
        let health =
            ["/health?exclude=NOSPACE&serializable=true", "/health?serializable=false", "/health?serializable=false"];
        assert_eq!(render("etcd:3.4.23-0"), health);
        assert_eq!(render("etcd:3.5.10-0"), health);
        assert_eq!(render("etcd:3.5.16-0@sha256:0123abcd"), ["/livez", "/readyz", "/readyz"], "a digest is no tag");
        assert_eq!(render("etcd:3.5.11-0"), ["/livez", "/readyz", "/readyz"]);
        assert_eq!(render("etcd:3.5.16-0"), ["/livez", "/readyz", "/readyz"]);
        assert_eq!(render("etcd:3.6.4-0"), ["/livez", "/readyz", "/readyz"]);
    }

    #[test]
    fn renders_the_ipv6_loopback_for_an_ipv6_node() {
        let text = render_kubeadm(&KubeadmEtcd {
            name: "cp1",
            host: "[fd00::10]",
            image: "etcd:3.5.21-0",
            initial_cluster: "cp1=https://[fd00::10]:2380",
            existing: false,
        });
        let m = Manifest::parse(Path::new("etcd.yaml"), &text).unwrap();
        let flag = |f: &str| m.flag(f).unwrap();
        assert_eq!(flag("listen-client-urls"), "https://[::1]:2379,https://[fd00::10]:2379");
        assert_eq!(flag("listen-metrics-urls"), "http://[::1]:2381");
        assert_eq!(flag("advertise-client-urls"), "https://[fd00::10]:2379");
        let pod: Value = serde_yaml::from_str(&text).unwrap();
        let c = &pod["spec"]["containers"][0];
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            assert_eq!(c[probe]["httpGet"]["host"].as_str(), Some("::1"), "{probe}");
        }
    }

    /// For an etcd 3.6 image, the kubeadm 1.34 layout: new flag names, probes on a named port.
    #[test]
    fn renders_what_kubeadm_1_34_writes() {
        let text = render_kubeadm(&KubeadmEtcd {
            name: "master",
            host: "172.31.108.209",
            image: "etcd:3.6.6-0",
            initial_cluster: "master=https://172.31.108.209:2380",
            existing: false,
        });
        let a: Value = serde_yaml::from_str(&text).unwrap();
        let b: Value = serde_yaml::from_str(V134).unwrap();
        assert_eq!(a, b, "the whole pod as kubeadm 1.34 writes it");
        for (image, new) in
            [("r/etcd:3.5.21-0", false), ("etcd:3.6.0-0", true), ("etcd:v3.10.1", true), ("etcd", false)]
        {
            assert_eq!(etcd_3_6_or_later(image), new, "{image}");
        }
    }

    #[test]
    fn image_repository_comes_from_the_apiserver_manifest() {
        let dir = std::env::temp_dir().join(format!("manifest-repo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(image_repository(&dir), None);
        std::fs::write(
            dir.join("kube-apiserver.yaml"),
            "spec:\n  containers:\n  - name: kube-apiserver\n    image: my-mirror/k8s/kube-apiserver:v1.31.0\n",
        )
        .unwrap();
        assert_eq!(image_repository(&dir).as_deref(), Some("my-mirror/k8s"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_manifests_name_file_and_line() {
        let err = Manifest::parse(Path::new("/m/etcd.yaml"), "spec:\n  containers: [\n").unwrap_err().to_string();
        assert!(err.starts_with("manifest /m/etcd.yaml: invalid YAML at line "), "{err}");
        let err =
            Manifest::parse(Path::new("/m/etcd.yaml"), "spec:\n  containers:\n  - name: nginx\n    command: [nginx]\n")
                .unwrap_err()
                .to_string();
        assert_eq!(err, "manifest /m/etcd.yaml: no etcd container in spec.containers");
    }
}
