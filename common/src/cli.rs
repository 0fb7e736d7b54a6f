//! The flags every tool shares (etcdctl names, `ETCDCTL_*` env fallbacks), argument parsing with
//! the documented usage exit code, and the thin `main` every tool calls.

use crate::exit::{self, coded};
use anyhow::Result;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Adds the shared flags to a tool's (sub)command struct and implements [`HasShared`] for it.
/// argh has no flattening, so the fields are spliced in here, once, for every tool.
///
/// `with_shared_flags! { changing ... }` also adds `--dry-run` and `--yes`, for commands that
/// change something.
#[macro_export]
macro_rules! with_shared_flags {
    (changing $(#[$meta:meta])* $vis:vis struct $name:ident { $($body:tt)* }) => {
        $crate::with_shared_flags! {
            $(#[$meta])*
            $vis struct $name {
                $($body)*
                /// print the plan (every precondition checked) and change nothing
                #[argh(switch)]
                pub dry_run: bool,
                /// do it without asking (needed when not on a terminal)
                #[argh(switch)]
                pub yes: bool,
            }
        }
    };
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($body:tt)* }) => {
        #[derive(argh::FromArgs, Debug)]
        $(#[$meta])*
        $vis struct $name {
            $($body)*
            /// etcd client URLs, comma-separated (env ETCDCTL_ENDPOINTS; default: the manifest's
            /// --advertise-client-urls, else https://127.0.0.1:2379)
            #[argh(option)]
            pub endpoints: Option<String>,
            /// CA bundle (env ETCDCTL_CACERT; default <rootfs>/etc/kubernetes/pki/etcd/ca.crt)
            #[argh(option)]
            pub cacert: Option<String>,
            /// client certificate (env ETCDCTL_CERT; default .../pki/etcd/healthcheck-client.crt)
            #[argh(option)]
            pub cert: Option<String>,
            /// client key (env ETCDCTL_KEY; default .../pki/etcd/healthcheck-client.key)
            #[argh(option)]
            pub key: Option<String>,
            /// time to connect to one member, e.g. 2s (env ETCDCTL_DIAL_TIMEOUT; default 2s)
            #[argh(option)]
            pub dial_timeout: Option<String>,
            /// time for one request, e.g. 5s (env ETCDCTL_COMMAND_TIMEOUT; default 5s)
            #[argh(option)]
            pub command_timeout: Option<String>,
            /// output: table or json (default: table on a terminal, json when piped)
            #[argh(option, short = 'w')]
            pub write_out: Option<String>,
            /// root of the host filesystem; prefixes every host path (env ETCD_ROOTFS; default /)
            #[argh(option)]
            pub rootfs: Option<String>,
            /// static pod manifest (default <rootfs>/etc/kubernetes/manifests/etcd.yaml)
            #[argh(option)]
            pub manifest: Option<String>,
            /// crictl executable (env CRICTL; default crictl from PATH)
            #[argh(option)]
            pub crictl: Option<String>,
        }

        impl $crate::cli::HasShared for $name {
            fn shared_flags(&self) -> $crate::cli::SharedFlags {
                $crate::cli::SharedFlags {
                    endpoints: self.endpoints.clone(),
                    cacert: self.cacert.clone(),
                    cert: self.cert.clone(),
                    key: self.key.clone(),
                    dial_timeout: self.dial_timeout.clone(),
                    command_timeout: self.command_timeout.clone(),
                    write_out: self.write_out.clone(),
                    rootfs: self.rootfs.clone(),
                    manifest: self.manifest.clone(),
                    crictl: self.crictl.clone(),
                }
            }
        }
    };
}

/// A tool made of subcommands: `Args` (the doc comment and `#[argh(...)]` given), the `Cmd` enum,
/// the shared flags of whichever subcommand was given, and `run`, which hands the parsed
/// subcommand to its function.
///
/// ```ignore
/// common::subcommands! {
///     /// What the tool does.
///     #[argh(note = "Exit codes: ...")]
///     Inspect(inspect::InspectArgs) => inspect::run,
///     Pick(pick::PickArgs) => pick::run,
/// }
/// ```
#[macro_export]
macro_rules! subcommands {
    ($(#[$meta:meta])* $($variant:ident($args:ty) => $run:path),+ $(,)?) => {
        #[derive(::argh::FromArgs, Debug)]
        $(#[$meta])*
        pub struct Args {
            #[argh(subcommand)]
            pub cmd: Cmd,
        }

        #[derive(::argh::FromArgs, Debug)]
        #[argh(subcommand)]
        pub enum Cmd {
            $($variant($args)),+
        }

        impl $crate::cli::HasShared for Args {
            fn shared_flags(&self) -> $crate::cli::SharedFlags {
                match &self.cmd {
                    $(Cmd::$variant(a) => $crate::cli::HasShared::shared_flags(a)),+
                }
            }
        }

        pub fn run(args: Args) -> ::anyhow::Result<u8> {
            match args.cmd {
                $(Cmd::$variant(a) => $run(a)),+
            }
        }
    };
}

/// The shared flags as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct SharedFlags {
    pub endpoints: Option<String>,
    pub cacert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub dial_timeout: Option<String>,
    pub command_timeout: Option<String>,
    pub write_out: Option<String>,
    pub rootfs: Option<String>,
    pub manifest: Option<String>,
    pub crictl: Option<String>,
}

pub trait HasShared {
    fn shared_flags(&self) -> SharedFlags;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

/// Client TLS material locations (read later by `client`, which names the path on failure).
#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Where each path came from, for errors: the flag, or the variable when the environment
    /// gave it (an `ETCDCTL_*` left in the shell is easily forgotten).
    pub origin: TlsOrigin,
}

#[derive(Debug, Clone)]
pub struct TlsOrigin {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// The shared settings after env fallbacks and defaults.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Endpoints given by flag or env; `None` means "find them" (manifest, then the default).
    pub endpoints: Option<Vec<String>>,
    pub tls: TlsPaths,
    pub dial_timeout: Duration,
    pub command_timeout: Duration,
    pub output: Output,
    pub rootfs: PathBuf,
    pub manifest: PathBuf,
    pub crictl: String,
}

pub const DEFAULT_ENDPOINT: &str = "https://127.0.0.1:2379";
pub const PKI_DIR: &str = "/etc/kubernetes/pki/etcd";
pub const MANIFEST: &str = "/etc/kubernetes/manifests/etcd.yaml";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A path as a document records it: absolute, so that the document still names the file when
/// read from another dir (a pipeline, a stored document, a cron job's log).
pub fn shown_path(p: &Path) -> String {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string()
}

/// `path` (absolute, as on the host) under `rootfs`.
pub fn host_path(rootfs: &Path, path: &str) -> PathBuf {
    rootfs.join(path.trim_start_matches('/'))
}

/// Splits a comma-separated URL list, trimming blanks.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

impl SharedFlags {
    /// The output format, without failing: used to decide how to report an error.
    pub fn output_lenient(&self) -> Output {
        parse_output(self.write_out.as_deref()).unwrap_or(Output::Table)
    }

    pub fn resolve(&self) -> Result<Shared> {
        let rootfs = PathBuf::from(self.rootfs.clone().or_else(|| env("ETCD_ROOTFS")).unwrap_or("/".into()));
        if !rootfs.is_dir() {
            return Err(coded(exit::USAGE, format!("--rootfs {}: not a directory", rootfs.display())));
        }
        // An error names where the value came from: the flag, or the environment.
        let given = |flag: &Option<String>, name: &str, var: &str| match (flag, env(var)) {
            (Some(v), _) => Some((v.clone(), format!("--{name}"))),
            (None, Some(v)) => Some((v, format!("{var} (environment)"))),
            (None, None) => None,
        };
        let endpoints = match given(&self.endpoints, "endpoints", "ETCDCTL_ENDPOINTS") {
            Some((list, source)) => {
                // A bare host:port is https, as etcdctl takes it with TLS credentials (always here).
                let list: Vec<String> = split_list(&list)
                    .into_iter()
                    .map(|e| if e.contains("://") { e } else { format!("https://{e}") })
                    .collect();
                for e in &list {
                    check_url(e).map_err(|m| coded(exit::USAGE, format!("{source}: {m}")))?;
                }
                if list.is_empty() {
                    return Err(coded(exit::USAGE, format!("{source}: empty list")));
                }
                Some(list)
            }
            None => None,
        };
        let pki = |file: &str| host_path(&rootfs, &format!("{PKI_DIR}/{file}"));
        let path_or = |flag: &Option<String>, name: &str, var: &str, file: &str| match given(flag, name, var) {
            Some((v, source)) => (PathBuf::from(v), source),
            None => (pki(file), format!("--{name}")),
        };
        let (ca, ca_from) = path_or(&self.cacert, "cacert", "ETCDCTL_CACERT", "ca.crt");
        let (cert, cert_from) = path_or(&self.cert, "cert", "ETCDCTL_CERT", "healthcheck-client.crt");
        let (key, key_from) = path_or(&self.key, "key", "ETCDCTL_KEY", "healthcheck-client.key");
        let tls = TlsPaths { ca, cert, key, origin: TlsOrigin { ca: ca_from, cert: cert_from, key: key_from } };
        let duration = |flag: &Option<String>, name: &str, var: &str, default: Duration| -> Result<Duration> {
            match given(flag, name, var) {
                None => Ok(default),
                // No answer comes within no time: a zero timeout would report live members dead.
                Some((v, source)) => wait_of(&source, &v),
            }
        };
        let manifest = match &self.manifest {
            None => host_path(&rootfs, MANIFEST),
            Some(m) => {
                // --manifest is taken as given, not under --rootfs: a path meant under it names
                // no file while the node's manifest is there, and every procedure would then see
                // a node without one (and clean would move a running member's data dir aside).
                let default = host_path(&rootfs, MANIFEST);
                let given = PathBuf::from(m);
                if !given.exists() && default.exists() && given != default {
                    return Err(coded(
                        exit::USAGE,
                        format!(
                            "--manifest {m}: no such file, but {} is there (--manifest is not taken under \
                             --rootfs: give its whole path, or leave the flag out)",
                            default.display()
                        ),
                    ));
                }
                given
            }
        };
        Ok(Shared {
            endpoints,
            tls,
            dial_timeout: duration(&self.dial_timeout, "dial-timeout", "ETCDCTL_DIAL_TIMEOUT", Duration::from_secs(2))?,
            command_timeout: duration(
                &self.command_timeout,
                "command-timeout",
                "ETCDCTL_COMMAND_TIMEOUT",
                Duration::from_secs(5),
            )?,
            output: parse_output(self.write_out.as_deref())?,
            manifest,
            crictl: self.crictl.clone().or_else(|| env("CRICTL")).unwrap_or_else(|| "crictl".into()),
            rootfs,
        })
    }
}

fn parse_output(v: Option<&str>) -> Result<Output> {
    match v {
        None if std::io::stdout().is_terminal() => Ok(Output::Table),
        None => Ok(Output::Json),
        Some("table") => Ok(Output::Table),
        Some("json") => Ok(Output::Json),
        Some(other) => Err(coded(exit::USAGE, format!("-w/--write-out: unknown value {other:?} (use table or json)"))),
    }
}

/// A URL must be http(s)://host:port (client endpoints given bare get https:// first, in `resolve`).
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    let hostport = rest.trim_end_matches('/');
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, ""));
    if port.is_empty() || port.parse::<u16>().is_err() || hostport.contains('/') || host.is_empty() {
        return Err(format!("{url:?} has no host:port"));
    }
    // An IPv6 address goes in brackets: in https://::1:2379 the port cannot be told apart.
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ip) if ip.parse::<std::net::Ipv6Addr>().is_err() => Err(format!("{url:?}: {ip:?} is not an IPv6 address")),
        None if host.contains([':', '[', ']']) => {
            Err(format!("{url:?}: an IPv6 address needs brackets, e.g. https://[::1]:2379"))
        }
        _ => Ok(()),
    }
}

/// etcdutl's pair `--bump-revision N --mark-compacted`: together or not at all, and N within the
/// int64 etcd keeps revisions in.
pub fn check_bump(bump: Option<u64>, mark_compacted: bool) -> Result<()> {
    if bump.is_some_and(|b| b > 0) != mark_compacted {
        return Err(coded(exit::USAGE, "--bump-revision N and --mark-compacted go together"));
    }
    match bump {
        Some(b) if b > i64::MAX as u64 => {
            Err(coded(exit::USAGE, format!("--bump-revision {b}: more than etcd's largest revision ({})", i64::MAX)))
        }
        _ => Ok(()),
    }
}

/// A duration flag's value, or the usage error naming the flag (`--timeout: invalid duration ...`).
pub fn duration_flag(flag: &str, value: &str) -> Result<Duration> {
    parse_duration(value).map_err(|m| coded(exit::USAGE, format!("--{flag}: {m}")))
}

/// [`duration_flag`] for a wait: zero is no wait at all (a clean would move the manifest out and
/// give up at once; a recover would take the flag out before the kubelet could act on it).
pub fn timeout_flag(flag: &str, value: &str) -> Result<Duration> {
    wait_of(&format!("--{flag}"), value)
}

/// A wait's `value` as given by `source` (a flag, or a variable): a duration, and not zero.
fn wait_of(source: &str, value: &str) -> Result<Duration> {
    match parse_duration(value) {
        Ok(d) if d.is_zero() => Err(coded(exit::USAGE, format!("{source}: {value:?} is no time at all"))),
        Ok(d) => Ok(d),
        Err(m) => Err(coded(exit::USAGE, format!("{source}: {m}"))),
    }
}

/// The host of a URL: no scheme, port, trailing slash or IPv6 brackets.
pub fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r).trim_end_matches('/');
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

const MAX_DURATION_SECS: f64 = 365.0 * 86_400.0;

/// Go-style durations as etcdctl takes them: `2s`, `500ms`, `1m30s`, `1.5s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (e.g. 2s, 500ms, 1m)");
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    // Longer would overflow a deadline (or Duration itself): no wait here needs a year.
    if total > MAX_DURATION_SECS {
        return Err(format!("{s:?} is longer than a year"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Destructive steps need consent: `--yes`, or "y" at a prompt on a terminal. Without a terminal
/// and without `--yes` the answer is a refusal (exit 5), so cron jobs never hang on a prompt.
pub fn confirm(yes: bool, question: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(coded(exit::REFUSED, format!("{question}: refusing without --yes (not a terminal)")));
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    match answer.trim().to_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(coded(exit::REFUSED, format!("{question}: not confirmed"))),
    }
}

/// What a dry run prints when the change is done already: a Plan with no steps (exit 0), as the
/// real run changes nothing either.
pub fn nothing_to_do(title: &str, detail: String, output: Output) -> Result<u8> {
    let mut plan = crate::report::Plan::new(title);
    plan.check("nothing to do", true, detail);
    Ok(plan_gate(&plan, output, true)?.unwrap_or(crate::exit::OK))
}

/// The gate in front of every change: with `--dry-run` print the plan and stop (exit 0, or 5
/// when a precondition failed); without it, a failed precondition refuses (exit 5) with the reasons.
/// `Ok(None)` means go on.
pub fn plan_gate(plan: &crate::report::Plan, output: Output, dry_run: bool) -> Result<Option<u8>> {
    if dry_run {
        emit(plan, output, crate::report::Plan::render_table);
        return Ok(Some(if plan.failed().is_empty() { exit::OK } else { exit::REFUSED }));
    }
    let failed = plan.failed();
    if !failed.is_empty() {
        // What was found first, then the condition it fails: the condition alone ("this node's
        // member does not answer") read in a hurry says the opposite of what is true.
        let reasons: Vec<String> = failed.iter().map(|c| format!("{} (needed: {})", c.detail, c.check)).collect();
        return Err(coded(exit::REFUSED, format!("refused: {}", reasons.join("; "))));
    }
    Ok(None)
}

/// Prints a document: JSON, or the table its renderer makes.
pub fn emit<T: serde::Serialize>(doc: &T, output: Output, table: impl FnOnce(&T) -> String) {
    match output {
        Output::Json => crate::report::print_json(doc),
        Output::Table => {
            let _ = write!(std::io::stdout(), "{}", table(doc));
        }
    }
}

/// What a lone "-" argument becomes when argh would not take it (see [`parse_args`]).
const STDIN_MARK: &str = "\u{0}-";

/// A file named on the command line (a snapshot to read): missing or not a regular file is a
/// usage error (2) naming it, not a corrupt file (6).
pub fn input_file(what: &str, path: &str) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(crate::exit::coded(crate::exit::USAGE, format!("{what} {path}: not a regular file"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(crate::exit::coded(crate::exit::USAGE, format!("{what} {path}: no such file")))
        }
        Err(e) => Err(anyhow::anyhow!("{what} {path}: {e}")),
    }
}

/// "-" (or its parse-time stand-in) means stdin.
pub fn is_stdin(arg: &str) -> bool {
    arg == "-" || arg == STDIN_MARK
}

/// etcdctl users write `--endpoints=URL`; argh only takes `--endpoints URL`: split them (not
/// after a `--`).
fn split_assignments(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut options_done = false;
    for a in args {
        match a.split_once('=') {
            Some((flag, value)) if !options_done && a.starts_with('-') && flag.len() > 1 => {
                out.push(flag.to_string());
                out.push(value.to_string());
            }
            _ => {
                options_done |= a == "--";
                out.push(a.clone());
            }
        }
    }
    out
}

/// Parses the command line; `--help` prints and exits 0, a usage error exits 2. `aliases` rename a
/// subcommand (first argument) before parsing, e.g. `status` → `verify`.
pub fn parse_args<T: argh::FromArgs>(aliases: &[(&str, &str)]) -> Result<T, u8> {
    let args: Vec<String> = std::env::args().collect();
    let cmd = args.first().map(Path::new).and_then(Path::file_name).and_then(|n| n.to_str()).unwrap_or("tool");
    let split = split_assignments(&args[1.min(args.len())..]);
    let mut rest: Vec<&str> = split.iter().map(String::as_str).collect();
    // Which build is on this host: the first thing to know about a tool dropped there.
    if rest.contains(&"--version") {
        let _ = writeln!(std::io::stdout(), "{cmd} {}", env!("CARGO_PKG_VERSION"));
        return Err(exit::OK);
    }
    // The short help every other tool takes.
    for a in rest.iter_mut().filter(|a| **a == "-h") {
        *a = "--help";
    }
    if let Some(first) = rest.first_mut()
        && let Some((_, to)) = aliases.iter().find(|(from, _)| from == first)
    {
        *first = to;
    }
    // argh takes a lone "-" for a flag; as a positional it means stdin: parse again with a marker.
    let first = T::from_args(&[cmd], &rest);
    let retry = first.as_ref().is_err_and(|e| e.status.is_err()) && rest.contains(&"-");
    let parsed = if retry {
        let marked: Vec<&str> = rest.iter().map(|a| if *a == "-" { STDIN_MARK } else { a }).collect();
        T::from_args(&[cmd], &marked).or(first)
    } else {
        first
    };
    parsed.map_err(|early| match early.status {
        Ok(()) => {
            // Written, not printed: a help piped into `head` must not panic on the closed pipe.
            let mut out = std::io::stdout();
            let _ = write!(out, "{}", early.output);
            // Subcommands' helps have no note of their own: the codes are the same everywhere.
            if !early.output.contains("Exit codes:") {
                let _ = writeln!(out, "\n{} `{cmd} --help` says what they mean for {cmd}.", exit::HELP);
            }
            exit::OK
        }
        Err(()) => {
            // One line, like every other error: argh lists missing options on lines of their own.
            let lines: Vec<&str> = early.output.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let message = lines.join(" ");
            crate::say!("{cmd}: {message}");
            // The flags did not parse, so -w is looked for by hand: a script reading JSON gets
            // its Error document for a usage error too.
            let w = rest.iter().position(|a| *a == "-w" || *a == "--write-out").and_then(|i| rest.get(i + 1));
            if parse_output(w.copied()).is_ok_and(|o| o == Output::Json) {
                crate::report::print_json(&crate::report::ErrorDoc::new(exit::USAGE, message));
            }
            exit::USAGE
        }
    })
}

/// The whole `main` of a tool: logging, parsing, running, and turning errors into the one-line
/// message and the documented exit code (plus an `Error` document when the output is JSON).
pub fn main<T: argh::FromArgs + HasShared>(tool: &str, run: impl FnOnce(T) -> Result<u8>) -> ExitCode {
    main_aliased(tool, &[], run)
}

/// [`main`] with subcommand aliases (see [`parse_args`]).
pub fn main_aliased<T: argh::FromArgs + HasShared>(
    tool: &str,
    aliases: &[(&str, &str)],
    run: impl FnOnce(T) -> Result<u8>,
) -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_millis()
        .init();
    let args = match parse_args::<T>(aliases) {
        Ok(a) => a,
        Err(code) => return ExitCode::from(code),
    };
    let output = args.shared_flags().output_lenient();
    let code = match run(args) {
        Ok(code) => code,
        Err(err) => {
            let code = exit::code_of(&err);
            let message = format!("{err:#}");
            crate::say!("{tool}: {message}");
            if output == Output::Json {
                crate::report::print_json(&crate::report::ErrorDoc::new(code, message));
            }
            code
        }
    };
    // A Ctrl-C or TERM a procedure deferred ends the tool now, everything said.
    crate::nodelock::act_on_deferred_signal();
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        for bad in ["", "2", "s", "2x", "-1s", "1..2s", "99999999999999999999h", "8761h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_duration("8760h").unwrap(), Duration::from_secs(365 * 86_400));
    }

    #[test]
    fn flag_equals_value() {
        let args: Vec<String> = ["--endpoints=https://a:2379,https://b:2379", "-w=json", "x=y", "--", "--not=split"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            split_assignments(&args),
            ["--endpoints", "https://a:2379,https://b:2379", "-w", "json", "x=y", "--", "--not=split"]
        );
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(url_host("https://10.0.0.1:2379"), "10.0.0.1");
        assert_eq!(url_host("https://[fd00::1]:2380/"), "fd00::1");
        assert_eq!(url_host("node1"), "node1");
    }

    #[test]
    fn urls() {
        assert!(check_url("https://127.0.0.11:2379").is_ok());
        assert!(check_url("http://[::1]:2379").is_ok());
        assert!(check_url("127.0.0.1:2379").is_err(), "bare: resolve adds https:// to endpoints only");
        assert!(check_url("https://host").is_err());
        assert!(check_url("https://host:99999").is_err());
        assert!(check_url("https://[fd00::1]:2380/").is_ok());
        let unbracketed = check_url("https://::1:2379").unwrap_err();
        assert!(unbracketed.contains("needs brackets"), "{unbracketed}");
        assert!(check_url("https://[fd00::zz]:2380").unwrap_err().contains("not an IPv6 address"));
        assert!(check_url("https://[::1:2379").is_err());
        assert!(check_url("https://:2379").is_err());
    }

    #[test]
    fn defaults_follow_rootfs() {
        let dir = std::env::temp_dir();
        let flags = SharedFlags {
            rootfs: Some(dir.to_string_lossy().into()),
            write_out: Some("json".into()),
            ..Default::default()
        };
        let s = flags.resolve().unwrap();
        assert_eq!(s.tls.ca, dir.join("etc/kubernetes/pki/etcd/ca.crt"));
        assert_eq!(s.manifest, dir.join("etc/kubernetes/manifests/etcd.yaml"));
        assert_eq!(s.output, Output::Json);
        let bad = SharedFlags { write_out: Some("yaml".into()), ..Default::default() };
        let err = bad.resolve().unwrap_err();
        assert_eq!(exit::code_of(&err), exit::USAGE);
        assert!(err.to_string().contains("-w/--write-out"), "{err}");
    }
}
