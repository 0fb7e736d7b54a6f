//! The container runtime through `crictl` (argv only, JSON parsed with a real parser, unknown
//! fields ignored): find the etcd container, its state and log tail; stop and remove it.

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const RUNNING: &str = "CONTAINER_RUNNING";
pub const EXITED: &str = "CONTAINER_EXITED";
pub const UNKNOWN: &str = "CONTAINER_UNKNOWN";
pub const CREATED: &str = "CONTAINER_CREATED";

#[derive(Debug, Clone)]
pub struct Crictl {
    pub exe: String,
    /// crictl talks to a local socket; a hung runtime must not hang the tool.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub id: String,
    pub state: String,
    pub attempt: u32,
    /// Unix nanoseconds.
    pub created_at: u128,
    pub pod_uid: String,
    pub pod_name: String,
}

impl Container {
    /// The ID as crictl shows it in its tables (13 characters), for messages and file names.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(13)]
    }

    /// A container of kubeadm's etcd static pod: named `etcd-<node>`, with the UID the kubelet
    /// gives a pod read from a file (the MD5 of it, 32 hex digits; an API pod's UID is a UUID).
    pub fn of_the_static_pod(&self) -> bool {
        let uid = &self.pod_uid;
        self.pod_name.starts_with("etcd-") && uid.len() == 32 && uid.bytes().all(|b| b.is_ascii_hexdigit())
    }

    pub fn running(&self) -> bool {
        self.state == RUNNING
    }

    /// Running, or in a state the runtime cannot tell (a wedged shim): its process may be alive.
    /// Just created too: the kubelet finishes starting a container before it acts on a kill, so
    /// etcd may take its data dir a moment later. One created long ago is a start that failed.
    pub fn may_run(&self) -> bool {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        self.state == RUNNING
            || self.state == UNKNOWN
            || (self.state == CREATED && now.saturating_sub(self.created_at) < STARTING.as_nanos())
    }
}

/// How long a created container may still be on its way to running.
const STARTING: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct PsOutput {
    #[serde(default)]
    containers: Vec<PsContainer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PsContainer {
    id: String,
    #[serde(default)]
    metadata: PsMetadata,
    #[serde(default)]
    state: String,
    /// protojson prints int64 as a string.
    #[serde(default)]
    created_at: serde_json::Value,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct PsMetadata {
    #[serde(default)]
    attempt: u32,
}

/// Output of a finished command.
pub struct Finished {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs argv with a deadline; the child is killed when it passes.
pub fn run_with_timeout(argv: &[&str], timeout: Duration) -> Result<Finished> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        // Its own process group: a Ctrl-C or hangup at the terminal, which a procedure defers,
        // would kill a crictl mid-call (its `rm`, say) and fail the procedure all the same.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow!("{}: {e}", argv[0]))?;
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{}: no answer within {:?}", argv.join(" "), timeout);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Finished { status, stdout: t_out.join().unwrap_or_default(), stderr: t_err.join().unwrap_or_default() })
}

impl Crictl {
    pub fn new(exe: &str) -> Self {
        Crictl { exe: exe.to_string(), timeout: Duration::from_secs(10) }
    }

    fn run(&self, args: &[&str]) -> Result<Finished> {
        let mut argv = vec![self.exe.as_str()];
        argv.extend_from_slice(args);
        let f = run_with_timeout(&argv, self.timeout)?;
        if !f.status.success() {
            let msg = String::from_utf8_lossy(&f.stderr);
            let line = msg.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            bail!("{} {}: {} ({})", self.exe, args.join(" "), line, f.status);
        }
        Ok(f)
    }

    /// The plan check of every procedure that waits on the kubelet through crictl: it lists etcd's
    /// containers. `overridden` (why going on without is allowed) makes a failure pass. `None` when
    /// crictl failed.
    pub fn plan_check(&self, plan: &mut crate::report::Plan, overridden: Option<&str>) -> Option<Vec<Container>> {
        match self.etcd_containers() {
            Ok(list) => {
                plan.check("crictl works", true, format!("{} etcd container(s)", list.len()));
                Some(list)
            }
            Err(e) => {
                let why = overridden.map(|o| format!(" ({o})")).unwrap_or_default();
                plan.check("crictl works", overridden.is_some(), format!("{e:#}{why}"));
                None
            }
        }
    }

    /// Every etcd container of the kube-system static pod, newest first. Only the four
    /// `io.kubernetes.*` labels exist on containers, so those are what we select on; containers
    /// named etcd of other kube-system pods (Cilium's clustermesh-apiserver, a backup job) are not
    /// etcd's: waiting for them to stop would never end, and removing them is not ours to do.
    pub fn etcd_containers(&self) -> Result<Vec<Container>> {
        let f = self.run(&[
            "ps",
            "-a",
            "-o",
            "json",
            "--label",
            "io.kubernetes.container.name=etcd",
            "--label",
            "io.kubernetes.pod.namespace=kube-system",
        ])?;
        let (ours, others): (Vec<Container>, Vec<Container>) =
            parse_ps(&f.stdout)?.into_iter().partition(Container::of_the_static_pod);
        for c in others {
            log::info!(
                "container {} of pod {} (uid {}): not etcd's static pod, left alone",
                c.id,
                c.pod_name,
                c.pod_uid
            );
        }
        Ok(ours)
    }

    /// The newest running etcd container, else the newest one.
    pub fn find_etcd(&self) -> Result<Option<Container>> {
        let all = self.etcd_containers()?;
        Ok(all.iter().find(|c| c.running()).or(all.first()).cloned())
    }

    /// The last `n` log lines; etcd logs to stderr, so both streams are taken.
    pub fn logs_tail(&self, id: &str, n: usize) -> Result<Vec<String>> {
        let f = self.run(&["logs", "--tail", &n.to_string(), id])?;
        let mut text = String::from_utf8_lossy(&f.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&f.stderr));
        let lines: Vec<String> = text.lines().map(String::from).collect();
        Ok(lines[lines.len().saturating_sub(n)..].to_vec())
    }

    /// Waits until no etcd container runs (the kubelet stops the pod once its manifest is gone);
    /// returns the containers then. `Err` when `timeout` passes, saying what still runs, or why
    /// crictl could not tell (a failing crictl is never taken for "nothing runs").
    pub fn wait_stopped(&self, timeout: Duration) -> Result<Vec<Container>, String> {
        poll_until(Instant::now() + timeout, || match self.etcd_containers() {
            Ok(list) if list.iter().all(|c| !c.may_run()) => Ok(list),
            Ok(list) => {
                let running: Vec<String> =
                    list.into_iter().filter(|c| c.may_run()).map(|c| format!("{} {}", c.id, c.state)).collect();
                Err(format!("etcd still running after {timeout:?} (containers {})", running.join(", ")))
            }
            Err(e) => Err(format!("crictl could not tell whether etcd stopped within {timeout:?}: {e:#}")),
        })
    }

    /// [`Crictl::wait_stopped`], then until no process holds the lock etcd keeps on the db of
    /// `data_dir`: the proof, before its data is moved, that crictl did not look at another runtime
    /// or miss a container.
    pub fn wait_stopped_on(&self, timeout: Duration, data_dir: &Path) -> Result<Vec<Container>, String> {
        let deadline = Instant::now() + timeout;
        let list = self.wait_stopped(timeout)?;
        wait_db_released(data_dir, deadline).map(|()| list)
    }

    /// Writes a container's whole log (etcd writes to stderr) to `to`, 0600: `crictl rm` deletes
    /// it (cri-tools 1.30+), and it is what tells why the member failed.
    pub fn save_logs(&self, id: &str, to: &Path) -> Result<()> {
        let f = self.run(&["logs", id])?;
        let mut text = f.stdout;
        text.extend_from_slice(&f.stderr);
        crate::manifest::write_atomic(to, &text)
    }

    pub fn stop(&self, id: &str) -> Result<()> {
        self.run(&["stop", id]).map(drop)
    }

    /// Removes a container. One that is gone already counts as removed: the kubelet deletes dead
    /// containers of its own accord (all but the newest of a pod, and a removed pod's), so one
    /// listed a moment ago may be gone, and crictl's error then only says it could not remove it.
    pub fn remove(&self, id: &str) -> Result<()> {
        let Err(e) = self.run(&["rm", id]) else { return Ok(()) };
        match self.etcd_containers() {
            Ok(list) if !list.iter().any(|c| c.id == id) => {
                log::info!("container {id}: already removed");
                Ok(())
            }
            _ => Err(e),
        }
    }
}

/// Waits until no process holds the lock on `<data_dir>/member/snap/db` (a running etcd does).
pub fn wait_db_released(data_dir: &Path, deadline: Instant) -> Result<(), String> {
    let db = data_dir.join("member/snap/db");
    poll_until(deadline, || match crate::durable::locked_by_another(&db) {
        false => Ok(()),
        true => Err(format!(
            "etcd still holds {}: it has not stopped (if crictl shows none of its containers running, is crictl \
             looking at the kubelet's runtime? CONTAINER_RUNTIME_ENDPOINT, /etc/crictl.yaml)",
            db.display()
        )),
    })
}

/// Asks `check` every 200 ms until it succeeds; at `deadline`, its last answer.
fn poll_until<T>(deadline: Instant, mut check: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(why) if Instant::now() >= deadline => return Err(why),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// `crictl ps -o json` output (protojson: field order and spacing vary), as the tools read it.
pub fn parse_ps(json: &[u8]) -> Result<Vec<Container>> {
    let out: PsOutput = serde_json::from_slice(json).context("crictl ps: unexpected output")?;
    let mut list: Vec<Container> = out
        .containers
        .into_iter()
        .map(|c| Container {
            created_at: match &c.created_at {
                serde_json::Value::String(s) => s.parse().unwrap_or(0),
                serde_json::Value::Number(n) => n.as_u64().unwrap_or(0).into(),
                _ => 0,
            },
            pod_uid: c.labels.get("io.kubernetes.pod.uid").cloned().unwrap_or_default(),
            pod_name: c.labels.get("io.kubernetes.pod.name").cloned().unwrap_or_default(),
            id: c.id,
            state: c.state,
            attempt: c.metadata.attempt,
        })
        .collect();
    list.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: &str = include_str!("../testdata/crictl-ps.json");

    #[test]
    fn parses_crictl_ps_and_orders_newest_first() {
        let list = parse_ps(PS.as_bytes()).unwrap();
        assert_eq!(list.len(), 2);
        assert!(list[0].running());
        assert_eq!(list[0].attempt, 1);
        assert_eq!(list[0].created_at, 1730505600123456789);
        assert_eq!(list[1].state, EXITED);
        assert_eq!(list[0].pod_uid, "d5bcd9d4c3d862ade056fb90d4e74657");
    }

    /// Other kube-system pods may run a container named etcd (Cilium's clustermesh-apiserver, a
    /// backup CronJob's pod, also named etcd-...): only the static pod's count.
    #[test]
    fn containers_of_other_pods_are_not_etcds() {
        let mut ps: serde_json::Value = serde_json::from_str(PS).unwrap();
        let list = ps["containers"].as_array_mut().unwrap();
        for (pod, uid) in [
            ("clustermesh-apiserver-7d9f8c-x2k4q", "5f0c6d2e-8a1b-4c3d-9e2f-0a1b2c3d4e5f"),
            ("etcd-backup-29011380-kq7zt", "0b6f6c1e-2d3a-4b5c-8d9e-f0a1b2c3d4e5"),
            ("etcd-cp1", ""),
        ] {
            let mut c = list[0].clone();
            c["labels"]["io.kubernetes.pod.name"] = pod.into();
            c["labels"]["io.kubernetes.pod.uid"] = uid.into();
            list.push(c);
        }
        let all = parse_ps(ps.to_string().as_bytes()).unwrap();
        let ours: Vec<_> = all.iter().filter(|c| c.of_the_static_pod()).map(|c| (&*c.pod_name, c.attempt)).collect();
        assert_eq!(ours, [("etcd-cp1", 1), ("etcd-cp1", 0)]);
    }

    #[test]
    fn tolerates_unknown_fields_and_empty_output() {
        let list =
            parse_ps(br#"{"containers":[{"id":"x","state":"CONTAINER_EXITED","new":1,"createdAt":"5"}]}"#).unwrap();
        assert_eq!(list[0].created_at, 5);
        assert!(!list[0].may_run());
        // A state the runtime cannot tell (a wedged shim) is not taken for stopped.
        let unknown = parse_ps(br#"{"containers":[{"id":"y","state":"CONTAINER_UNKNOWN","createdAt":"6"}]}"#).unwrap();
        assert!(unknown[0].may_run() && !unknown[0].running());
        // Created a moment ago: about to run. Created long ago: a start that failed.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let created = |ago: Duration| {
            let json = format!(
                r#"{{"containers":[{{"id":"z","state":"CONTAINER_CREATED","createdAt":"{}"}}]}}"#,
                now - ago.as_nanos()
            );
            parse_ps(json.as_bytes()).unwrap()[0].may_run()
        };
        assert!(created(Duration::from_secs(1)));
        assert!(!created(Duration::from_secs(300)));
        assert!(parse_ps(b"{}").unwrap().is_empty());
        assert!(parse_ps(b"not json").is_err());
    }

    #[test]
    fn timeout_kills_the_child() {
        let t = Instant::now();
        let err = run_with_timeout(&["sleep", "5"], Duration::from_millis(200)).err().unwrap();
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(err.to_string().contains("no answer within"), "{err}");
        let missing = run_with_timeout(&["/nonexistent/crictl"], Duration::from_secs(1)).err().unwrap();
        assert!(missing.to_string().starts_with("/nonexistent/crictl: "), "{missing}");
    }

    #[test]
    fn a_failing_crictl_is_not_taken_for_a_stopped_etcd() {
        let t = Instant::now();
        let why = Crictl::new("/nonexistent/crictl").wait_stopped(Duration::from_millis(300)).unwrap_err();
        assert!(t.elapsed() >= Duration::from_millis(300), "gave up before the timeout");
        assert!(
            why.starts_with("crictl could not tell whether etcd stopped within 300ms: /nonexistent/crictl"),
            "{why}"
        );
    }
}
