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
        let container = containers
            .iter()
            .find(|c| c["name"].as_str() == Some("etcd"))
            .or_else(|| containers.iter().find(|c| c["command"][0].as_str() == Some("etcd")))
            .ok_or_else(|| anyhow!("manifest {shown}: no etcd container in spec.containers"))?;
        let mut argv = str_list(&container["command"]);
        argv.extend(str_list(&container["args"]));
        if argv.is_empty() {
            bail!("manifest {shown}: the etcd container has no command");
        }
        let annotations = doc["metadata"]["annotations"]
            .as_mapping()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let volumes = doc["spec"]["volumes"].as_sequence().cloned().unwrap_or_default();
        let mounts = container["volumeMounts"]
            .as_sequence()
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| {
                        let name = m["name"].as_str()?;
                        let vol = volumes.iter().find(|v| v["name"].as_str() == Some(name))?;
                        Some((m["mountPath"].as_str()?.to_string(), vol["hostPath"]["path"].as_str()?.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Manifest { path: path.to_path_buf(), argv, annotations, mounts })
    }

    /// Every `--name[=value]` of the command line in order; `--name value` is taken as a pair too,
    /// and a bare `--name` means "true", as etcd's flag parser reads them.
    pub fn flag_list(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut args = self.argv.iter().skip(1).peekable();
        while let Some(arg) = args.next() {
            let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else { continue };
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

    /// `--force-new-cluster` present and not explicitly false.
    pub fn force_new_cluster(&self) -> bool {
        self.flag("force-new-cluster").is_some_and(|v| v != "false")
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
        let best = self
            .mounts
            .iter()
            .filter(|(mount, _)| {
                container_path == mount
                    || container_path.strip_prefix(mount.as_str()).is_some_and(|rest| rest.starts_with('/'))
            })
            .max_by_key(|(mount, _)| mount.len());
        let on_host = match best {
            Some((mount, host)) => format!("{}{}", host.trim_end_matches('/'), &container_path[mount.len()..]),
            None => container_path.to_string(),
        };
        crate::cli::host_path(rootfs, &on_host)
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

#[cfg(test)]
mod tests {
    use super::*;

    // The kubeadm 1.31 and 1.34 layouts (shared/reference/), trimmed to what is read here.
    const V131: &str = include_str!("../testdata/etcd.yaml.kubeadm-1.31");
    const V134: &str = include_str!("../testdata/etcd.yaml.kubeadm-1.34");

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
    }

    #[test]
    fn flag_forms() {
        let text = V131.replace("- --name=cp1", "- --force-new-cluster\n    - --name\n    - cp9");
        let m = Manifest::parse(Path::new("etcd.yaml"), &text).unwrap();
        assert!(m.force_new_cluster());
        assert_eq!(m.flag("name").as_deref(), Some("cp9"));
        let text = V131.replace("- --name=cp1", "- --force-new-cluster=false");
        assert!(!Manifest::parse(Path::new("etcd.yaml"), &text).unwrap().force_new_cluster());
    }

    #[test]
    fn bad_manifests_name_file_and_line() {
        let err = Manifest::parse(Path::new("/m/etcd.yaml"), "spec:\n  containers: [\n").unwrap_err().to_string();
        assert!(err.starts_with("manifest /m/etcd.yaml: invalid YAML at line "), "{err}");
        let err = Manifest::parse(Path::new("/m/etcd.yaml"), "spec:\n  containers:\n  - name: nginx\n    command: [nginx]\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "manifest /m/etcd.yaml: no etcd container in spec.containers");
    }
}
