//! The lab's `crictl`: answers from the state `lab-kubelet` keeps for the node selected by the runtime endpoint
//! (`-r/--runtime-endpoint`, `CONTAINER_RUNTIME_ENDPOINT`), with real crictl's output shapes and messages.
//!
//! Subcommands: ps, inspect, logs, stop, rm, exec, version. `ps --name` takes a Go-regexp subset (see
//! `etcd_lab::cri::regex_matches`).

use etcd_lab::cri::{self, Container, State};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: crictl [-r ENDPOINT] [--timeout D] [--debug] COMMAND [ARGS]
commands (lab emulation):
  ps [-a] [-q] [--label k=v]... [--name RE] [--state S] [--id P] [--pod P] [-o json|yaml|table] [-l] [-n N]
  inspect [-o json|yaml] ID...
  logs [--tail N] [-t] [-p] ID
  stop [-t SECONDS] ID...
  rm [-f] [-k] ID...
  exec [-i] [-t] [-s] ID CMD [ARG...]
  version";

/// Failure of a subcommand: message for stderr and exit code.
struct Fail(String, u8);

type Res<T> = Result<T, Fail>;

fn fail<T>(msg: impl Into<String>) -> Res<T> {
    Err(Fail(msg.into(), 1))
}

struct Flag {
    names: &'static [&'static str],
    value: bool,
}

const fn bool_flag(names: &'static [&'static str]) -> Flag {
    Flag { names, value: false }
}

const fn value_flag(names: &'static [&'static str]) -> Flag {
    Flag { names, value: true }
}

#[derive(Default)]
struct Parsed {
    /// By the flag's first name (without dashes).
    flags: HashMap<&'static str, Vec<String>>,
    pos: Vec<String>,
}

impl Parsed {
    fn has(&self, name: &str) -> bool {
        self.flags.contains_key(name)
    }

    fn last(&self, name: &str) -> Option<&str> {
        self.flags.get(name).and_then(|v| v.last()).map(String::as_str)
    }

    fn all(&self, name: &str) -> &[String] {
        self.flags.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
}

fn undefined(a: &str) -> Fail {
    Fail(format!("flag provided but not defined: -{}", a.trim_start_matches('-').split('=').next().unwrap_or("")), 1)
}

/// urfave/cli-like parsing: `--x v`, `--x=v`, `-x v`, combined short booleans (`-aq`); with `stop_at_pos` the
/// first positional ends flag parsing (exec's command keeps its own flags).
fn parse_flags(args: &[String], specs: &[Flag], stop_at_pos: bool) -> Res<Parsed> {
    let find = |n: &str| specs.iter().find(|s| s.names.contains(&n));
    let mut p = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            p.pos.extend(args[i..].iter().cloned());
            break;
        }
        if !a.starts_with('-') || a == "-" {
            p.pos.push(a.clone());
            if stop_at_pos {
                p.pos.extend(args[i..].iter().cloned());
                break;
            }
            continue;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let spec = find(name).ok_or_else(|| undefined(a))?;
            let v = if spec.value {
                match inline {
                    Some(v) => v,
                    None => {
                        let v = args.get(i).cloned().ok_or_else(|| Fail(format!("flag needs an argument: {a}"), 1))?;
                        i += 1;
                        v
                    }
                }
            } else {
                inline.unwrap_or_default()
            };
            p.flags.entry(spec.names[0]).or_default().push(v);
            continue;
        }
        let shorts = &a[1..];
        for (at, c) in shorts.char_indices() {
            let mut buf = [0u8; 4];
            let spec = find(c.encode_utf8(&mut buf)).ok_or_else(|| undefined(a))?;
            if spec.value {
                let rest = shorts[at + c.len_utf8()..].trim_start_matches('=');
                let v = if !rest.is_empty() {
                    rest.to_string()
                } else {
                    let v = args.get(i).cloned().ok_or_else(|| Fail(format!("flag needs an argument: -{c}"), 1))?;
                    i += 1;
                    v
                };
                p.flags.entry(spec.names[0]).or_default().push(v);
                break;
            }
            p.flags.entry(spec.names[0]).or_default().push(String::new());
        }
    }
    Ok(p)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(Fail(msg, code)) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            ExitCode::from(code)
        }
    }
}

fn run(args: &[String]) -> Res<u8> {
    let globals = [
        value_flag(&["runtime-endpoint", "r"]),
        value_flag(&["image-endpoint", "i"]),
        value_flag(&["timeout", "t"]),
        value_flag(&["config", "c"]),
        bool_flag(&["debug", "D"]),
        bool_flag(&["version", "v"]),
        bool_flag(&["help", "h"]),
    ];
    let g = parse_flags(args, &globals, true)?;
    if g.has("version") {
        println!("crictl version v1.31.0-lab");
        return Ok(0);
    }
    let Some((cmd, rest)) = g.pos.split_first() else {
        println!("{USAGE}");
        return Ok(0);
    };
    if g.has("help") || cmd == "help" {
        println!("{USAGE}");
        return Ok(0);
    }
    let ep = endpoint(&g);
    let state_dir = cri::state_dir_from_endpoint(&ep);
    let known = ["ps", "inspect", "logs", "stop", "rm", "exec", "version"];
    if !known.contains(&cmd.as_str()) {
        return fail(format!("No help topic for '{cmd}'"));
    }
    if !state_dir.is_dir() {
        return fail(cri::connection_error(&ep));
    }
    match cmd.as_str() {
        "ps" => ps(&state_dir, rest),
        "inspect" => inspect(&state_dir, rest),
        "logs" => logs(&state_dir, rest),
        "stop" => stop_cmd(&state_dir, rest),
        "rm" => rm(&state_dir, rest),
        "exec" => exec(&state_dir, rest),
        _ => version(rest),
    }
}

/// Flag, then `CONTAINER_RUNTIME_ENDPOINT`, then `runtime-endpoint` of a config file named by `--config` or
/// `CRI_CONFIG_FILE`, then crictl's default.
fn endpoint(g: &Parsed) -> String {
    if let Some(ep) = g.last("runtime-endpoint") {
        return ep.to_string();
    }
    if let Ok(ep) = std::env::var("CONTAINER_RUNTIME_ENDPOINT")
        && !ep.is_empty()
    {
        return ep;
    }
    let config = g.last("config").map(str::to_string).or_else(|| std::env::var("CRI_CONFIG_FILE").ok());
    if let Some(path) = config
        && let Ok(text) = std::fs::read_to_string(path)
        && let Ok(v) = serde_yaml::from_str::<serde_yaml::Value>(&text)
        && let Some(ep) = v.get("runtime-endpoint").and_then(|e| e.as_str())
    {
        return ep.to_string();
    }
    cri::DEFAULT_ENDPOINT.to_string()
}

fn load(dir: &Path) -> Res<State> {
    cri::read_state(dir).map_err(|e| Fail(format!("lab crictl: reading state in {}: {e}", dir.display()), 1))
}

fn not_found(id: &str) -> String {
    format!("rpc error: code = NotFound desc = an error occurred when try to find container \"{id}\": not found")
}

/// Exact id or unique prefix, as containerd resolves ids.
fn lookup<'a>(st: &'a State, id: &str) -> Result<&'a Container, String> {
    if id.is_empty() {
        return Err("ID cannot be empty".into());
    }
    if let Some(c) = st.containers.iter().find(|c| c.id == id) {
        return Ok(c);
    }
    let mut hits = st.containers.iter().filter(|c| c.id.starts_with(id));
    match (hits.next(), hits.next()) {
        (Some(c), None) => Ok(c),
        (Some(_), Some(_)) => Err(format!("rpc error: code = Unknown desc = ambiguous ID \"{id}\"")),
        _ => Err(not_found(id)),
    }
}

fn labels(c: &Container) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("io.kubernetes.container.name".to_string(), c.name.clone()),
        ("io.kubernetes.pod.name".to_string(), c.pod_name.clone()),
        ("io.kubernetes.pod.namespace".to_string(), c.namespace.clone()),
        ("io.kubernetes.pod.uid".to_string(), c.pod_uid.clone()),
    ])
}

fn annotations(c: &Container) -> BTreeMap<String, String> {
    // the kubelet's hash of the container spec: stable while the spec is
    let mut h = DefaultHasher::new();
    (&c.name, &c.image, &c.command).hash(&mut h);
    BTreeMap::from([
        ("io.kubernetes.container.hash".to_string(), format!("{:08x}", h.finish() as u32)),
        ("io.kubernetes.container.restartCount".to_string(), c.attempt.to_string()),
        ("io.kubernetes.container.terminationMessagePath".to_string(), "/dev/termination-log".to_string()),
        ("io.kubernetes.container.terminationMessagePolicy".to_string(), "File".to_string()),
        ("io.kubernetes.pod.terminationGracePeriod".to_string(), "30".to_string()),
    ])
}

#[derive(Serialize)]
struct Metadata {
    name: String,
    attempt: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ImageSpec {
    image: String,
    annotations: BTreeMap<String, String>,
    user_specified_image: String,
    runtime_handler: String,
    image_ref: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PsContainer {
    id: String,
    pod_sandbox_id: String,
    metadata: Metadata,
    image: ImageSpec,
    image_ref: String,
    state: String,
    /// protojson prints int64 as a string
    created_at: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    image_id: String,
}

#[derive(Serialize)]
struct PsOutput {
    containers: Vec<PsContainer>,
}

fn ps_container(c: &Container) -> PsContainer {
    PsContainer {
        id: c.id.clone(),
        pod_sandbox_id: c.pod_sandbox_id.clone(),
        metadata: Metadata { name: c.name.clone(), attempt: c.attempt },
        image: ImageSpec {
            image: c.image_ref.clone(),
            annotations: BTreeMap::new(),
            user_specified_image: String::new(),
            runtime_handler: String::new(),
            image_ref: String::new(),
        },
        image_ref: c.image_ref.clone(),
        state: c.state.clone(),
        created_at: c.created_at.to_string(),
        labels: labels(c),
        annotations: annotations(c),
        image_id: String::new(),
    }
}

fn ps(dir: &Path, args: &[String]) -> Res<u8> {
    let specs = [
        bool_flag(&["all", "a"]),
        bool_flag(&["quiet", "q"]),
        value_flag(&["label"]),
        value_flag(&["name"]),
        value_flag(&["state", "s"]),
        value_flag(&["id"]),
        value_flag(&["pod", "p"]),
        value_flag(&["image"]),
        value_flag(&["namespace"]),
        value_flag(&["output", "o"]),
        bool_flag(&["latest", "l"]),
        value_flag(&["last", "n"]),
        bool_flag(&["no-trunc"]),
        bool_flag(&["verbose", "v"]),
        bool_flag(&["resolve-image-path", "r"]),
    ];
    let p = parse_flags(args, &specs, false)?;
    if !p.pos.is_empty() {
        return fail(format!("crictl ps takes no arguments, got {:?}", p.pos));
    }
    let output = p.last("output").unwrap_or("table");
    if !["json", "yaml", "table"].contains(&output) {
        return fail(format!("unsupported output format {output:?}"));
    }
    let last: usize = match p.last("last") {
        Some(n) => n.parse().map_err(|_| Fail(format!("invalid value {n:?} for flag -n: parse error"), 1))?,
        None => 0,
    };
    let latest = p.has("latest");
    let state = match p.last("state") {
        Some(s) => Some(match s.to_ascii_lowercase().as_str() {
            "running" => cri::CONTAINER_RUNNING,
            "exited" => cri::CONTAINER_EXITED,
            "created" => cri::CONTAINER_CREATED,
            "unknown" => cri::CONTAINER_UNKNOWN,
            _ => return fail("--state should be one of created, running, exited or unknown"),
        }),
        None if !p.has("all") && !latest && last == 0 => Some(cri::CONTAINER_RUNNING),
        None => None,
    };
    let mut want_labels = Vec::new();
    for l in p.all("label") {
        match l.split_once('=') {
            Some((k, v)) => want_labels.push((k.to_string(), v.to_string())),
            None => return fail(format!("incorrectly specified label: {l}")),
        }
    }
    // a bad pattern fails even when nothing is listed, as Go's regexp.Compile does
    for re in [p.last("name"), p.last("namespace")].into_iter().flatten() {
        cri::regex_matches(re, "").map_err(|e| Fail(e, 1))?;
    }
    let st = load(dir)?;
    let mut list: Vec<&Container> = Vec::new();
    for c in &st.containers {
        if state.is_some_and(|s| c.state != s)
            || p.last("id").is_some_and(|id| !c.id.starts_with(id))
            || p.last("pod").is_some_and(|id| !c.pod_sandbox_id.starts_with(id))
            || p.last("image").is_some_and(|i| c.image != i && c.image_ref != i)
        {
            continue;
        }
        let l = labels(c);
        if !want_labels.iter().all(|(k, v)| l.get(k) == Some(v)) {
            continue;
        }
        if let Some(re) = p.last("name")
            && !cri::regex_matches(re, &c.name).map_err(|e| Fail(e, 1))?
        {
            continue;
        }
        if let Some(re) = p.last("namespace")
            && !cri::regex_matches(re, &c.namespace).map_err(|e| Fail(e, 1))?
        {
            continue;
        }
        list.push(c);
    }
    list.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    if latest {
        list.truncate(1);
    } else if last > 0 {
        list.truncate(last);
    }
    let mut out = String::new();
    if p.has("quiet") {
        for c in &list {
            out.push_str(&c.id);
            out.push('\n');
        }
    } else {
        match output {
            "json" => {
                let doc = PsOutput { containers: list.iter().map(|c| ps_container(c)).collect() };
                out = serde_json::to_string_pretty(&doc).expect("serializable") + "\n";
            }
            "yaml" => {
                let doc = PsOutput { containers: list.iter().map(|c| ps_container(c)).collect() };
                out = serde_yaml::to_string(&doc).expect("serializable");
            }
            _ => out = ps_table(&list, p.has("no-trunc"), p.has("resolve-image-path")),
        }
    }
    print_out(&out);
    Ok(0)
}

fn trunc(id: &str, no_trunc: bool) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    if no_trunc { id.to_string() } else { id.chars().take(13).collect() }
}

fn state_word(s: &str) -> &'static str {
    match s {
        cri::CONTAINER_RUNNING => "Running",
        cri::CONTAINER_EXITED => "Exited",
        cri::CONTAINER_CREATED => "Created",
        _ => "Unknown",
    }
}

fn ps_table(list: &[&Container], no_trunc: bool, image_path: bool) -> String {
    let now = cri::now_nanos();
    let mut rows =
        vec![["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD"].map(String::from).to_vec()];
    for c in list {
        let age = Duration::from_nanos(now.saturating_sub(c.created_at));
        rows.push(vec![
            trunc(&c.id, no_trunc),
            if image_path { c.image.clone() } else { trunc(&c.image_ref, no_trunc) },
            format!("{} ago", cri::human_duration(age)),
            state_word(&c.state).to_string(),
            c.name.clone(),
            c.attempt.to_string(),
            trunc(&c.pod_sandbox_id, no_trunc),
            c.pod_name.clone(),
        ]);
    }
    tabwrite(&rows)
}

/// Go's tabwriter as crictl configures it (minwidth 20, padding 3); the last column is not padded.
fn tabwrite(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count() + 3).max().unwrap_or(0).max(20))
        .collect();
    let mut out = String::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < r.len() {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

fn print_out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InspectImage {
    annotations: BTreeMap<String, String>,
    image: String,
    runtime_handler: String,
    user_specified_image: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InspectStatus {
    id: String,
    metadata: InspectMeta,
    state: String,
    created_at: String,
    started_at: String,
    finished_at: String,
    exit_code: i32,
    image: InspectImage,
    image_ref: String,
    reason: String,
    message: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    mounts: Vec<serde_json::Value>,
    log_path: String,
}

#[derive(Serialize)]
struct InspectMeta {
    attempt: u32,
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InspectInfo {
    #[serde(rename = "sandboxID")]
    sandbox_id: String,
    pid: u32,
    runtime_spec: serde_json::Value,
}

#[derive(Serialize)]
struct InspectDoc {
    status: InspectStatus,
    info: InspectInfo,
}

fn inspect_doc(c: &Container) -> InspectDoc {
    let exited = c.state == cri::CONTAINER_EXITED;
    let reason = match (exited, c.exit_code) {
        (false, _) => "",
        (true, 0) => "Completed",
        (true, _) => "Error",
    };
    let repo = c.image.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).map(|(r, _)| r).unwrap_or(&c.image);
    InspectDoc {
        status: InspectStatus {
            id: c.id.clone(),
            metadata: InspectMeta { attempt: c.attempt, name: c.name.clone() },
            state: c.state.clone(),
            created_at: cri::rfc3339_or_zero(c.created_at),
            started_at: cri::rfc3339_or_zero(c.started_at),
            finished_at: cri::rfc3339_or_zero(if exited { c.finished_at } else { 0 }),
            exit_code: if exited { c.exit_code } else { 0 },
            image: InspectImage {
                annotations: BTreeMap::new(),
                image: c.image.clone(),
                runtime_handler: String::new(),
                user_specified_image: String::new(),
            },
            image_ref: format!("{repo}@{}", c.image_ref),
            reason: reason.to_string(),
            message: String::new(),
            labels: labels(c),
            annotations: annotations(c),
            mounts: Vec::new(),
            log_path: c.log_path.clone(),
        },
        info: InspectInfo {
            sandbox_id: c.pod_sandbox_id.clone(),
            pid: if c.is_running() { c.pid } else { 0 },
            runtime_spec: serde_json::json!({}),
        },
    }
}

fn inspect(dir: &Path, args: &[String]) -> Res<u8> {
    let specs = [value_flag(&["output", "o"]), bool_flag(&["quiet", "q"]), value_flag(&["template"])];
    let p = parse_flags(args, &specs, false)?;
    let output = p.last("output").unwrap_or("json");
    if !["json", "yaml", ""].contains(&output) {
        return fail(format!("unsupported output format {output:?}"));
    }
    if p.pos.is_empty() {
        return fail("ID cannot be empty");
    }
    let st = load(dir)?;
    for id in &p.pos {
        let c = lookup(&st, id).map_err(|e| Fail(format!("getting the status of the container {id:?}: {e}"), 1))?;
        let doc = inspect_doc(c);
        let text = if output == "yaml" {
            serde_yaml::to_string(&doc).expect("serializable")
        } else {
            serde_json::to_string_pretty(&doc).expect("serializable") + "\n"
        };
        print_out(&text);
    }
    Ok(0)
}

fn logs(dir: &Path, args: &[String]) -> Res<u8> {
    let specs = [
        value_flag(&["tail"]),
        bool_flag(&["follow", "f"]),
        bool_flag(&["previous", "p"]),
        bool_flag(&["timestamps", "t"]),
        value_flag(&["since"]),
        value_flag(&["limit-bytes"]),
    ];
    let p = parse_flags(args, &specs, false)?;
    let [id] = p.pos.as_slice() else {
        return fail("ID cannot be empty");
    };
    let tail: i64 = match p.last("tail") {
        Some(t) => t.parse().map_err(|_| Fail(format!("invalid value {t:?} for flag -tail: parse error"), 1))?,
        None => -1,
    };
    let st = load(dir)?;
    let c = lookup(&st, id).map_err(|e| Fail(format!("failed to get container status {id:?}: {e}"), 1))?;
    let mut path = PathBuf::from(&c.log_path);
    if p.has("previous") {
        if c.attempt == 0 {
            return fail(format!("previous terminated container {:?} not found", c.name));
        }
        path.set_file_name(format!("{}.log", c.attempt - 1));
    }
    let bytes = std::fs::read(&path).map_err(|e| {
        Fail(format!("failed to try resolving symlinks in path {:?}: lstat {}: {e}", path.display(), path.display()), 1)
    })?;
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    if tail >= 0 {
        let skip = lines.len().saturating_sub(tail as usize);
        lines.drain(..skip);
    }
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    for line in lines {
        let Some(l) = cri::parse_cri_log_line(line) else {
            continue;
        };
        let w: &mut dyn Write = if l.stream == b"stdout" { &mut out } else { &mut err };
        if p.has("timestamps") {
            let _ = w.write_all(l.time);
            let _ = w.write_all(b" ");
        }
        let _ = w.write_all(l.content);
        if l.tag != b"P" {
            let _ = w.write_all(b"\n");
        }
    }
    let _ = out.flush();
    Ok(0)
}

/// Stops one container like containerd: SIGTERM, SIGKILL after `timeout` (0 = at once), then marks it exited.
fn stop_one(dir: &Path, id: &str, timeout: Duration) -> Res<()> {
    let st = load(dir)?;
    let c = lookup(&st, id).map_err(|e| Fail(format!("stopping the container {id:?}: {e}"), 1))?;
    let (full, pid, ticks) = (c.id.clone(), c.pid, c.pid_start_ticks);
    let mut killed = false;
    if c.is_running() && cri::pid_alive(pid, ticks) {
        if !timeout.is_zero() {
            cri::signal(pid, libc::SIGTERM);
            wait_gone(pid, ticks, timeout);
        }
        if cri::pid_alive(pid, ticks) {
            killed = true;
            cri::signal(pid, libc::SIGKILL);
            if !wait_gone(pid, ticks, Duration::from_secs(10)) {
                return fail(format!(
                    "stopping the container {id:?}: rpc error: code = DeadlineExceeded desc = pid {pid} did not die"
                ));
            }
        }
    }
    cri::with_state(dir, |st| {
        if let Some(c) = st.containers.iter_mut().find(|c| c.id == full)
            && c.is_running()
        {
            // the kubelet, which reaps the process, overwrites this with the real status
            c.state = cri::CONTAINER_EXITED.into();
            c.finished_at = cri::now_nanos();
            c.exit_code = if killed { 137 } else { 143 };
            c.pid = 0;
            c.pid_start_ticks = 0;
        }
    })
    .map_err(|e| Fail(format!("lab crictl: updating state: {e}"), 1))?;
    println!("{id}");
    Ok(())
}

/// Not the parent: poll /proc until the pid is gone or a zombie.
fn wait_gone(pid: u32, ticks: u64, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while cri::pid_alive(pid, ticks) {
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn parse_secs(v: &str) -> Res<Duration> {
    v.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| Fail(format!("invalid value {v:?} for flag -timeout: parse error"), 1))
}

fn all_ids(dir: &Path) -> Res<Vec<String>> {
    Ok(load(dir)?.containers.into_iter().map(|c| c.id).collect())
}

fn stop_cmd(dir: &Path, args: &[String]) -> Res<u8> {
    let specs = [value_flag(&["timeout", "t"]), bool_flag(&["all", "a"])];
    let p = parse_flags(args, &specs, false)?;
    let timeout = match p.last("timeout") {
        Some(v) => parse_secs(v)?,
        // crictl's default: no grace, the runtime kills at once.
        None => Duration::ZERO,
    };
    let ids = if p.has("all") { all_ids(dir)? } else { p.pos.clone() };
    if ids.is_empty() {
        return fail("ID cannot be empty");
    }
    for id in &ids {
        stop_one(dir, id, timeout)?;
    }
    Ok(0)
}

fn rm(dir: &Path, args: &[String]) -> Res<u8> {
    let specs = [bool_flag(&["force", "f"]), bool_flag(&["all", "a"]), bool_flag(&["keep-logs", "k"])];
    let p = parse_flags(args, &specs, false)?;
    let ids = if p.has("all") { all_ids(dir)? } else { p.pos.clone() };
    if ids.is_empty() {
        return fail("ID cannot be empty");
    }
    for id in &ids {
        let st = load(dir)?;
        let c = lookup(&st, id).map_err(|e| Fail(format!("removing container {id:?}: {e}"), 1))?;
        let full = c.id.clone();
        if c.is_running() {
            if !p.has("force") {
                return fail(format!(
                    "removing container {id:?}: rpc error: code = Unknown desc = failed to remove container \
                     {full:?}: cannot delete running task {full}: failed precondition"
                ));
            }
            // like crictl: StopContainer with timeout 0 (which prints the id too)
            stop_one(dir, id, Duration::ZERO)?;
        }
        let removed = cri::with_state(dir, |st| {
            let i = st.containers.iter().position(|c| c.id == full)?;
            Some(st.containers.remove(i))
        })
        .map_err(|e| Fail(format!("lab crictl: updating state: {e}"), 1))?;
        if let Some(c) = removed
            && !p.has("keep-logs")
        {
            let _ = std::fs::remove_file(&c.log_path);
        }
        println!("{id}");
    }
    Ok(0)
}

fn exec(dir: &Path, args: &[String]) -> Res<u8> {
    let specs = [
        bool_flag(&["interactive", "i"]),
        bool_flag(&["tty", "t"]),
        bool_flag(&["sync", "s"]),
        value_flag(&["timeout"]),
        value_flag(&["transport"]),
    ];
    let p = parse_flags(args, &specs, true)?;
    let Some((id, cmdline)) = p.pos.split_first() else {
        return fail("ID cannot be empty");
    };
    let Some((cmd, cmd_args)) = cmdline.split_first() else {
        return fail("command is not specified");
    };
    let st = load(dir)?;
    let c = lookup(&st, id).map_err(|e| Fail(format!("execing command in container: {e}"), 1))?;
    if !c.is_running() || !cri::pid_alive(c.pid, c.pid_start_ticks) {
        return fail(format!(
            "execing command in container: rpc error: code = Unknown desc = container {} is in {} state",
            c.id, c.state
        ));
    }
    let Some(tool) = cri::etcd_tool_name(cmd) else {
        return Err(not_in_image(cmd));
    };
    let exe = Path::new(&c.bin_dir).join(tool);
    if !exe.is_file() {
        // etcd 3.4 images have no etcdutl
        return Err(not_in_image(cmd));
    }
    let work_dir = if Path::new(&c.work_dir).is_dir() { c.work_dir.as_str() } else { "/" };
    let status = Command::new(&exe)
        .args(cmd_args.iter().map(|a| cri::map_container_path(a, &c.mounts)))
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(c.env.iter().map(|(k, v)| (k, v)))
        .current_dir(work_dir)
        .stdin(if p.has("interactive") { Stdio::inherit() } else { Stdio::null() })
        .status()
        .map_err(|e| Fail(format!("execing command in container: {}: {e}", exe.display()), 126))?;
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(code.clamp(0, 255) as u8)
}

/// The image is distroless: nothing but the etcd tools can run in it.
fn not_in_image(cmd: &str) -> Fail {
    Fail(
        format!(
            "OCI runtime exec failed: exec failed: unable to start container process: exec: \"{cmd}\": executable \
             file not found in $PATH: unknown"
        ),
        126,
    )
}

fn version(args: &[String]) -> Res<u8> {
    if let Some(a) = args.first() {
        return Err(if a.starts_with('-') { undefined(a) } else { Fail(format!("unexpected argument {a:?}"), 1) });
    }
    println!("Version:  0.1.0\nRuntimeName:  containerd\nRuntimeVersion:  v1.7.0-lab\nRuntimeApiVersion:  v1");
    Ok(0)
}
