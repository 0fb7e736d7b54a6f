//! Bad input, one table across the five tools: damaged snapshots and bbolt files, torn and corrupt
//! WALs, broken manifests, bad certificates, unknown members, foreign status documents, IPv6 URLs,
//! paths with spaces, a read-only backup dir and usage errors. Every row checks the exit code, the
//! one-line message and that no file changed (rows that succeed: only the files they are meant to
//! make, which their own check looks at). Every row runs; the failures are listed together.
//!
//! One lab cluster (etcd 3.5.30) serves every row that needs one; damaged snapshots are made from
//! the committed 3.5.30 and 3.4.23 test snapshots (common/testdata).

use common::manifest::Manifest;
use etcd_lab::{Cluster, Run, Spec, pki};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const VERSION: &str = "3.5.30";
/// A row whose tool runs longer than this has hung: it is killed and fails.
const ROW_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The table

/// Where a row's tool runs.
#[derive(Clone)]
enum On {
    /// No node: an empty root (no manifest, no certificates, no containers).
    Offline,
    /// On a lab node (its root, its runtime endpoint).
    Node(usize),
    /// On a node root made for the row (a copy of node3's certificates and a manifest of the
    /// row's own), with no kubelet and an empty container runtime.
    Root(PathBuf),
}

type Check = Box<dyn Fn(&Run, &Ctx) -> Result<(), String>>;

struct Row {
    name: String,
    tool: &'static str,
    on: On,
    /// `{var}` is replaced by a value an earlier row's check stored (see [`Ctx::set`]).
    args: Vec<String>,
    stdin: Option<String>,
    /// Environment variables set for the row.
    env: Vec<(String, String)>,
    code: i32,
    /// Substrings of the one line on stderr (`<tool>: ...`); empty: stderr is not looked at.
    stderr: Vec<String>,
    /// Substrings of stdout.
    stdout: Vec<String>,
    /// Trees the row may change (rows that succeed); everything else must stay as it was.
    may_change: Vec<PathBuf>,
    check: Option<Check>,
}

fn row(name: &str, tool: &'static str, on: &On, args: &[&str]) -> Row {
    Row {
        name: name.to_string(),
        tool,
        on: on.clone(),
        args: args.iter().map(|a| a.to_string()).collect(),
        stdin: None,
        env: vec![],
        code: 0,
        stderr: vec![],
        stdout: vec![],
        may_change: vec![],
        check: None,
    }
}

impl Row {
    /// Fails with `code` and one line on stderr containing every one of `msgs`.
    fn fails(mut self, code: i32, msgs: &[&str]) -> Row {
        self.code = code;
        self.stderr = msgs.iter().map(|m| m.to_string()).collect();
        self
    }
    /// Exits 0 with one line on stderr (a warning) containing every one of `msgs`.
    fn warns(mut self, msgs: &[&str]) -> Row {
        self.code = 0;
        self.stderr = msgs.iter().map(|m| m.to_string()).collect();
        self
    }
    /// Exits 0 with every one of `msgs` on stdout.
    fn succeeds(mut self, msgs: &[&str]) -> Row {
        self.code = 0;
        self.stdout = msgs.iter().map(|m| m.to_string()).collect();
        self
    }
    fn stdout(mut self, msgs: &[&str]) -> Row {
        self.stdout = msgs.iter().map(|m| m.to_string()).collect();
        self
    }
    fn env(mut self, var: &str, value: &str) -> Row {
        self.env.push((var.to_string(), value.to_string()));
        self
    }
    fn stdin(mut self, text: &str) -> Row {
        self.stdin = Some(text.to_string());
        self
    }
    fn may_change(mut self, p: &Path) -> Row {
        self.may_change.push(p.to_path_buf());
        self
    }
    fn check(mut self, f: impl Fn(&Run, &Ctx) -> Result<(), String> + 'static) -> Row {
        self.check = Some(Box::new(f));
        self
    }
    fn named(mut self, name: &str) -> Row {
        self.name = name.to_string();
        self
    }
}

struct Ctx<'a> {
    c: &'a Cluster,
    empty_root: PathBuf,
    vars: RefCell<BTreeMap<String, String>>,
    prints: Prints,
}

impl Ctx<'_> {
    fn set(&self, k: &str, v: &str) {
        self.vars.borrow_mut().insert(k.into(), v.into());
    }

    fn expand(&self, arg: &str) -> Result<String, String> {
        let mut out = arg.to_string();
        while let Some(start) = out.find('{') {
            let Some(len) = out[start..].find('}') else { break };
            let key = out[start + 1..start + len].to_string();
            if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                break;
            }
            let v = self.vars.borrow().get(&key).cloned().ok_or(format!("{{{key}}} was never set"))?;
            out.replace_range(start..start + len + 1, &v);
        }
        Ok(out)
    }

    fn command(&self, r: &Row) -> Command {
        let mut cmd = match &r.on {
            On::Node(k) => self.c.tool(r.tool, *k),
            On::Root(root) => {
                let mut cmd = self.c.tool(r.tool, 1);
                cmd.env("ETCD_ROOTFS", root).env("CONTAINER_RUNTIME_ENDPOINT", etcd_lab::cri::endpoint_for_root(root));
                cmd
            }
            On::Offline => {
                let mut cmd = self.c.tool(r.tool, 1);
                cmd.env("ETCD_ROOTFS", &self.empty_root)
                    .env("CONTAINER_RUNTIME_ENDPOINT", etcd_lab::cri::endpoint_for_root(&self.empty_root));
                cmd
            }
        };
        // The default log level (warn): what a user sees.
        cmd.env_remove("RUST_LOG");
        cmd
    }

    /// The trees every row watches: the whole lab dir, less what moves on its own.
    fn watched(&self) -> (PathBuf, Vec<PathBuf>) {
        let mut skip = Vec::new();
        for n in &self.c.nodes {
            // The emulated kubelet's own log, the containers' logs it appends to, and the emulated
            // runtime's state (state.json, and the lock file every crictl call creates).
            skip.push(n.root.join("kubelet.log"));
            skip.push(n.root.join("var/log"));
            skip.push(n.root.join("run/containerd/lab-cri"));
        }
        // Running members write their data dirs all the time; node3 is stopped and watched.
        skip.push(self.c.node(1).root.join("var/lib/etcd"));
        skip.push(self.c.node(2).root.join("var/lib/etcd"));
        // Row roots: only the runtime state of the emulated crictl (its lock file).
        if let Ok(d) = std::fs::read_dir(&self.c.base) {
            for e in d.filter_map(Result::ok) {
                skip.push(e.path().join("run/containerd/lab-cri"));
            }
        }
        (self.c.base.clone(), skip)
    }

    /// What the files do not show: the member list, and each lab node's containers and their
    /// states (a row could stop or remove one, or remove a member, and leave every file alone).
    fn live(&self) -> String {
        let out = self.c.etcdctl(&self.c.endpoints(), &["member", "list", "-w", "json"]);
        let mut members: Vec<String> = serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["members"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|m| format!("{} {} {} learner={}", m["ID"], m["name"], m["peerURLs"], m["isLearner"] == true))
            .collect();
        members.sort();
        let mut live = format!("members [{}]", members.join(", "));
        if !out.status.success() {
            live += &format!(" (member list failed: {})", String::from_utf8_lossy(&out.stderr).trim());
        }
        for k in 1..=self.c.nodes.len() {
            let mut containers: Vec<String> =
                self.c.containers(k).iter().map(|c| format!("{} {}", c["id"], c["state"])).collect();
            containers.sort();
            live += &format!("; node{k} containers [{}]", containers.join(", "));
        }
        live
    }

    /// Runs one row: the reasons it failed, if any.
    fn run_row(&self, r: &Row) -> Outcome {
        let mut why = Vec::new();
        let (root, skip) = self.watched();
        let before = self.prints.tree(&root, &skip);
        let live_before = self.live();
        let mut args = Vec::new();
        for a in &r.args {
            match self.expand(a) {
                Ok(a) => args.push(a),
                Err(e) => return Outcome { why: vec![format!("not run: {e}")], ..Outcome::default() },
            }
        }
        let mut cmd = self.command(r);
        cmd.args(&args).envs(r.env.iter().map(|(k, v)| (k, v)));
        let t = Instant::now();
        let run = run_bounded(cmd, r.stdin.as_deref());
        let took = t.elapsed();
        let after = self.prints.tree(&root, &skip);
        let shown = || format!("\n      stderr: {}\n      stdout: {}", excerpt(&run.stderr), excerpt(&run.stdout));
        if run.code != r.code {
            why.push(format!("exit {} (want {}){}", run.code, r.code, shown()));
        }
        if !r.stderr.is_empty() {
            let line = run.stderr.trim_end();
            let prefix = format!("{}: ", r.tool);
            if line.lines().count() != 1 || !line.starts_with(&prefix) {
                why.push(format!("stderr is not one line \"{prefix}...\": {}", excerpt(&run.stderr)));
            }
            for m in &r.stderr {
                if !line.contains(m.as_str()) {
                    why.push(format!("stderr lacks {m:?}: {}", excerpt(&run.stderr)));
                }
            }
        }
        for m in &r.stdout {
            let m = self.expand(m).unwrap_or_else(|e| e);
            if !run.stdout.contains(&m) {
                why.push(format!("stdout lacks {m:?}: {}", excerpt(&run.stdout)));
            }
        }
        let changed = diff(&before, &after, &r.may_change);
        if !changed.is_empty() {
            why.push(format!("files changed: {}", changed.join("; ")));
        }
        let live_after = self.live();
        if live_after != live_before {
            why.push(format!("the live state changed:\n      before: {live_before}\n      after:  {live_after}"));
        }
        if let Some(check) = &r.check
            && let Err(e) = check(&run, self)
        {
            why.push(e);
        }
        let line = run.stderr.trim_end().lines().next().unwrap_or("").chars().take(150).collect();
        Outcome { why, took, line, watched: before.len() }
    }
}

#[derive(Default)]
struct Outcome {
    why: Vec<String>,
    took: Duration,
    /// The first line of stderr, for the summary.
    line: String,
    /// How many paths were compared before and after.
    watched: usize,
}

fn excerpt(s: &str) -> String {
    let s = s.trim_end();
    let cut: String = s.chars().take(600).collect();
    if cut.len() < s.len() { format!("{cut}...") } else { cut }
}

/// Runs a command to its end (killed after [`ROW_LIMIT`]), feeding `stdin`.
fn run_bounded(mut cmd: Command, stdin: Option<&str>) -> Run {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn tool");
    if let Some(text) = stdin {
        // A tool that exits without reading its stdin is not an error here.
        let _ = child.stdin.take().expect("piped").write_all(text.as_bytes());
    }
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(ROW_LIMIT) {
        Ok(out) => out.expect("wait for tool"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            let mut out = rx.recv().expect("killed tool").expect("wait for tool");
            out.stderr.extend_from_slice(format!("\n(killed after {ROW_LIMIT:?})").as_bytes());
            out
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Run {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// "No file changed": every path under the lab dir with its type, mode, size and content hash

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    size: u64,
    /// SHA-256 of a file, the target of a symlink.
    content: String,
}

/// Fingerprints of trees. Big files (data dir copies with 64 MB WAL segments) are hashed again
/// only when their inode, size, mtime or ctime moved: ctime changes with every write to a file and
/// cannot be set back, so a changed content is never missed.
#[derive(Default)]
struct Prints {
    cache: RefCell<HashMap<PathBuf, ([i64; 6], String)>>,
}

impl Prints {
    fn hash(&self, p: &Path, m: &std::fs::Metadata) -> String {
        let key = [m.ino() as i64, m.size() as i64, m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()];
        if let Some((k, h)) = self.cache.borrow().get(p)
            && *k == key
        {
            return h.clone();
        }
        let h = match std::fs::File::open(p) {
            Ok(mut f) => match common::disk::snapshot::sha256_prefix(&mut f, m.size()) {
                Ok(d) => common::disk::snapshot::hex(&d),
                Err(e) => format!("unreadable: {e}"),
            },
            Err(e) => format!("unreadable: {e}"),
        };
        if m.size() > 1 << 20 {
            self.cache.borrow_mut().insert(p.to_path_buf(), (key, h.clone()));
        }
        h
    }

    fn tree(&self, root: &Path, skip: &[PathBuf]) -> BTreeMap<PathBuf, Entry> {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(p) = stack.pop() {
            if skip.iter().any(|s| p.starts_with(s)) {
                continue;
            }
            let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
            let ft = m.file_type();
            let (kind, content) = if ft.is_symlink() {
                ("symlink", std::fs::read_link(&p).map(|t| t.display().to_string()).unwrap_or_default())
            } else if ft.is_dir() {
                if let Ok(d) = std::fs::read_dir(&p) {
                    stack.extend(d.filter_map(Result::ok).map(|e| e.path()));
                }
                ("dir", String::new())
            } else if ft.is_file() {
                ("file", self.hash(&p, &m))
            } else {
                ("other", String::new())
            };
            let size = if ft.is_file() { m.size() } else { 0 };
            out.insert(p, Entry { kind, mode: m.mode() & 0o7777, size, content });
        }
        out
    }
}

fn diff(before: &BTreeMap<PathBuf, Entry>, after: &BTreeMap<PathBuf, Entry>, allowed: &[PathBuf]) -> Vec<String> {
    let ok = |p: &Path| allowed.iter().any(|a| p.starts_with(a));
    let mut out = Vec::new();
    for (p, b) in before {
        match after.get(p) {
            None if !ok(p) => out.push(format!("{} removed", p.display())),
            Some(a) if a != b && !ok(p) => {
                let what = if a.kind != b.kind {
                    format!("{} -> {}", b.kind, a.kind)
                } else if a.mode != b.mode {
                    format!("mode {:o} -> {:o}", b.mode, a.mode)
                } else {
                    format!("content changed ({} -> {} bytes)", b.size, a.size)
                };
                out.push(format!("{} {what}", p.display()));
            }
            _ => {}
        }
    }
    for p in after.keys() {
        if !before.contains_key(p) && !ok(p) {
            out.push(format!("{} added", p.display()));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Inputs

fn testdata(name: &str) -> PathBuf {
    etcd_lab::workspace_root().join("common/testdata").join(name)
}

fn s(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// A db image with a SHA-256 trailer, as `snapshot save` writes it.
fn write_snapshot(path: &Path, db: &[u8]) {
    std::fs::write(path, db).unwrap();
    let mut f = std::fs::File::open(path).unwrap();
    let sha = common::disk::snapshot::sha256_prefix(&mut f, db.len() as u64).unwrap();
    std::fs::OpenOptions::new().append(true).open(path).unwrap().write_all(&sha).unwrap();
}

/// The db part of a test snapshot with the `key` bucket's first child pointing at `child`.
fn with_key_child(snapshot: &[u8], child: Option<u64>) -> Vec<u8> {
    common::disk::forge::with_key_child(&snapshot[..snapshot.len() - 32], child).expect("a key branch")
}

/// The damaged snapshots: (name, path).
fn snapshots(dir: &Path) -> BTreeMap<&'static str, PathBuf> {
    let good = std::fs::read(testdata("snapshot-3.5.30.db")).unwrap();
    let good34 = std::fs::read(testdata("snapshot-3.4.23.db")).unwrap();
    let mut out = BTreeMap::new();
    let mut put = |name: &'static str, bytes: &[u8], trailer: bool| {
        let p = dir.join(format!("{name}.db"));
        if trailer {
            write_snapshot(&p, bytes);
        } else {
            std::fs::write(&p, bytes).unwrap();
        }
        out.insert(name, p);
    };
    put("good", &good, false);
    put("truncated", &good[..good.len() - 1000], false);
    let mut flipped = good.clone();
    flipped[4096 * 4 + 100] ^= 0x40;
    put("flipped", &flipped, false);
    put("zero", &[], false);
    put("hashless", &good[..good.len() - 32], false);
    // Text, with a trailer that matches it: the hash check passes, the bbolt check must not.
    let mut text = b"not a database\n".repeat(300);
    text.resize(4096 * 3, b'\n');
    put("text", &text, true);
    put("cycle", &with_key_child(&good, None), true);
    put("far", &with_key_child(&good, Some(999_999)), true);
    put("cycle-3.4.23", &with_key_child(&good34, None), true);
    put("far-3.4.23", &with_key_child(&good34, Some(999_999)), true);
    out
}

/// The records of a WAL segment: (offset, length field + record + padding).
fn wal_frames(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= b.len() {
        let field = u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        if field == 0 {
            break;
        }
        let len = (field & 0x00ff_ffff_ffff_ffff) as usize;
        let pad = if field >> 63 == 1 { ((field >> 56) & 7) as usize } else { 0 };
        out.push((at, 8 + len + pad));
        at += 8 + len + pad;
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else if e.path().extension().is_some_and(|x| x == "tmp") {
            // etcd's preallocated next WAL segment: all zeros, never read.
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// The data dir's (only) WAL segment.
fn wal_file(data_dir: &Path) -> PathBuf {
    let dir = data_dir.join("member/wal");
    let mut w: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    w.sort();
    assert_eq!(w.len(), 1, "one WAL segment in {}: {w:?}", dir.display());
    w.remove(0)
}

/// etcd's test for a torn write: some 512-byte sector chunk of the record is all zeros.
fn looks_torn(b: &[u8], frame: (usize, usize)) -> bool {
    let (mut at, end) = (frame.0 + 8, frame.0 + frame.1);
    while at < end {
        let next = ((at / 512 + 1) * 512).min(end);
        if b[at..next].iter().all(|&x| x == 0) {
            return true;
        }
        at = next;
    }
    false
}

/// Three copies of a stopped member's data dir: the tail of the last records zeroed from a sector
/// boundary on (a crash mid-write: etcd repairs it), the segment cut inside its last record, and
/// one byte flipped in an entry in the middle (corruption: etcd refuses to start).
fn wal_copies(src: &Path, base: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (torn, cut, crc) = (base.join("wal-torn"), base.join("wal-cut"), base.join("wal-crc"));
    for d in [&torn, &cut, &crc] {
        copy_tree(src, d);
    }
    let b = std::fs::read(wal_file(&torn)).unwrap();
    let frames = wal_frames(&b);
    assert!(frames.len() > 20, "a WAL with some records: {} frames", frames.len());
    let end = frames.last().map(|(at, len)| at + len).unwrap();
    // The last record that crosses a sector boundary (the big value written last).
    let big = *frames.iter().rev().find(|(at, len)| (at + 8) / 512 != (at + len - 1) / 512).expect("a big record");
    let boundary = (big.0 + 8) / 512 * 512 + 512;
    let mut t = b.clone();
    t[boundary..end].fill(0);
    std::fs::write(wal_file(&torn), &t).unwrap();

    let last = *frames.last().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(wal_file(&cut)).unwrap();
    f.set_len((last.0 + last.1 / 2) as u64).unwrap();

    let mut c = b.clone();
    let mid = frames[frames.len() / 3..]
        .iter()
        // An entry record (type 2: the first bytes are 0x08 0x02), not one that could pass as torn.
        .find(|(at, len)| b[at + 8] == 0x08 && b[at + 9] == 0x02 && *len > 40 && !looks_torn(&b, (*at, *len)))
        .copied()
        .expect("an entry in the middle");
    let field = u64::from_le_bytes(b[mid.0..mid.0 + 8].try_into().unwrap());
    let last_data_byte = mid.0 + 8 + (field & 0x00ff_ffff_ffff_ffff) as usize - 1;
    c[last_data_byte] ^= 0x01;
    std::fs::write(wal_file(&crc), &c).unwrap();
    (torn, cut, crc)
}

/// A manifest with its etcd command list edited.
fn edit_command(text: &str, f: impl FnOnce(&mut Vec<serde_yaml::Value>)) -> String {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
    let cmd = doc["spec"]["containers"][0]["command"].as_sequence_mut().expect("command list");
    f(cmd);
    serde_yaml::to_string(&doc).unwrap()
}

fn position(cmd: &[serde_yaml::Value], prefix: &str) -> usize {
    cmd.iter().position(|v| v.as_str().is_some_and(|s| s.starts_with(prefix))).unwrap_or_else(|| panic!("{prefix}"))
}

/// A node root of a row's own: node3's certificates, the given manifest (0600, as kubeadm and our
/// atomic writes leave it), an empty container runtime, no kubelet.
fn node_root(c: &Cluster, name: &str, manifest: &str, dirs: &[&str]) -> PathBuf {
    let root = c.base.join(format!("root-{name}"));
    for d in ["etc/kubernetes/manifests", "var/lib", "run/containerd/lab-cri"].iter().chain(dirs) {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    copy_tree(&c.node(3).pki(), &root.join("etc/kubernetes/pki/etcd"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(root.join("etc/kubernetes/manifests/etcd.yaml"))
        .unwrap();
    f.write_all(manifest.as_bytes()).unwrap();
    root
}

/// What a swap that timed out left aside: the manifest it wrote, found in the backup dir.
fn manifest_set_aside(root: &Path) -> Result<Manifest, String> {
    let mut found = Vec::new();
    let mut stack = vec![root.join("var/lib/etcd-recovery")];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).map_err(|e| e.to_string())?.map(|e| e.unwrap().path()));
        } else if p.parent().is_some_and(|d| d.ends_with("restore-failed"))
            && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("etcd.yaml."))
        {
            found.push(p);
        }
    }
    let [p] = found.as_slice() else {
        return Err(format!("want one manifest set aside under {}/var/lib/etcd-recovery: {found:?}", root.display()));
    };
    Manifest::load(p).map_err(|e| format!("{e:#}"))
}

/// Each flag the swap sets is in the manifest once, with the value it set, and no stray value of
/// a two-argument form is left.
fn swap_edit_ok(m: &Manifest, initial: &str, old_values: &[&str]) -> Result<(), String> {
    let list = m.flag_list();
    for (flag, want) in
        [("initial-cluster", Some(initial)), ("initial-cluster-state", Some("new")), ("initial-cluster-token", None)]
    {
        let values: Vec<&String> = list.iter().filter(|(k, _)| k == flag).map(|(_, v)| v).collect();
        if values.len() != 1 {
            return Err(format!("--{flag} {} times in the written manifest: {:?}", values.len(), m.argv));
        }
        if let Some(w) = want
            && values[0] != w
        {
            return Err(format!("--{flag}={} in the written manifest, want {w}", values[0]));
        }
    }
    if let Some(token) = m.flag("initial-cluster-token")
        && !token.starts_with("restore-")
    {
        return Err(format!("--initial-cluster-token={token}: not a new token"));
    }
    if let Some(stray) = m.argv.iter().find(|a| old_values.contains(&a.as_str())) {
        return Err(format!("a stray old value {stray:?} is left in {:?}", m.argv));
    }
    if m.flag("name").as_deref() != Some("node3") {
        return Err(format!("--name lost: {:?}", m.argv));
    }
    Ok(())
}

/// A plain TCP forwarder on `bind` (an address that is in no certificate) to `target`.
fn forward(bind: &str, target: &str) -> String {
    let listener = std::net::TcpListener::bind(bind).expect("forwarder listen");
    let url = format!("https://{}", listener.local_addr().unwrap());
    let target = target.to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let (Ok(client), Ok(server)) = (client, std::net::TcpStream::connect(&target)) else { continue };
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut c_in, &mut s_out));
            let (mut s_in, mut c_out) = (server, client);
            std::thread::spawn(move || std::io::copy(&mut s_in, &mut c_out));
        }
    });
    url
}

fn write_pem(dir: &Path, name: &str, (cert, key): &(String, String)) -> (String, String) {
    let (c, k) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    (s(&c), s(&k))
}

// ---------------------------------------------------------------------------------------------

#[test]
fn bad_input_table_etcd_3_5_30_and_3_4_23_snapshots() {
    let started = Instant::now();
    let c = Cluster::start(Spec::new(3, VERSION));
    for i in 0..30 {
        c.etcdctl_ok(&["put", &format!("/registry/pods/p{i}"), &format!("pod-{i}")]);
    }
    // A big write last, so that node3's last WAL records cross sector boundaries (let it arrive).
    c.etcdctl_ok(&["put", "/registry/configmaps/big", &"b".repeat(3000)]);
    let revision = |k: usize| -> Value {
        let out = c.etcdctl(&c.node(k).client_url(), &["endpoint", "status", "-w", "json"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .map_or(Value::Null, |v| v[0]["Status"]["header"]["revision"].clone())
    };
    let t = Instant::now();
    while revision(3) != revision(1) {
        assert!(t.elapsed() < Duration::from_secs(10), "node3 never caught up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // node3 is the failed node: stopped (manifest parked), its data dir and container left.
    c.stop_node(3);
    let n1 = c.node(1).clone();
    let n3 = c.node(3).clone();
    let node3_manifest = std::fs::read_to_string(n3.parked_manifest()).unwrap();

    let inputs = c.base.join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    let empty_root = c.base.join("empty-root");
    std::fs::create_dir_all(empty_root.join("run/containerd/lab-cri")).unwrap();
    let snaps = snapshots(&inputs);
    let snap = |n: &str| s(&snaps[n]);
    let (wal_torn, wal_cut, wal_crc) = wal_copies(&n3.root.join("var/lib/etcd"), &c.base);
    // A sound WAL beside a db that is not one: the member is named, its data unreadable.
    let db_bad = c.base.join("db-bad");
    copy_tree(&n3.root.join("var/lib/etcd"), &db_bad);
    std::fs::write(db_bad.join("member/snap/db"), b"not a bbolt file").unwrap();
    let intact = c.base.join("intact");
    copy_tree(&n3.root.join("var/lib/etcd"), &intact);
    let target = inputs.join("restore-target");

    // Certificates: the cluster's CA and another one.
    let certs = inputs.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let other = pki::Ca::new("other-ca");
    let client = |ca: &pki::Ca, from_days, to_days| {
        ca.issue("kube-etcd-healthcheck-client", &[], false, true, pki::Validity { from_days, to_days })
    };
    let expired = write_pem(&certs, "expired", &client(&c.ca, -30, -1));
    let future = write_pem(&certs, "future", &client(&c.ca, 2, 30));
    let foreign = write_pem(&certs, "foreign", &client(&other, -1, 30));
    let good_client = write_pem(&certs, "good", &client(&c.ca, -1, 30));
    let another_key = write_pem(&certs, "another", &client(&c.ca, -1, 30)).1;
    std::fs::write(certs.join("other-ca.crt"), &other.cert_pem).unwrap();
    let ca = s(&n1.pki().join("ca.crt"));
    let other_ca = s(&certs.join("other-ca.crt"));
    let ep1 = n1.client_url();
    let ip_base = n1.ip.rsplit_once('.').unwrap().0.to_string();
    let not_in_sans = forward(&format!("{ip_base}.99:0"), &format!("{}:2379", n1.ip));

    // Status documents: the live one, one of another cluster, an old one.
    let live = c.run_json("etcd-status", 1, &[], None);
    assert_eq!(live.json["kind"], "ClusterStatus", "{}", live.stderr);
    let cluster_id = live.json["clusterId"].as_str().unwrap().to_string();
    let mut foreign_doc = live.json.clone();
    foreign_doc["clusterId"] = Value::from("0123456789abcdef");
    let foreign_doc = foreign_doc.to_string();
    let mut old_doc = live.json.clone();
    old_doc["takenAt"] = Value::from("2020-01-01T00:00:00Z");
    let old_doc = old_doc.to_string();
    // What etcd-snap recorded for the flipped file before the flip (its trailer is intact).
    let flipped = std::fs::read(snap("flipped")).unwrap();
    let trailer: String = flipped[flipped.len() - 32..].iter().map(|b| format!("{b:02x}")).collect();
    let flipped_doc = serde_json::json!({
        "kind": "Snapshot", "path": snap("flipped"), "size": flipped.len(), "sha256": trailer, "revision": 0,
        "totalKeys": 0, "totalSize": 0, "hash": 0, "verified": true,
    })
    .to_string();
    let plan_doc = r#"{"kind":"Plan","tool":"etcd-member remove","preconditions":[],"steps":[]}"#;

    // Node roots with broken manifests.
    let yaml = node_root(&c, "yaml", &node3_manifest.replacen("spec:\n", "spec:\n  containers: [\n", 1), &[]);
    let noetcd = node_root(
        &c,
        "noetcd",
        &node3_manifest.replacen("    - etcd\n", "    - kube-apiserver\n", 1).replacen(
            "    name: etcd\n",
            "    name: kube-apiserver\n",
            1,
        ),
        &[],
    );
    let initial3 = format!("node3={}", n3.peer_url());
    let old_initial =
        Manifest::parse(Path::new("etcd.yaml"), &node3_manifest).unwrap().flag("initial-cluster").unwrap();
    let twice_manifest = edit_command(&node3_manifest, |cmd| {
        let at = position(cmd, "--initial-cluster=");
        cmd.insert(at + 1, "--initial-cluster-state=existing".into());
        cmd.insert(at + 1, "--initial-cluster-token=old-token".into());
        cmd.push(format!("--initial-cluster={old_initial}").into());
        cmd.push("--initial-cluster-state=new".into());
        cmd.push("--initial-cluster-token=older-token".into());
    });
    let twice = node_root(&c, "twice", &twice_manifest, &[]);
    let twoarg_manifest = edit_command(&node3_manifest, |cmd| {
        let at = position(cmd, "--initial-cluster=");
        cmd[at] = "--initial-cluster".into();
        cmd.insert(at + 1, old_initial.clone().into());
        cmd.insert(at + 2, "--initial-cluster-token".into());
        cmd.insert(at + 3, "old-token".into());
        let at = position(cmd, "--name=");
        cmd[at] = "--name".into();
        cmd.insert(at + 1, "node3".into());
    });
    let twoarg = node_root(&c, "twoarg", &twoarg_manifest, &[]);
    let datadir_twice = node_root(
        &c,
        "datadir-twice",
        &edit_command(&node3_manifest, |cmd| {
            let at = position(cmd, "--data-dir=");
            cmd.insert(at, "--data-dir=/var/lib/etcd-old".into());
        }),
        &["var/lib/etcd", "var/lib/etcd-old"],
    );
    let datadir_twoarg = node_root(
        &c,
        "datadir-twoarg",
        &edit_command(&node3_manifest, |cmd| {
            let at = position(cmd, "--data-dir=");
            cmd[at] = "--data-dir".into();
            cmd.insert(at + 1, "/var/lib/etcd-x".into());
        }),
        &["var/lib/etcd", "var/lib/etcd-x"],
    );
    // A data dir the tools would move aside that is not plainly below /: /var/lib itself.
    let datadir_up = node_root(
        &c,
        "datadir-up",
        &edit_command(&node3_manifest, |cmd| {
            let at = position(cmd, "--data-dir=");
            cmd[at] = "--data-dir=/var/lib/etcd/..".into();
        }),
        &["var/lib/etcd"],
    );

    // Data dirs a rename cannot move aside: a symlink, a mount point.
    let linked = node_root(&c, "linked", &node3_manifest, &["var/lib/etcd-real/member"]);
    std::os::unix::fs::symlink("etcd-real", linked.join("var/lib/etcd")).unwrap();
    let mounted = node_root(&c, "mounted", &node3_manifest, &["var/lib/etcd"]);
    let data_mount = etcd_lab::Mounted::mount(&mounted.join("var/lib/etcd"), "size=1m,mode=0700");
    // A bind mount from the same filesystem: the same device as its parent, a mount point all the same.
    let bound = node_root(&c, "bound", &node3_manifest, &["var/lib/etcd", "srv/etcd/member"]);
    let bind_mount = etcd_lab::Mounted::bind(&bound.join("srv/etcd"), &bound.join("var/lib/etcd"));
    let waldir = node_root(
        &c,
        "waldir",
        &edit_command(&node3_manifest, |cmd| cmd.push("--wal-dir=/var/lib/etcd-wal".into())),
        &["var/lib/etcd"],
    );

    // A --backup-dir on another filesystem: every move there is a copy or a rename beside.
    let xdev = node_root(&c, "xdev", &node3_manifest, &["var/lib/etcd/member/snap"]);
    std::fs::write(xdev.join("var/lib/etcd/member/snap/db"), b"the old data").unwrap();
    let xdev_backups = c.base.join("xdev-backups");
    let xdev_mount = etcd_lab::Mounted::mount(&xdev_backups, "size=64m,mode=0700");

    // etcd forced at every restart through its env, where the manifest's flags do not show it.
    let env_forced = node_root(
        &c,
        "envforced",
        &node3_manifest.replacen(
            "    image:",
            "    env:\n    - name: ETCD_FORCE_NEW_CLUSTER\n      value: \"true\"\n    image:",
            1,
        ),
        &["var/lib/etcd/member"],
    );
    // A copy of the manifest left beside it.
    let rival = node_root(&c, "rival", &node3_manifest, &["var/lib/etcd/member"]);
    std::fs::write(rival.join("etc/kubernetes/manifests/etcd.yaml.orig"), &node3_manifest).unwrap();

    // A node whose manifest runs node3: another node's plan line pasted here.
    let pasted = node_root(&c, "pasted", &node3_manifest, &["var/lib/etcd/member"]);

    // Another procedure running on the node: its lock held for the whole table.
    let busy = node_root(&c, "busy", &node3_manifest, &["var/lib/etcd/member"]);
    let held = std::fs::File::open(busy.join("etc/kubernetes/manifests")).unwrap();
    held.lock().unwrap();

    let spaces = c.base.join("with space");
    let ro = c.base.join("read-only backups");
    let ro_mount = etcd_lab::Mounted::mount(&ro, "ro,size=1m");
    // Room for a small snapshot's db, not for the 64 MB WAL segment a restore preallocates.
    let small = c.base.join("small fs");
    let small_mount = etcd_lab::Mounted::mount(&small, "size=1m,mode=0700");
    let parked3 = s(&c.node(3).parked_manifest());

    let ctx = Ctx { c: &c, empty_root, vars: RefCell::new(BTreeMap::new()), prints: Prints::default() };
    // The live state each row is checked against holds something to lose.
    let live = ctx.live();
    assert!(live.matches("learner=false").count() == 3 && !live.contains("failed"), "{live}");
    assert!(live.matches("CONTAINER_RUNNING").count() == 2 && live.contains("CONTAINER_EXITED"), "{live}");
    let off = On::Offline;
    let (node1, node3) = (On::Node(1), On::Node(3));
    let restore_into = |snapshot: &str, dir: &Path| -> Vec<String> {
        [
            "--snapshot",
            snapshot,
            "--data-dir",
            &s(dir),
            "--name",
            "n1",
            "--initial-cluster",
            "n1=https://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "https://127.0.0.1:2380",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let restore_row = |name: &str, file: &str, msgs: &[&str]| {
        let args = restore_into(&snap(file), &target);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        row(name, "etcd-restore", &off, &args).fails(6, msgs)
    };
    let verify_row =
        |name: &str, file: &str, msgs: &[&str]| row(name, "etcd-snap", &off, &["verify", &snap(file)]).fails(6, msgs);
    let status_tls = |name: &str, cacert: &str, cert: &str, key: &str, ep: &str| {
        row(name, "etcd-status", &node1, &["--endpoints", ep, "--cacert", cacert, "--cert", cert, "--key", key])
    };
    let swap = |root: &Path| -> Row {
        row(
            "",
            "etcd-restore",
            &On::Root(root.to_path_buf()),
            // --force: the lab's cluster still serves beside these roots; the rows test what follows.
            &["--swap", "--snapshot", &snap("good"), "--timeout", "2s", "--yes", "--force"],
        )
        .may_change(&root.join("var/lib/etcd-recovery"))
    };

    let plan_rows: Vec<Row> = {
        let plan = |snapshot: &str, extra: &[&str]| {
            let mut a = vec!["plan", "--initial-cluster", "n1=https://10.9.0.1:2380,n2=https://10.9.0.2:2380"];
            a.extend(["--snapshot", snapshot]);
            a.extend(extra.iter().copied());
            a.into_iter().map(String::from).collect::<Vec<_>>()
        };
        let argv_of = |r: &Run| -> Vec<String> {
            r.json["nodes"][0]["argv"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
                .unwrap_or_default()
        };
        let (flipped, hashless) = (plan(&snap("flipped"), &[]), plan(&snap("hashless"), &["--skip-hash-check"]));
        let (empty_token, elsewhere) = (plan(&snap("good"), &["--initial-cluster-token", ""]), plan("x/s.db", &[]));
        fn strs(v: &[String]) -> Vec<&str> {
            v.iter().map(String::as_str).collect()
        }
        vec![
            row("restore plan: a damaged snapshot here", "etcd-restore", &off, &strs(&flipped))
                .fails(6, &["flipped.db: sha256 mismatch"]),
            row("restore plan: an empty token", "etcd-restore", &off, &strs(&empty_token))
                .fails(2, &["--initial-cluster-token: empty"]),
            row("restore plan: --skip-hash-check goes to every node", "etcd-restore", &off, &strs(&hashless))
                .warns(&["hashless.db: verified, revision "])
                .check(move |r, _| match argv_of(r).iter().any(|a| a == "--skip-hash-check") {
                    true => Ok(()),
                    false => Err(format!("not passed on: {:?}", argv_of(r))),
                }),
            row("restore plan: a snapshot not here, relative", "etcd-restore", &off, &strs(&elsewhere))
                .warns(&["x/s.db: not on this node, not verified here"])
                .check(move |r, _| {
                    let argv = argv_of(r);
                    let at = argv.iter().position(|a| a == "--snapshot").and_then(|i| argv.get(i + 1));
                    match at {
                        Some(p) if p.starts_with('/') && p.ends_with("/x/s.db") => Ok(()),
                        _ => Err(format!("the path is not made absolute: {argv:?}")),
                    }
                }),
        ]
    };
    let mut rows: Vec<Row> = vec![
        // --- snapshots, offline verify
        verify_row("verify: truncated snapshot", "truncated", &["truncated.db: no sha256 trailer"]),
        verify_row("verify: one flipped byte", "flipped", &["flipped.db: sha256 mismatch"]),
        // --skip-hash-check trusts the trailer; a document's sha256 is checked against the content.
        row(
            "verify: flipped byte, intact trailer, its document, --skip-hash-check",
            "etcd-snap",
            &off,
            &["verify", "-", "--skip-hash-check"],
        )
        .stdin(&flipped_doc)
        .fails(6, &["flipped.db: sha256 mismatch"]),
        {
            let mut args = restore_into("-", &target);
            args.push("--skip-hash-check".into());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            row("restore: flipped byte, intact trailer, its document, --skip-hash-check", "etcd-restore", &off, &args)
                .stdin(&flipped_doc)
                .fails(6, &["flipped.db: sha256 mismatch"])
        },
        verify_row("verify: zero-length file", "zero", &["zero.db: empty file"]),
        verify_row(
            "verify: raw db without the sha256 trailer",
            "hashless",
            &["hashless.db: no sha256 trailer", "--skip-hash-check"],
        ),
        verify_row("verify: text file with a matching trailer", "text", &["text.db: not a sound bbolt database"]),
        verify_row("verify: bbolt page cycle", "cycle", &["cycle.db: not a sound bbolt database", "reached twice"]),
        verify_row(
            "verify: out-of-range page id",
            "far",
            &["far.db: not a sound bbolt database", "page id 999999 out of range"],
        ),
        row(
            "verify: no such file (a typo, not a corrupt snapshot)",
            "etcd-snap",
            &off,
            &["verify", "/nonexistent/s.db"],
        )
        .fails(2, &["snapshot /nonexistent/s.db: no such file"]),
        {
            let args = restore_into("/nonexistent/s.db", &target);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            row("restore: no such snapshot file", "etcd-restore", &off, &args)
                .fails(2, &["--snapshot /nonexistent/s.db: no such file"])
        },
        {
            let args = restore_into(&snap("good"), &snaps["good"]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            row("usage: restore --data-dir names a file", "etcd-restore", &off, &args)
                .fails(2, &["--data-dir ", "good.db: not a directory"])
        },
        {
            let args = restore_into(&snap("good"), &inputs.join("no-such-parent/data"));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            row("restore: --data-dir's parent missing (as the plan says), nothing made", "etcd-restore", &off, &args)
                .fails(5, &["no-such-parent/data: its parent ", "no-such-parent is not a directory (create it first)"])
        },
        {
            // A bare relative name: its parent is the current dir, whose free space is known.
            let mut args = restore_into(&snap("good"), Path::new("no-such-relative-dir"));
            args.push("--dry-run".into());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            row("restore --dry-run: a bare relative --data-dir, room known", "etcd-restore", &off, &args)
                .succeeds(&["free where no-such-relative-dir is"])
        },
        row(
            "usage: inspect --data-dir that does not exist",
            "etcd-quorum",
            &off,
            &["inspect", "--data-dir", "/nonexistent/etcd"],
        )
        .fails(2, &["--data-dir /nonexistent/etcd: No such file or directory"]),
        row("usage: inspect --data-dir names a file", "etcd-quorum", &off, &["inspect", "--data-dir", &snap("good")])
            .fails(2, &["good.db: not a directory"]),
        verify_row("verify: bbolt page cycle (3.4.23 snapshot)", "cycle-3.4.23", &["reached twice"]),
        verify_row("verify: out-of-range page id (3.4.23 snapshot)", "far-3.4.23", &["page id 999999 out of range"]),
        // --- snapshots, restore: exit 6, the target never created
        {
            let mut args = restore_into(&snap("good"), &target);
            args.extend(["--bump-revision", "9223372036854775807", "--mark-compacted"].map(String::from));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            row("restore: a bump past the largest revision", "etcd-restore", &off, &args)
                .fails(5, &["--bump-revision 9223372036854775807: revision ", "past the largest etcd takes"])
        },
        {
            let mut args = restore_into(&snap("good"), &target);
            args.extend(["--bump-revision", "9223372036854775808", "--mark-compacted"].map(String::from));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            row("usage: a bump beyond int64", "etcd-restore", &off, &args)
                .fails(2, &["--bump-revision 9223372036854775808: more than etcd's largest revision"])
        },
        {
            let args = restore_into(&snap("good"), &small.join("data"));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            row("restore: no room for the data dir", "etcd-restore", &off, &args)
                .fails(5, &["small fs/data: no room for the restore: ", "bytes needed, "])
        },
        restore_row("restore: truncated snapshot", "truncated", &["truncated.db: no sha256 trailer"]),
        restore_row("restore: one flipped byte", "flipped", &["flipped.db: sha256 mismatch"]),
        restore_row("restore: zero-length file", "zero", &["zero.db: empty file"]),
        restore_row("restore: raw db without the trailer", "hashless", &["hashless.db: no sha256 trailer"]),
        restore_row("restore: text file with a matching trailer", "text", &["text.db:", "bbolt"]),
        restore_row("restore: bbolt page cycle", "cycle", &["cycle.db:", "reached twice"]),
        restore_row("restore: out-of-range page id", "far", &["far.db:", "page id 999999 out of range"]),
        restore_row("restore: page cycle (3.4.23 snapshot)", "cycle-3.4.23", &["reached twice"]),
        // --- WAL
        row(
            "inspect: WAL with a torn tail (zeroed sectors)",
            "etcd-quorum",
            &off,
            &["inspect", "--data-dir", &s(&wal_torn)],
        )
        .warns(&["torn WAL tail in ", ".wal at byte "])
        .stdout(&["\"walCrcOk\": true"])
        .check(|r, _| match r.json["tornTail"].as_str() {
            Some(_) => Ok(()),
            None => Err(format!("tornTail not reported: {}", r.json["tornTail"])),
        }),
        row("inspect: WAL cut inside its last record", "etcd-quorum", &off, &["inspect", "--data-dir", &s(&wal_cut)])
            .warns(&["torn WAL tail in ", ".wal at byte "])
            .stdout(&["\"walCrcOk\": true"])
            .check(|r, _| match r.json["tornTail"].as_str() {
                Some(_) => Ok(()),
                None => Err(format!("tornTail not reported: {}", r.json["tornTail"])),
            }),
        row("inspect: WAL with a bad CRC in the middle", "etcd-quorum", &off, &["inspect", "--data-dir", &s(&wal_crc)])
            .fails(6, &["CRC mismatch", ".wal at byte"])
            .stdout(&["\"walCrcOk\": false"]),
        row(
            "inspect --data-dir: a broken manifest is a warning",
            "etcd-quorum",
            &On::Root(yaml.clone()),
            &["inspect", "--data-dir", &s(&intact)],
        )
        .warns(&["invalid YAML at line", "inspecting without it"])
        .stdout(&["\"walCrcOk\": true"]),
        row("inspect: a db that is not one", "etcd-quorum", &off, &["inspect", "--data-dir", &s(&db_bad)])
            .fails(6, &["db-bad: unreadable: ", "member/snap/db"])
            .stdout(&["\"kind\": \"DataDirInspection\"", "\"walCrcOk\": true"]),
        // --- manifests
        // A broken manifest is this node's finding: the cluster is still reported (exit 3).
        row("status: manifest is not YAML", "etcd-status", &On::Root(yaml.clone()), &["--endpoints", &ep1])
            .fails(3, &["etcd.yaml: invalid YAML at line", "the local view is left out"])
            .stdout(&["\"members\"", "invalid YAML at line"]),
        row(
            "status --manifest: named manifest is not YAML",
            "etcd-status",
            &On::Root(yaml.clone()),
            &["--manifest", &s(&yaml.join("etc/kubernetes/manifests/etcd.yaml"))],
        )
        .fails(1, &["etcd.yaml: invalid YAML at line"]),
        row(
            "swap --dry-run: manifest is not YAML",
            "etcd-restore",
            &On::Root(yaml.clone()),
            &["--swap", "--dry-run", "--snapshot", &snap("good")],
        )
        .fails(1, &["etcd.yaml: invalid YAML at line"]),
        row(
            "recover --dry-run: manifest is not YAML",
            "etcd-quorum",
            &On::Root(yaml.clone()),
            &["recover", "--dry-run"],
        )
        .fails(1, &["etcd.yaml: invalid YAML at line"]),
        row(
            "status: manifest without an etcd container",
            "etcd-status",
            &On::Root(noetcd.clone()),
            &["--endpoints", &ep1],
        )
        .fails(3, &["etcd.yaml: no etcd container in spec.containers"]),
        row(
            "recover --dry-run: manifest without an etcd container",
            "etcd-quorum",
            &On::Root(noetcd.clone()),
            &["recover", "--dry-run"],
        )
        .fails(1, &["etcd.yaml: no etcd container in spec.containers"]),
        row(
            "clean --dry-run: --data-dir twice, the last one counts (as in etcd)",
            "etcd-member",
            &On::Root(datadir_twice.clone()),
            &["clean", "--dry-run"],
        )
        .succeeds(&[&format!("{} -> ", s(&datadir_twice.join("var/lib/etcd")))])
        .check(|r, _| {
            if r.stdout.contains("etcd-old") { Err("the first --data-dir was taken".into()) } else { Ok(()) }
        }),
        row(
            "clean --dry-run: --data-dir VALUE (two args)",
            "etcd-member",
            &On::Root(datadir_twoarg.clone()),
            &["clean", "--dry-run"],
        )
        .succeeds(&[&format!("{} -> ", s(&datadir_twoarg.join("var/lib/etcd-x")))]),
        row(
            "clean --yes: another procedure holds the node's lock",
            "etcd-member",
            &On::Root(busy.clone()),
            &["clean", "--yes"],
        )
        .fails(5, &["another etcd recovery procedure is running on this node", "etc/kubernetes/manifests"]),
        row(
            "swap: another node's plan line (its --name)",
            "etcd-restore",
            &On::Root(pasted.clone()),
            &["--swap", "--snapshot", &snap("good"), "--name", "node1", "--yes"],
        )
        .fails(2, &["--name node1: this node's manifest runs etcd with --name=node3"]),
        row(
            "swap: an expired client certificate (the health check would fail), refused before etcd stops",
            "etcd-restore",
            &On::Root(pasted.clone()),
            &["--swap", "--snapshot", &snap("good"), "--cert", &expired.0, "--key", &expired.1, "--yes", "--force"],
        )
        .fails(5, &["refused: ", "client certificate usable", "expired.crt: expired on "]),
        row(
            "swap: a bump past the largest revision, refused before etcd stops",
            "etcd-restore",
            &On::Root(pasted.clone()),
            &[
                "--swap",
                "--snapshot",
                &snap("good"),
                "--bump-revision",
                "9223372036854775807",
                "--mark-compacted",
                "--yes",
                "--force",
            ],
        )
        .fails(5, &["refused: ", "--bump-revision 9223372036854775807: revision ", "past the largest"]),
        row(
            "recover --yes with another --backup-dir: the same node, the same lock",
            "etcd-quorum",
            &On::Root(busy.clone()),
            &["recover", "--yes", "--backup-dir", &s(&c.base.join("busy-elsewhere"))],
        )
        .fails(5, &["another etcd recovery procedure is running on this node", "etc/kubernetes/manifests"]),
        swap(&busy)
            .named("swap: another procedure holds the node's lock")
            .fails(5, &["another etcd recovery procedure is running on this node"]),
        {
            let root = xdev.clone();
            row(
                "swap: --backup-dir on another filesystem; times out, undone all the same",
                "etcd-restore",
                &On::Root(xdev.clone()),
                &[
                    "--swap",
                    "--snapshot",
                    &snap("good"),
                    "--timeout",
                    "2s",
                    "--yes",
                    "--force",
                    "--backup-dir",
                    &s(&xdev_backups),
                ],
            )
            .fails(
                7,
                &[
                    "undone: new manifest taken out",
                    "restored data dir moved to",
                    "old data dir back in",
                    "original manifest back",
                ],
            )
            .may_change(&xdev_backups)
            .may_change(&xdev.join("var/lib"))
            .check(move |_, _| {
                let db =
                    std::fs::read(root.join("var/lib/etcd/member/snap/db")).map_err(|e| format!("old data: {e}"))?;
                if db != b"the old data" {
                    return Err("the old data dir is not back".into());
                }
                let beside = etcd_lab::dir_names(&root.join("var/lib"));
                if !beside.iter().any(|n| n.starts_with("etcd.etcd-recovery-")) {
                    return Err(format!("the restored dir is not beside the data dir: {beside:?}"));
                }
                Ok(())
            })
        },
        row(
            "clean: --data-dir other than the manifest's",
            "etcd-member",
            &node3,
            &["clean", "--manifest", &parked3, "--data-dir", "/srv/etcd", "--yes"],
        )
        .fails(2, &["--data-dir /srv/etcd: the manifest runs etcd with --data-dir ", "drop the flag"]),
        row("clean --yes: data dir is a symlink", "etcd-member", &On::Root(linked.clone()), &["clean", "--yes"])
            .fails(5, &["a symlink to etcd-real", "(needed: data dir can be moved aside)"]),
        row("clean --yes: data dir is a mount point", "etcd-member", &On::Root(mounted.clone()), &["clean", "--yes"])
            .fails(5, &["a mount point", "(needed: data dir can be moved aside)"]),
        row("clean --yes: data dir is a bind mount", "etcd-member", &On::Root(bound.clone()), &["clean", "--yes"])
            .fails(5, &["a mount point", "(needed: data dir can be moved aside)"]),
        row(
            "clean --yes: ETCD_FORCE_NEW_CLUSTER in the env",
            "etcd-member",
            &On::Root(env_forced.clone()),
            &["clean", "--yes"],
        )
        .fails(
            5,
            &["ETCD_FORCE_NEW_CLUSTER (env): etcd takes settings", "(needed: etcd's settings are in its command)"],
        ),
        swap(&env_forced)
            .named("swap: ETCD_FORCE_NEW_CLUSTER in the env")
            .fails(5, &["ETCD_FORCE_NEW_CLUSTER (env): etcd takes settings"]),
        row(
            "clean --yes: a copy of the manifest beside it",
            "etcd-member",
            &On::Root(rival.clone()),
            &["clean", "--yes"],
        )
        .fails(
            5,
            &["etcd.yaml.orig also defines the etcd static pod", "(needed: no other manifest defines the etcd pod)"],
        ),
        swap(&waldir)
            .named("swap: --wal-dir in the manifest")
            .fails(1, &["--wal-dir /var/lib/etcd-wal: a WAL outside the data dir is not supported"]),
        row("clean --yes: manifest is not YAML", "etcd-member", &On::Root(yaml.clone()), &["clean", "--yes"])
            .fails(5, &["invalid YAML at line", "--force to go on", "(needed: manifest readable)"]),
        row(
            "clean --yes: manifest --data-dir with ..",
            "etcd-member",
            &On::Root(datadir_up.clone()),
            &["clean", "--yes"],
        )
        .fails(1, &["etcd.yaml: --data-dir /var/lib/etcd/..: not a plain absolute path below /; refusing"]),
        swap(&datadir_up)
            .named("swap: manifest --data-dir with ..")
            .fails(1, &["etcd.yaml: --data-dir /var/lib/etcd/..: not a plain absolute path below /; refusing"]),
        row("inspect: manifest --data-dir with ..", "etcd-quorum", &On::Root(datadir_up.clone()), &["inspect"])
            .fails(1, &["etcd.yaml: --data-dir /var/lib/etcd/..: not a plain absolute path below /"]),
        row("inspect: ETCD_FORCE_NEW_CLUSTER in the env", "etcd-quorum", &On::Root(env_forced.clone()), &["inspect"])
            .fails(
                5,
                &["ETCD_FORCE_NEW_CLUSTER (env): etcd takes settings", "give --data-dir to inspect all the same"],
            ),
        // The swaps run on roots without a kubelet: the restored member never answers, so each
        // swap times out and undoes itself, and leaves the manifest it wrote in its backup dir.
        {
            let (root, initial) = (twice.clone(), initial3.clone());
            swap(&twice)
                .named("swap: flags given twice; the written manifest has each once (times out, undone)")
                .fails(7, &["not healthy within 2s", "undone: new manifest taken out", "original manifest back"])
                .check(move |_, _| swap_edit_ok(&manifest_set_aside(&root)?, &initial, &[]))
        },
        {
            let (root, initial, old) = (twoarg.clone(), initial3.clone(), old_initial.clone());
            swap(&twoarg)
                .named("swap: flags in --flag VALUE form; no stray value left (times out, undone)")
                .fails(7, &["not healthy within 2s", "undone: new manifest taken out", "original manifest back"])
                .check(move |_, _| swap_edit_ok(&manifest_set_aside(&root)?, &initial, &[&old, "old-token"]))
        },
        // --- certificates
        status_tls("status: expired client certificate", &ca, &expired.0, &expired.1, &ep1)
            .fails(1, &["--cert ", "expired.crt: expired on "]),
        status_tls("status: client certificate not valid yet", &ca, &future.0, &future.1, &ep1)
            .fails(1, &["--cert ", "future.crt: not valid before "]),
        // etcd rejects it after the client's TLS 1.3 handshake is done: the client sees either
        // the alert (UnknownCA) or only the connection closed, as the race goes.
        status_tls("status: client certificate of another CA", &ca, &foreign.0, &foreign.1, &ep1)
            .fails(1, &["TLS failed with every endpoint", "check --cacert/--cert/--key"]),
        status_tls("status: --cacert of another CA", &other_ca, &good_client.0, &good_client.1, &ep1)
            .fails(1, &["TLS failed with every endpoint", "UnknownIssuer"]),
        status_tls(
            "status: server certificate without the endpoint's address",
            &ca,
            &good_client.0,
            &good_client.1,
            &not_in_sans,
        )
        .fails(1, &["TLS failed with every endpoint", "not valid for name"]),
        status_tls("status: key that does not match the certificate", &ca, &good_client.0, &another_key, &ep1)
            .fails(1, &["another.key does not match --cert ", "good.crt"]),
        // --- members and status documents
        row("remove: unknown member name", "etcd-member", &node1, &["remove", "node9"])
            .fails(2, &["unknown member \"node9\"; members: ", "node1 ("]),
        row("remove: unknown member ID", "etcd-member", &node1, &["remove", "00000000deadbeef"])
            .fails(2, &["unknown member \"00000000deadbeef\""]),
        row(
            "remove --status: document of another cluster",
            "etcd-member",
            &node1,
            &["remove", "--unreachable", "--status", "-"],
        )
        .stdin(&foreign_doc)
        .fails(
            5,
            &[
                "status document is of this cluster",
                "document cluster 0123456789abcdef",
                &format!("live cluster {cluster_id}"),
            ],
        ),
        row(
            "remove --status: document older than --max-age",
            "etcd-member",
            &node1,
            &["remove", "--unreachable", "--status", "-"],
        )
        .stdin(&old_doc)
        .fails(5, &["older than --max-age"]),
        // --- IPv6
        row("status: IPv6 endpoint with nothing listening", "etcd-status", &node1, &["--endpoints", "https://[::1]:1"])
            .fails(4, &["no endpoint reachable: https://[::1]:1", "onnection refused"]),
        row("status: IPv6 address without brackets", "etcd-status", &node1, &["--endpoints", "https://::1:2379"])
            .fails(2, &["--endpoints", "https://::1:2379", "brackets"]),
        row(
            "restore plan: IPv6 peer URLs",
            "etcd-restore",
            &off,
            &[
                "plan",
                "--snapshot",
                &snap("good"),
                "--initial-cluster",
                "n1=https://[fd00::1]:2380,n2=https://[fd00::2]:2380,n3=https://[fd00::3]:2380",
                "--initial-cluster-token",
                "t6",
            ],
        )
        .succeeds(&["\"https://[fd00::1]:2380\"", "--initial-advertise-peer-urls 'https://[fd00::3]:2380'"])
        .check(|r, _| {
            let nodes = r.json["nodes"].as_array().cloned().unwrap_or_default();
            let argv: Vec<&str> = nodes
                .get(1)
                .and_then(|n| n["argv"].as_array())
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let i = argv.iter().position(|a| *a == "--initial-advertise-peer-urls");
            match i.and_then(|i| argv.get(i + 1)) {
                Some(&"https://[fd00::2]:2380") if nodes.len() == 3 => Ok(()),
                _ => Err(format!("node n2's command: {argv:?}")),
            }
        }),
        {
            let dir = inputs.join("restored-ipv6");
            let args = [
                "--snapshot",
                &snap("good"),
                "--data-dir",
                &s(&dir),
                "--name",
                "n1",
                "--initial-cluster",
                "n1=https://[fd00::1]:2380,n2=https://[fd00::2]:2380",
                "--initial-advertise-peer-urls",
                "https://[fd00::1]:2380",
            ];
            row("restore: IPv6 peer URLs", "etcd-restore", &off, &args)
                .succeeds(&["\"initialCluster\": \"n1=https://[fd00::1]:2380,n2=https://[fd00::2]:2380\""])
                .may_change(&dir)
        },
        // --- paths with spaces
        row("save --dir with spaces", "etcd-snap", &node1, &["save", "--dir", &s(&spaces.join("back ups"))])
            .succeeds(&["\"verified\": true"])
            .may_change(&spaces)
            .check(|r, ctx| {
                let p = r.json["path"].as_str().ok_or("no path")?;
                if !Path::new(p).is_file() || !p.contains("/with space/back ups/etcd-snapshot-") {
                    return Err(format!("snapshot at {p:?}"));
                }
                ctx.set("saved", p);
                Ok(())
            }),
        row("verify a snapshot in a dir with spaces", "etcd-snap", &off, &["verify", "{saved}"])
            .succeeds(&["\"verified\": true", "back ups"]),
        row(
            "restore from and into paths with spaces",
            "etcd-restore",
            &off,
            &[
                "--snapshot",
                "{saved}",
                "--data-dir",
                &s(&spaces.join("restored data")),
                "--name",
                "n1",
                "--initial-cluster",
                "n1=https://127.0.0.1:2380",
                "--initial-advertise-peer-urls",
                "https://127.0.0.1:2380",
            ],
        )
        .succeeds(&["with space/restored data"])
        .may_change(&spaces.join("restored data"))
        .check(|r, _| match r.json["dataDir"].as_str() {
            Some(d) if Path::new(d).join("member/snap/db").is_file() && Path::new(d).join("member/wal").is_dir() => {
                Ok(())
            }
            d => Err(format!("no restored data dir at {d:?}")),
        }),
        // --- read-only filesystem for the backup dir
        row(
            "clean: backup dir on a read-only filesystem",
            "etcd-member",
            &node3,
            &["clean", "--backup-dir", &s(&ro), "--yes"],
        )
        .fails(5, &["refused: ", "read-only backups: on a read-only filesystem", "(needed: backup dir writable)"]),
        row(
            "restore --swap: backup dir on a read-only filesystem",
            "etcd-restore",
            &node3,
            &[
                "--swap",
                "--snapshot",
                &snap("good"),
                "--backup-dir",
                &s(&ro),
                "--manifest",
                &parked3,
                "--yes",
                "--force",
            ],
        )
        .fails(5, &["read-only backups: on a read-only filesystem", "(needed: backup dir writable)"]),
        row(
            "quorum recover: backup dir on a read-only filesystem",
            "etcd-quorum",
            &node3,
            &["recover", "--backup-dir", &s(&ro), "--manifest", &parked3, "--yes"],
        )
        .fails(5, &["read-only backups: on a read-only filesystem", "(needed: backup dir writable)"]),
        // --- usage
        row(
            "usage: join with no manifest to find the cluster from, and no --endpoints",
            "etcd-member",
            &off,
            &["join", "--name", "n4", "--advertise-address", "10.9.0.4", "--yes"],
        )
        .fails(2, &["no manifest to find the cluster from: give --endpoints"]),
        row("usage: unknown flag", "etcd-snap", &off, &["verify", "--bogus", &snap("good")])
            .fails(2, &["Unrecognized argument: --bogus"]),
        row(
            "usage: unknown flag, -w json: an Error document",
            "etcd-member",
            &off,
            &["remove", "--bogus", "-w", "json"],
        )
        .fails(2, &["Unrecognized argument: --bogus"])
        .stdout(&["\"kind\": \"Error\"", "\"code\": 2", "Unrecognized argument: --bogus"]),
        row("usage: bad duration", "etcd-status", &off, &["--dial-timeout", "2x"])
            .fails(2, &["--dial-timeout: invalid duration \"2x\""]),
        row("usage: save --out names a directory", "etcd-snap", &node1, &["save", "--out", &s(&inputs), "--force"])
            .fails(2, &["--out ", "inputs: a directory (--out names a file; --dir a directory)"]),
        row("usage: save --dir names a file", "etcd-snap", &node1, &["save", "--dir", &snap("good")])
            .fails(2, &["--dir ", "good.db: not a directory"]),
        row("help: -h as --help, in a subcommand", "etcd-snap", &off, &["save", "-h"])
            .succeeds(&["Usage: etcd-snap save"]),
        row("version: which build this is", "etcd-status", &off, &["--version"])
            .succeeds(&[&format!("etcd-status {}", env!("CARGO_PKG_VERSION"))]),
        row(
            "usage: clean --timeout 0s (the manifest out, then given up at once)",
            "etcd-member",
            &node3,
            &["clean", "--timeout", "0s", "--yes"],
        )
        .fails(2, &["--timeout: \"0s\" is no time at all"]),
        row("usage: zero timeout (every member would look dead)", "etcd-status", &off, &["--command-timeout", "0s"])
            .fails(2, &["--command-timeout: \"0s\" is no time at all"]),
        row("usage: zero timeout from the environment", "etcd-status", &off, &[])
            .env("ETCDCTL_DIAL_TIMEOUT", "0ms")
            .fails(2, &["ETCDCTL_DIAL_TIMEOUT (environment): \"0ms\" is no time at all"]),
        row("status: a CA file from the environment that is not there", "etcd-status", &node1, &[])
            .env("ETCDCTL_CACERT", "/nonexistent/ca.crt")
            .fails(1, &["ETCDCTL_CACERT (environment) /nonexistent/ca.crt: cannot read"]),
        row(
            "usage: --manifest meant under --rootfs",
            "etcd-member",
            &node1,
            &["clean", "--manifest", "/etc/kubernetes/manifests/etcd.yaml", "--yes"],
        )
        .fails(2, &["--manifest /etc/kubernetes/manifests/etcd.yaml: no such file, but ", "is there"]),
        row("usage: bad --max-age", "etcd-member", &node1, &["remove", "--max-age", "5", "node9"])
            .fails(2, &["--max-age: invalid duration \"5\""]),
        row("usage: missing required flag (argh)", "etcd-restore", &off, &["plan", "--snapshot", &snap("good")])
            .fails(2, &["Required options not provided", "--initial-cluster"]),
        row("usage: missing --data-dir", "etcd-restore", &off, &["--snapshot", &snap("good"), "--name", "n1"])
            .fails(2, &["--data-dir is required"]),
        // (A bare host:port is https, as etcdctl takes it: status.rs runs one.)
        row("usage: endpoint of another scheme", "etcd-status", &off, &["--endpoints", "unix://127.0.0.1:2379"])
            .fails(2, &["--endpoints: \"unix://127.0.0.1:2379\" is not an http:// or https:// URL"]),
        row("usage: unknown -w", "etcd-quorum", &off, &["inspect", "-w", "yaml", "--data-dir", &s(&wal_torn)])
            .fails(2, &["-w/--write-out: unknown value \"yaml\""]),
        row("usage: a Plan document to verify -", "etcd-snap", &off, &["verify", "-"])
            .stdin(plan_doc)
            .fails(2, &["stdin: a Plan document, not Snapshot"]),
        {
            let args = restore_into("-", &target);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            row("usage: a ClusterStatus document to restore --snapshot -", "etcd-restore", &off, &args)
                .stdin(&foreign_doc)
                .fails(2, &["--snapshot -: a ClusterStatus document, not Snapshot"])
        },
        row("usage: not JSON to pick", "etcd-quorum", &off, &["pick"])
            .stdin("node1 is the best\n")
            .fails(2, &["stdin: not JSON"]),
    ];
    rows.extend(plan_rows);

    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for r in &rows {
        let o = ctx.run_row(r);
        let mark = if o.why.is_empty() { "ok  " } else { "FAIL" };
        let (took, watched) = (o.took.as_secs_f64(), o.watched);
        summary.push(format!(
            "{mark} {took:>4.1}s {watched:>4} paths  {} -> {} {}\n         {}",
            r.name, r.tool, r.code, o.line
        ));
        if !o.why.is_empty() {
            failures.push(format!("{}:\n    {}", r.name, o.why.join("\n    ")));
        }
    }
    drop(ro_mount);
    drop(small_mount);
    drop(data_mount);
    drop(bind_mount);
    drop(held);
    drop(xdev_mount);
    eprintln!("{} rows in {:.1}s:\n{}", rows.len(), started.elapsed().as_secs_f64(), summary.join("\n"));
    assert!(failures.is_empty(), "{} of {} rows failed:\n{}", failures.len(), rows.len(), failures.join("\n"));
}

/// Output into a pipe whose reader is gone (`| head -1` that has read its line): the tool ends as
/// it would have, without a panic's backtrace on the terminal.
#[test]
fn help_and_documents_into_a_closed_pipe() {
    let snapshot = testdata("snapshot-3.5.30.db");
    let runs: [(&str, Vec<&str>); 4] = [
        ("etcd-snap", vec!["--help"]),
        ("etcd-member", vec!["clean", "-h"]),
        ("etcd-quorum", vec!["--version"]),
        ("etcd-snap", vec!["verify", "--skip-hash-check", "-w", "json", snapshot.to_str().unwrap()]),
    ];
    for (tool, args) in runs {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(etcd_lab::bin(tool))
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{tool} {args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{tool} {args:?}: {stderr}");
    }
}

/// Every example in every help (the runbook commands DESIGN wants there) runs a real subcommand
/// with flags it has: an example that drifted from the code would mislead the 3 a.m. reader.
#[test]
fn help_examples_use_real_commands_and_flags() {
    let tools = ["etcd-status", "etcd-member", "etcd-snap", "etcd-restore", "etcd-quorum"];
    let help = |tool: &str, sub: Option<&str>| {
        let out = std::process::Command::new(etcd_lab::bin(tool)).args(sub).arg("--help").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{tool} {sub:?} --help");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let subcommands = |text: &str| -> Vec<String> {
        let Some(list) = text.split("\nCommands:\n").nth(1) else { return vec![] };
        list.split("\n\n")
            .next()
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect()
    };
    let mut examples = 0;
    for tool in tools {
        let top = help(tool, None);
        let subs = subcommands(&top);
        let texts: Vec<String> = std::iter::once(top.clone()).chain(subs.iter().map(|s| help(tool, Some(s)))).collect();
        for text in texts {
            let Some(section) = text.split("\nExamples:\n").nth(1) else { continue };
            for line in section.lines().filter_map(|l| l.trim_start().strip_prefix("$ ")) {
                // Each of our tools the line runs, up to the shell's next separator.
                let words: Vec<&str> = line.split_whitespace().collect();
                for (i, w) in words.iter().enumerate().filter(|(_, w)| tools.contains(*w)) {
                    let args: Vec<&str> = words[i + 1..]
                        .iter()
                        .copied()
                        .take_while(|a| !["|", ";", "&&"].contains(a) && !a.ends_with(';'))
                        .collect();
                    let tool_subs = subcommands(&help(w, None));
                    let sub = args.first().filter(|a| tool_subs.iter().any(|s| s == *a)).copied();
                    let usage = help(w, sub).lines().next().unwrap().to_string();
                    let known: Vec<&str> = usage.split(['[', ']', ' ']).collect();
                    for flag in args.iter().filter(|a| a.starts_with('-') && **a != "-") {
                        let flag = flag.split('=').next().unwrap();
                        assert!(known.contains(&flag), "{tool} help: {line:?}: {w} {sub:?} has no {flag} ({usage})");
                    }
                    examples += 1;
                }
            }
        }
    }
    assert!(examples >= 25, "only {examples} example commands found");
}
