//! State shared by the emulated container runtime: `lab-kubelet` writes it, the lab's `crictl` reads and changes it.
//!
//! One state dir per node root: `<dir of the runtime socket>/lab-cri/` holds `state.json` (the pods and
//! containers), `lock` (every read-modify-write of `state.json` holds an exclusive flock on it) and
//! `kubelet.lock` (held by the one kubelet of the node for its lifetime).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::collections::hash_map::{DefaultHasher, RandomState};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What crictl uses when nothing configures an endpoint.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";
/// Socket path of a node root, relative to the root.
pub const SOCKET_IN_ROOT: &str = "run/containerd/containerd.sock";

pub const CONTAINER_RUNNING: &str = "CONTAINER_RUNNING";
pub const CONTAINER_EXITED: &str = "CONTAINER_EXITED";
pub const CONTAINER_CREATED: &str = "CONTAINER_CREATED";
pub const CONTAINER_UNKNOWN: &str = "CONTAINER_UNKNOWN";

/// `unix:///x/y.sock` -> `/x/y.sock` (a bare path is taken as is, like crictl does).
pub fn socket_path_from_endpoint(ep: &str) -> PathBuf {
    PathBuf::from(ep.strip_prefix("unix://").unwrap_or(ep))
}

pub fn state_dir_from_endpoint(ep: &str) -> PathBuf {
    let sock = socket_path_from_endpoint(ep);
    sock.parent().unwrap_or(Path::new("/")).join("lab-cri")
}

/// The endpoint a test sets in `CONTAINER_RUNTIME_ENDPOINT` for a node root.
pub fn endpoint_for_root(root: &Path) -> String {
    format!("unix://{}", root.join(SOCKET_IN_ROOT).display())
}

pub fn state_dir_for_root(root: &Path) -> PathBuf {
    state_dir_from_endpoint(&endpoint_for_root(root))
}

/// The error real crictl prints when nothing listens on the endpoint.
pub fn connection_error(ep: &str) -> String {
    format!(
        "validate service connection: validate CRI v1 runtime API for endpoint \"{ep}\": rpc error: code = \
         Unavailable desc = connection error: desc = \"transport: Error while dialing: dial unix {}: connect: no \
         such file or directory\"",
        socket_path_from_endpoint(ep).display()
    )
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct State {
    /// By pod uid.
    pub pods: BTreeMap<String, Pod>,
    pub containers: Vec<Container>,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Pod {
    pub sandbox_id: String,
    /// `<metadata.name>-<node name>`, as the kubelet names static pods.
    pub pod_name: String,
    pub namespace: String,
    pub manifest_file: String,
    pub created_at: u64,
    /// The manifest went away: containers are stopped and never restarted.
    pub removed: bool,
    pub removed_at_unix_millis: u64,
    /// How long a stopped container gets after SIGTERM before SIGKILL.
    pub grace_seconds: u64,
    /// Restart bookkeeping by container name.
    pub containers: BTreeMap<String, PodContainer>,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PodContainer {
    /// Whether attempt 0 was started already.
    pub started: bool,
    /// Attempt of the newest container started (survives `crictl rm` of its record).
    pub restarts: u32,
    /// Consecutive quick exits: selects the next backoff delay.
    pub backoff_step: u32,
    pub next_start_after_unix_millis: u64,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Container {
    /// 64 hex digits.
    pub id: String,
    pub pod_sandbox_id: String,
    pub pod_uid: String,
    pub pod_name: String,
    pub namespace: String,
    pub name: String,
    pub attempt: u32,
    /// One of the CONTAINER_* constants.
    pub state: String,
    /// Unix nanoseconds; 0 = unset.
    pub created_at: u64,
    pub started_at: u64,
    pub finished_at: u64,
    pub exit_code: i32,
    /// Host pid while running, 0 once exited (so nobody signals a recycled pid).
    pub pid: u32,
    /// Start time of `pid` (field 22 of /proc/PID/stat): tells a recycled pid apart.
    pub pid_start_ticks: u64,
    /// As the manifest spells it, e.g. `registry.k8s.io/etcd:3.5.30-0`.
    pub image: String,
    /// `sha256:<64 hex>`, derived from `image`.
    pub image_ref: String,
    /// etcd version whose binaries run (from the image tag, else the kubelet's default).
    pub version: String,
    /// Host directory holding that version's etcd, etcdctl and etcdutl.
    pub bin_dir: String,
    /// Host path of the CRI-format log file.
    pub log_path: String,
    /// The host argv that was run (paths already mapped).
    pub command: Vec<String>,
    /// Container environment (from the manifest) without PATH.
    pub env: Vec<(String, String)>,
    /// Host working directory of the process.
    pub work_dir: String,
    pub mounts: Vec<Mount>,
}

impl Container {
    pub fn is_running(&self) -> bool {
        self.state == CONTAINER_RUNNING
    }
}

/// A hostPath volume mount; `host_path` is the real path on this machine (under the node root).
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Mount {
    pub container_path: String,
    pub host_path: String,
}

fn read_locked(dir: &Path) -> io::Result<(State, Vec<u8>)> {
    let bytes = match fs::read(dir.join("state.json")) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    if bytes.is_empty() {
        return Ok((State::default(), bytes));
    }
    let st = serde_json::from_slice(&bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}/state.json: {e}", dir.display())))?;
    Ok((st, bytes))
}

fn open_lock(dir: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("lock"))
}

/// Read-modify-write of the state under the exclusive lock; written (tmp + rename) only when it changed.
pub fn with_state<T>(dir: &Path, f: impl FnOnce(&mut State) -> T) -> io::Result<T> {
    let lock = open_lock(dir)?;
    lock.lock()?;
    let (mut st, old) = read_locked(dir)?;
    let out = f(&mut st);
    let mut new = serde_json::to_vec_pretty(&st).map_err(io::Error::other)?;
    new.push(b'\n');
    if new != old {
        let tmp = dir.join(".state.json.tmp");
        fs::write(&tmp, &new)?;
        fs::rename(&tmp, dir.join("state.json"))?;
    }
    drop(lock);
    Ok(out)
}

/// A consistent snapshot of the state (shared lock).
pub fn read_state(dir: &Path) -> io::Result<State> {
    let lock = open_lock(dir)?;
    lock.lock_shared()?;
    Ok(read_locked(dir)?.0)
}

pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

pub fn now_nanos() -> u64 {
    unix_nanos(SystemTime::now())
}

pub fn now_millis() -> u64 {
    now_nanos() / 1_000_000
}

pub fn time_from_nanos(n: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(n)
}

/// RFC 3339 as crictl inspect prints it; the zero time for unset.
pub fn rfc3339_or_zero(nanos: u64) -> String {
    if nanos == 0 { common::time::rfc3339_secs(0) } else { common::time::rfc3339_nanos(time_from_nanos(nanos)) }
}

static ID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh 64-hex-digit id (containers, sandboxes), unique across processes and calls.
pub fn new_id() -> String {
    let nanos = now_nanos();
    let pid = std::process::id();
    let n = ID_COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = RandomState::new();
    let mut out = String::with_capacity(64);
    for word in 0u8..4 {
        let _ = write!(out, "{:016x}", seed.hash_one((nanos, pid, n, word)));
    }
    out
}

/// Fixed-key hash (same output in every process) to `words` * 16 hex digits.
fn stable_hex(parts: &[&[u8]], words: u8) -> String {
    let mut out = String::new();
    for word in 0..words {
        let mut h = DefaultHasher::new();
        word.hash(&mut h);
        for p in parts {
            p.hash(&mut h);
        }
        let _ = write!(out, "{:016x}", h.finish());
    }
    out
}

/// Pod uid of a static pod: 32 hex digits. Like the kubelet's (a hash of the parsed pod, the node
/// and the file), it changes with what the file says, not with its layout: comments, key order and
/// quoting leave it as it is, so a rewrite that changes nothing restarts nothing. A file that does
/// not parse is hashed as bytes (the kubelet skips it anyway).
pub fn pod_uid(file_name: &str, content: &[u8], node: &str) -> String {
    // serde_json's maps are sorted: one spelling per parsed document.
    let parsed = serde_yaml::from_slice::<serde_json::Value>(content).map(|v| v.to_string());
    let canonical = parsed.as_ref().map(String::as_bytes).unwrap_or(content);
    stable_hex(&[file_name.as_bytes(), canonical, node.as_bytes()], 2)
}

/// `sha256:<64 hex>` image id, stable per image name.
pub fn image_ref(image: &str) -> String {
    format!("sha256:{}", stable_hex(&[image.as_bytes()], 4))
}

/// `registry.k8s.io/etcd:3.5.30-0` -> `3.5.30`; None without a tag.
pub fn version_from_image(image: &str) -> Option<String> {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = last.split_once(':')?.1;
    let tag = tag.strip_prefix('v').unwrap_or(tag);
    // kubeadm's images carry a `-N` build suffix
    let v = match tag.rsplit_once('-') {
        Some((v, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => v,
        _ => tag,
    };
    (!v.is_empty()).then(|| v.to_string())
}

/// The etcd tool a container command names (`etcd`, `/usr/local/bin/etcdctl`, ...), if any.
pub fn etcd_tool_name(cmd: &str) -> Option<&'static str> {
    ["etcd", "etcdctl", "etcdutl"]
        .into_iter()
        .find(|name| cmd == *name || cmd.strip_prefix("/usr/local/bin/") == Some(name))
}

/// Rewrites container paths inside one argument to host paths through the mounts.
///
/// The argument is split at `,`; in each piece the path candidate follows the last `=` (or is the whole piece). It is
/// mapped when it is a mount path or continues below one with `/`; the longest mount path wins.
pub fn map_container_path(arg: &str, mounts: &[Mount]) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    loop {
        let end = rest.find(',').unwrap_or(rest.len());
        let (token, after) = rest.split_at(end);
        // the token may be `--flag=/path`: only what follows the last `=` is a path candidate
        let path_start = token.rfind('=').map(|i| i + 1).unwrap_or(0);
        let (prefix, path) = token.split_at(path_start);
        out.push_str(prefix);
        out.push_str(&map_one_path(path, mounts));
        if after.is_empty() {
            return out;
        }
        out.push(',');
        rest = &after[1..];
    }
}

fn map_one_path(path: &str, mounts: &[Mount]) -> String {
    let mut best: Option<(&Mount, &str)> = None;
    for m in mounts {
        let mp = m.container_path.trim_end_matches('/');
        let below = if mp.is_empty() {
            // mount of `/` itself
            path.strip_prefix('/').map(|_| path)
        } else {
            path.strip_prefix(mp).filter(|r| r.is_empty() || r.starts_with('/'))
        };
        if let Some(r) = below
            && best.is_none_or(|(b, _)| b.container_path.trim_end_matches('/').len() < mp.len())
        {
            best = Some((m, r));
        }
    }
    match best {
        Some((m, r)) => format!("{}{}", m.host_path.trim_end_matches('/'), r),
        None => path.to_string(),
    }
}

/// State of a process from /proc: (state letter, start time ticks); None when gone.
pub fn proc_stat(pid: u32) -> Option<(char, u64)> {
    if pid == 0 {
        return None;
    }
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parens: fields resume after the last ')'
    let rest = &s[s.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // starttime is field 22 overall; `state` was field 3
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The process runs (not a zombie) and is still the one started (when `start_ticks` is known).
pub fn pid_alive(pid: u32, start_ticks: u64) -> bool {
    match proc_stat(pid) {
        Some((state, start)) => state != 'Z' && state != 'X' && (start_ticks == 0 || start == start_ticks),
        None => false,
    }
}

pub fn signal(pid: u32, sig: i32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill(2) has no memory effects; pid 0 (own group) is excluded above.
    unsafe { libc::kill(pid as i32, sig) == 0 }
}

/// One CRI log line: `<RFC3339Nano> <stdout|stderr> F <content>\n`.
pub fn cri_log_line(t: SystemTime, stream: &str, content: &[u8]) -> Vec<u8> {
    let mut line = format!("{} {stream} F ", common::time::rfc3339_nanos(t)).into_bytes();
    line.extend_from_slice(content);
    line.push(b'\n');
    line
}

/// A parsed CRI log line (without the trailing newline).
#[derive(Debug, PartialEq, Eq)]
pub struct LogLine<'a> {
    pub time: &'a [u8],
    pub stream: &'a [u8],
    pub tag: &'a [u8],
    pub content: &'a [u8],
}

pub fn parse_cri_log_line(line: &[u8]) -> Option<LogLine<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or(b"");
    Some(LogLine { time, stream, tag, content })
}

/// A Go-regexp subset for `crictl ps --name`: literals, `.`, the quantifiers `*` `+` `?` after one atom,
/// `^` at the start, `$` at the end, and `\` to escape a metacharacter. Unanchored, it matches anywhere (as
/// `regexp.MatchString`). Anything else (classes, groups, alternation, `{n}`) is an error, not a silent miss.
pub fn regex_matches(pattern: &str, text: &str) -> Result<bool, String> {
    let (toks, start, end) = parse_regex(pattern)?;
    let text: Vec<char> = text.chars().collect();
    if start {
        return Ok(match_here(&toks, &text, end));
    }
    Ok((0..=text.len()).any(|i| match_here(&toks, &text[i..], end)))
}

#[derive(Clone, Copy, Debug)]
enum Atom {
    Any,
    Lit(char),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Quant {
    One,
    Star,
    Plus,
    Opt,
}

/// Tokens, anchored at the start, anchored at the end.
type Regex = (Vec<(Atom, Quant)>, bool, bool);

fn parse_regex(p: &str) -> Result<Regex, String> {
    let unsupported = || Err(format!("regular expression {p:?} is outside the lab crictl's subset"));
    let mut chars: Vec<char> = p.chars().collect();
    let start = chars.first() == Some(&'^');
    if start {
        chars.remove(0);
    }
    // a trailing `$` anchors unless it is escaped
    let escaped_end = chars.len() >= 2 && chars[chars.len() - 2] == '\\';
    let end = chars.last() == Some(&'$') && !escaped_end;
    if end {
        chars.pop();
    }
    let mut toks: Vec<(Atom, Quant)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let atom = match c {
            '.' => Atom::Any,
            '\\' => {
                i += 1;
                match chars.get(i) {
                    Some(&e) if e.is_ascii_punctuation() => Atom::Lit(e),
                    _ => return unsupported(),
                }
            }
            '*' | '+' | '?' => {
                let q = match c {
                    '*' => Quant::Star,
                    '+' => Quant::Plus,
                    _ => Quant::Opt,
                };
                match toks.last_mut() {
                    Some(last) if last.1 == Quant::One => last.1 = q,
                    _ => return unsupported(),
                }
                i += 1;
                continue;
            }
            '[' | ']' | '(' | ')' | '|' | '{' | '}' | '^' | '$' => return unsupported(),
            c => Atom::Lit(c),
        };
        toks.push((atom, Quant::One));
        i += 1;
    }
    Ok((toks, start, end))
}

fn atom_matches(a: Atom, c: char) -> bool {
    match a {
        Atom::Any => c != '\n',
        Atom::Lit(l) => l == c,
    }
}

fn match_here(toks: &[(Atom, Quant)], text: &[char], end: bool) -> bool {
    let Some(&(atom, q)) = toks.first() else {
        return !end || text.is_empty();
    };
    let rest = &toks[1..];
    let first = text.first().is_some_and(|&c| atom_matches(atom, c));
    match q {
        Quant::One => first && match_here(rest, &text[1..], end),
        Quant::Opt => (first && match_here(rest, &text[1..], end)) || match_here(rest, text, end),
        Quant::Star | Quant::Plus => {
            let run = text.iter().take_while(|&&c| atom_matches(atom, c)).count();
            let min = usize::from(q == Quant::Plus);
            (min..=run).rev().any(|k| match_here(rest, &text[k..], end))
        }
    }
}

/// `N seconds ago`-style age as crictl's table prints it (Go's units.HumanDuration).
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 1 {
        return "Less than a second".into();
    }
    if secs == 1 {
        return "1 second".into();
    }
    if secs < 60 {
        return format!("{secs} seconds");
    }
    let mins = secs / 60;
    if mins == 1 {
        return "About a minute".into();
    }
    if mins < 60 {
        return format!("{mins} minutes");
    }
    let hours = (secs + 1800) / 3600;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts(root: &str) -> Vec<Mount> {
        vec![
            Mount { container_path: "/var/lib/etcd".into(), host_path: format!("{root}/var/lib/etcd") },
            Mount {
                container_path: "/etc/kubernetes/pki/etcd".into(),
                host_path: format!("{root}/etc/kubernetes/pki/etcd"),
            },
            Mount { container_path: "/etc/kubernetes".into(), host_path: format!("{root}/srv/k8s") },
        ]
    }

    #[test]
    fn maps_container_paths() {
        let m = mounts("/tmp/n1");
        assert_eq!(map_container_path("--data-dir=/var/lib/etcd", &m), "--data-dir=/tmp/n1/var/lib/etcd");
        assert_eq!(map_container_path("/var/lib/etcd/member", &m), "/tmp/n1/var/lib/etcd/member");
        assert_eq!(
            map_container_path("--cert-file=/etc/kubernetes/pki/etcd/server.crt", &m),
            "--cert-file=/tmp/n1/etc/kubernetes/pki/etcd/server.crt"
        );
        // the shorter mount catches what the longer one does not cover
        assert_eq!(map_container_path("--x=/etc/kubernetes/admin.conf", &m), "--x=/tmp/n1/srv/k8s/admin.conf");
        // a sibling with the same prefix is not below the mount
        assert_eq!(map_container_path("--data-dir=/var/lib/etcd2", &m), "--data-dir=/var/lib/etcd2");
        assert_eq!(map_container_path("--name=n1", &m), "--name=n1");
        assert_eq!(
            map_container_path("--listen-client-urls=https://127.0.0.1:2379,https://10.0.0.1:2379", &m),
            "--listen-client-urls=https://127.0.0.1:2379,https://10.0.0.1:2379"
        );
        assert_eq!(
            map_container_path("--files=/var/lib/etcd/a,/etc/kubernetes/pki/etcd/ca.crt", &m),
            "--files=/tmp/n1/var/lib/etcd/a,/tmp/n1/etc/kubernetes/pki/etcd/ca.crt"
        );
        let root = vec![Mount { container_path: "/".into(), host_path: "/tmp/r/".into() }];
        assert_eq!(map_container_path("--data-dir=/var/x", &root), "--data-dir=/tmp/r/var/x");
    }

    #[test]
    fn ids_and_uids() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        let u = pod_uid("etcd.yaml", b"spec: {}", "n1");
        assert_eq!(u.len(), 32);
        assert_eq!(u, pod_uid("etcd.yaml", b"spec: {}", "n1"));
        assert_ne!(u, pod_uid("etcd.yaml", b"spec: {x: 1}", "n1"));
        // The layout does not count, the content does.
        let pod = b"metadata: {name: etcd, annotations: {a: '1', b: '2'}}\nspec: {containers: [{name: etcd}]}\n";
        let relaid = b"# edited\nspec:\n  containers:\n  - name: \"etcd\"\nmetadata:\n  annotations:\n    b: '2'\n    a: '1'\n  name: etcd\n";
        assert_eq!(pod_uid("etcd.yaml", pod, "n1"), pod_uid("etcd.yaml", relaid, "n1"));
        assert_ne!(pod_uid("etcd.yaml", pod, "n1"), pod_uid("etcd.yaml", &relaid[..relaid.len() - 5], "n1"));
        assert_ne!(u, pod_uid("etcd.yaml.bak", b"spec: {}", "n1"));
        assert_ne!(u, pod_uid("etcd.yaml", b"spec: {}", "n2"));
        assert_eq!(image_ref("etcd:3.5.30-0").len(), 71);
    }

    #[test]
    fn versions_from_images() {
        assert_eq!(version_from_image("registry.k8s.io/etcd:3.5.30-0").as_deref(), Some("3.5.30"));
        assert_eq!(version_from_image("etcd:3.4.23-0").as_deref(), Some("3.4.23"));
        assert_eq!(version_from_image("localhost:5000/etcd:v3.5.16").as_deref(), Some("3.5.16"));
        assert_eq!(version_from_image("localhost:5000/etcd").as_deref(), None);
        assert_eq!(etcd_tool_name("/usr/local/bin/etcdctl"), Some("etcdctl"));
        assert_eq!(etcd_tool_name("sh"), None);
    }

    #[test]
    fn regex_subset() {
        let m = |p: &str, t: &str| regex_matches(p, t).unwrap();
        assert!(m("etcd", "etcd"));
        assert!(m("tc", "etcd"));
        assert!(m("^etcd$", "etcd"));
        assert!(!m("^etcd$", "etcd-backup"));
        assert!(m("^etcd", "etcd-backup"));
        assert!(!m("backup$", "etcd-backup-x"));
        assert!(m("e.c", "etcd"));
        assert!(m("^e.*d$", "etcd"));
        assert!(m("^et+cd?$", "ettc"));
        assert!(!m("^e\\.c", "etcd"));
        assert!(m("^a\\.b$", "a.b"));
        assert!(m("", "anything"));
        assert!(regex_matches("etcd|kube", "etcd").is_err());
        assert!(regex_matches("[a-z]", "etcd").is_err());
    }

    #[test]
    fn log_lines_round_trip() {
        let t = UNIX_EPOCH + Duration::new(1_795_466_012, 5);
        let line = cri_log_line(t, "stderr", b"a b c");
        assert_eq!(line, b"2026-11-23T20:33:32.000000005Z stderr F a b c\n");
        let p = parse_cri_log_line(&line[..line.len() - 1]).unwrap();
        assert_eq!((p.stream, p.tag, p.content), (&b"stderr"[..], &b"F"[..], &b"a b c"[..]));
    }

    #[test]
    fn endpoints() {
        let ep = endpoint_for_root(Path::new("/tmp/n1"));
        assert_eq!(ep, "unix:///tmp/n1/run/containerd/containerd.sock");
        assert_eq!(state_dir_from_endpoint(&ep), Path::new("/tmp/n1/run/containerd/lab-cri"));
        assert_eq!(human_duration(Duration::from_secs(75)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(5)), "5 seconds");
    }
}
