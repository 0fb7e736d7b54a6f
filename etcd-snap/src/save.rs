//! `save`: a snapshot from a healthy member, streamed into `<name>.part` (0600, dir 0700) with its
//! SHA-256 trailer checked on the way, fsynced, verified offline, renamed, the dir fsynced. Never
//! hangs (dial, stall and overall timeouts), never leaves a half file under a final name or a
//! `.part` behind. Cron mode: `--lock`, `--keep...`, `--metrics-file`.

use crate::metrics;
use crate::store::{self, Rules};
use anyhow::{Context, Result, anyhow, bail};
use common::cli::{self, HasShared, Shared};
use common::client::Dialer;
use common::disk::snapshot::{self, StreamCheck};
use common::exit::{self, coded};
use common::report::{AlarmStatus, MemberStatus, Snapshot, hex_id, same_id};
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

common::with_shared_flags! {
    /// take a snapshot from a healthy member, verified, atomically written
    #[argh(
        subcommand,
        name = "save",
        example = "  $ etcd-snap save --dir /var/backups/etcd",
        example = "Cron mode:\n  $ etcd-snap save --dir /var/backups/etcd --keep 24 --keep-daily 7 --lock --metrics-file /var/lib/node_exporter/textfile_collector/etcd_snapshot.prom"
    )]
    pub struct SaveArgs {
        /// directory to save into, as etcd-snapshot-<UTC time>-<member>-r<revision>.db (made 0700)
        #[argh(option)]
        pub dir: Option<String>,
        /// the exact file to write instead of --dir
        #[argh(option)]
        pub out: Option<String>,
        /// which member: leader, follower (default: a healthy follower, else the leader), or a client URL
        #[argh(option)]
        pub from: Option<String>,
        /// overall time limit (default 10m)
        #[argh(option, default = "String::from(\"10m\")")]
        pub timeout: String,
        /// abort when no bytes arrive for this long (default 30s)
        #[argh(option, default = "String::from(\"30s\")")]
        pub stall_timeout: String,
        /// cron mode: then keep the newest N snapshots in --dir (see prune)
        #[argh(option)]
        pub keep: Option<usize>,
        /// cron mode: also keep the newest of each of the last D days
        #[argh(option)]
        pub keep_daily: Option<usize>,
        /// cron mode: also keep the newest of each of the last W weeks
        #[argh(option)]
        pub keep_weekly: Option<usize>,
        /// hold an exclusive lock on --dir; a second run exits 5 at once
        #[argh(switch)]
        pub lock: bool,
        /// node_exporter textfile to update, on failure too
        #[argh(option)]
        pub metrics_file: Option<String>,
        /// print the Plan (checks, the member it would take it from, the steps); write nothing
        #[argh(switch)]
        pub dry_run: bool,
        /// write even into a world-writable directory (anyone there could swap a snapshot), or
        /// over an existing --out file
        #[argh(switch)]
        pub force: bool,
    }
}

/// Removes the `.part` name when dropped, while the file under it is still the one this run
/// made (never another save's of the same name). Once published, the final name holds the file:
/// the `.part` name is gone (renamed) or a leftover link to it (removed here).
struct Part {
    path: PathBuf,
    made: (u64, u64),
}

impl Drop for Part {
    fn drop(&mut self) {
        if std::fs::metadata(&self.path).is_ok_and(|m| store::identity(&m) == self.made) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Puts the verified `.part` under its final name. Without `replace`, an existing file there is
/// never replaced, even one another save made a moment ago (a hard link fails where a rename
/// would overwrite); a filesystem without hard links gets the plain rename.
fn publish(part: &Path, to: &Path, replace: bool) -> Result<()> {
    let renamed = |e: std::io::Error| anyhow!("rename {} to {}: {e}", part.display(), to.display());
    let taken = || coded(exit::REFUSED, format!("{}: exists; not replacing it without --force", to.display()));
    if replace {
        return std::fs::rename(part, to).map_err(renamed);
    }
    match std::fs::hard_link(part, to) {
        // Published once linked: a `.part` name left over is only a leftover (the guard retries).
        Ok(()) => {
            if let Err(e) = std::fs::remove_file(part) {
                common::say!("etcd-snap: warning: remove {}: {e}", part.display());
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(taken()),
        // EPERM, EOPNOTSUPP: no hard links here (vfat, some FUSE).
        Err(e) if matches!(e.raw_os_error(), Some(1 | 95)) => match std::fs::symlink_metadata(to) {
            Ok(_) => Err(taken()),
            Err(_) => std::fs::rename(part, to).map_err(renamed),
        },
        Err(e) => Err(anyhow!("link {} to {}: {e}", part.display(), to.display())),
    }
}

pub fn make_dir(dir: &Path) -> Result<()> {
    common::backup::private_dir_all(dir).map_err(|e| anyhow!("--dir {}: cannot create: {e}", dir.display()))
}

/// The lock of a snapshot dir: held by a save with --lock and by prune.
const LOCK_FILE: &str = ".etcd-snap.lock";

/// An exclusive lock on the snapshot dir for the whole run.
pub fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    common::durable::try_lock(&path)
        .map_err(|e| anyhow!("--dir {}: cannot lock {}: {e}", dir.display(), path.display()))?
        .ok_or_else(|| coded(exit::REFUSED, format!("another etcd-snap run holds the lock on {}", dir.display())))
}

/// The members to try, in order: followers most caught up first (one catching up after a restart
/// holds old data), then the leader. A member whose data etcd found CORRUPT is never asked, nor a
/// learner or one that reports errors; a member named by `--from URL` is asked whatever it is,
/// with a warning.
fn candidates(from: Option<&str>, members: &[MemberStatus], alarms: &[AlarmStatus]) -> Result<Vec<(String, String)>> {
    let corrupt = |m: &MemberStatus| alarms.iter().any(|a| a.alarm == "CORRUPT" && same_id(&a.member_id, &m.id));
    // Why a member is not asked, if it is not.
    let why_not = |m: &MemberStatus| match () {
        _ if corrupt(m) => Some("etcd raised a CORRUPT alarm for its data".to_string()),
        _ if m.is_learner => Some("it is a learner".to_string()),
        _ if !m.endpoint.reachable => Some("it did not answer the survey".to_string()),
        _ if !m.endpoint.errors.is_empty() => Some(m.endpoint.errors.join("; ")),
        _ => None,
    };
    let usable = |m: &&MemberStatus| why_not(m).is_none();
    let leader: Vec<&MemberStatus> = members.iter().filter(usable).filter(|m| m.endpoint.is_leader).collect();
    let mut followers: Vec<&MemberStatus> = members.iter().filter(usable).filter(|m| !m.endpoint.is_leader).collect();
    followers.sort_by_key(|m| std::cmp::Reverse(m.endpoint.raft_applied_index));
    let pick: Vec<&MemberStatus> = match from {
        None => followers.into_iter().chain(leader.iter().copied()).collect(),
        Some("follower") => followers,
        Some("leader") => leader.clone(),
        Some(url) => {
            cli::check_url(url).map_err(|m| coded(exit::USAGE, format!("--from: {m}")))?;
            let found = members.iter().find(|m| m.client_urls.iter().any(|u| u == url));
            if let Some(why) = found.and_then(why_not) {
                common::say!("etcd-snap: warning: --from {url}: {why}; taking the snapshot from it as asked");
            }
            return Ok(vec![(url.to_string(), found.map(|m| m.name.clone()).unwrap_or_default())]);
        }
    };
    if pick.is_empty() {
        // A cluster with a leader has its quorum: what is missing is a member fit to ask (a
        // one-member cluster has no follower; the leader may be passed over), a refusal.
        let led = members.iter().any(|m| m.endpoint.reachable && m.endpoint.is_leader);
        let code = if led { exit::REFUSED } else { exit::QUORUM_LOST };
        let mut hint = String::new();
        if !leader.is_empty() {
            hint += " (the leader is healthy: --from leader, or no --from)";
        }
        let passed: Vec<String> = members
            .iter()
            .filter(|m| m.endpoint.reachable)
            .filter_map(|m| why_not(m).map(|why| format!("{}: {why}", m.label())))
            .collect();
        if !passed.is_empty() {
            hint += &format!("; passed over: {}", passed.join("; "));
        }
        return Err(coded(code, format!("no healthy {} to take a snapshot from{hint}", from.unwrap_or("member"))));
    }
    Ok(pick.into_iter().map(|m| (m.endpoint.url.clone(), m.name.clone())).collect())
}

/// Writing our own file failed (disk full, ...): no other member can help with that.
#[derive(Debug)]
struct LocalWrite(String);

impl std::fmt::Display for LocalWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "writing the snapshot: {}", self.0)
    }
}

impl std::error::Error for LocalWrite {}

/// Prints bytes and rate on a terminal's stderr, twice a second at most.
struct Progress {
    on: bool,
    start: Instant,
    last: Instant,
}

impl Progress {
    fn show(&mut self, bytes: u64, done: bool) {
        if !self.on || (!done && self.last.elapsed() < Duration::from_millis(500)) {
            return;
        }
        self.last = Instant::now();
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        use std::io::Write as _;
        let _ = write!(
            std::io::stderr(),
            "\r{} received, {}/s{}",
            common::report::human_bytes(bytes as i64),
            common::report::human_bytes((bytes as f64 / secs) as i64),
            if done { "\n" } else { "" }
        );
    }
}

async fn stream(
    dialer: &Dialer,
    url: &str,
    file: &mut File,
    check: &mut StreamCheck,
    stall: Duration,
) -> Result<(u64, String)> {
    let mut client = dialer.connect(url).await.map_err(|e| e.context(url))?;
    let status = dialer.call(client.status()).await.map_err(|e| e.context(format!("{url}: status")))?;
    let member_id = status.header().map_or(0, |h| h.member_id());
    let mut s = dialer.call(client.snapshot()).await.map_err(|e| e.context(format!("{url}: snapshot")))?;
    let mut progress = Progress { on: std::io::stderr().is_terminal(), start: Instant::now(), last: Instant::now() };
    let mut first = true;
    loop {
        match tokio::time::timeout(stall, s.message()).await {
            Err(_) => {
                return Err(coded(
                    exit::TIMEOUT,
                    format!("{url}: snapshot stalled: no bytes for {stall:?} after {} bytes", check.total()),
                ));
            }
            Ok(Err(e)) => bail!(
                "{url}: snapshot stream broken after {} bytes: {}",
                check.total(),
                common::client::error_chain(&e)
            ),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(msg))) => {
                file.write_all(msg.blob()).map_err(|e| LocalWrite(e.to_string()))?;
                check.update(msg.blob());
                progress.show(check.total(), false);
                if std::mem::take(&mut first) {
                    common::failpoint::hit("save-streaming");
                }
            }
        }
    }
    progress.show(check.total(), true);
    Ok((member_id, status.version().to_string()))
}

/// The members to try, (client URL, name), in order: `--from`, else the survey's healthy ones.
fn sources(args: &SaveArgs, shared: &Shared) -> Result<Vec<(String, String)>> {
    let from = args.from.as_deref();
    match from {
        Some(u) if u.contains("://") => {
            // Asked alone, for the member's name (the file is named after it); without an
            // answer the host names it, and the stream says whether it works.
            let only = Shared { endpoints: Some(vec![u.to_string()]), ..shared.clone() };
            let status = common::cluster::survey(&only, None).map(|s| s.status).ok();
            let (members, alarms) = status.map(|s| (s.members, s.alarms)).unwrap_or_default();
            candidates(from, &members, &alarms)
        }
        _ => {
            let manifest = common::manifest::Manifest::load(&shared.manifest).ok();
            let survey = common::cluster::survey_of_node(shared, manifest.as_ref())?;
            if survey.nobody_answered() {
                return Err(survey.unreachable());
            }
            candidates(from, &survey.status.members, &survey.status.alarms)
        }
    }
}

fn save(args: &SaveArgs, shared: &Shared, target: &Target) -> Result<Snapshot> {
    let total = cli::timeout_flag("timeout", &args.timeout)?;
    let stall = cli::timeout_flag("stall-timeout", &args.stall_timeout)?;
    let urls = sources(args, shared)?;
    let dialer = Dialer::new(shared, urls.iter().any(|(u, _)| u.starts_with("https://")))?;
    let rt = common::client::runtime()?;
    let taken = common::time::compact_utc(std::time::SystemTime::now());
    // One deadline for the whole run, whatever number of members is tried.
    let deadline = Instant::now() + total;
    let mut errors = Vec::new();
    let (mut all_timed_out, mut broke_midway) = (true, false);
    let count = urls.len();
    for (i, (url, name)) in urls.into_iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            errors.push(format!("{url}: not tried, --timeout {total:?} spent"));
            break;
        }
        // A member known only by its URL is named after its host (no ':' in file names).
        let member = if name.is_empty() { cli::url_host(&url).replace(':', "_") } else { name };
        let part_path = match target {
            Target::Dir(d) => d.join(store::part_name(&taken, &member)),
            Target::File(f) => PathBuf::from(format!("{}.part", f.display())),
        };
        let mut file = store::open_part(&part_path)?;
        let made = file.metadata().map(|m| store::identity(&m))?;
        let part = Part { path: part_path.clone(), made };
        let mut check = StreamCheck::default();
        let streamed = rt.block_on(async {
            match tokio::time::timeout(left, stream(&dialer, &url, &mut file, &mut check, stall)).await {
                Err(_) => Err(coded(exit::TIMEOUT, format!("{url}: snapshot not done within --timeout {total:?}"))),
                Ok(r) => r,
            }
        });
        let (member_id, version) = match streamed {
            Ok(v) => v,
            // The member is dead, refused, or broke off or stalled midway (restarted, say): its
            // partial file goes and the next member is asked. Our own disk failing is not theirs.
            Err(e) if e.downcast_ref::<LocalWrite>().is_none() => {
                broke_midway |= check.total() > 0 && exit::code_of(&e) != exit::TIMEOUT;
                if check.total() > 0 && i + 1 < count {
                    common::say!("etcd-snap: {e:#}; asking the next member");
                }
                log::warn!("{e:#}");
                errors.push(format!("{e:#}"));
                all_timed_out &= exit::code_of(&e) == exit::TIMEOUT;
                continue;
            }
            Err(e) if e.downcast_ref::<LocalWrite>().is_some() => {
                return Err(e.context(part_path.display().to_string()));
            }
            Err(e) => return Err(e),
        };
        let sha = check.finish().map_err(|p| coded(exit::INTEGRITY, format!("{url}: {p}")))?;
        // The trailer was checked on the way in; what is left to check is the bbolt structure. That
        // read-back (CPU, page cache) runs beside the fsync (the disk), not after it.
        let (synced, status) = std::thread::scope(|s| {
            let sync = s.spawn(|| file.sync_all());
            let status = snapshot::status(&part_path);
            (sync.join().unwrap_or_else(|_| Err(std::io::Error::other("the fsync thread panicked"))), status)
        });
        synced.with_context(|| format!("{}: fsync", part_path.display()))?;
        let size = std::fs::metadata(&part_path).with_context(|| part_path.display().to_string())?.len();
        let verified = status
            .map(|status| snapshot::Verified { file_size: size, sha256: sha.clone(), has_trailer: true, status })
            .map_err(|p| {
                coded(
                    exit::INTEGRITY,
                    format!("{}: the received snapshot fails verification: {p}", part_path.display()),
                )
            })?;
        let final_path = match target {
            Target::Dir(d) => d.join(store::file_name(&taken, &member, verified.status.revision)),
            Target::File(f) => f.clone(),
        };
        // A name in --dir is this tool's own: one taken already holds the same member's snapshot
        // at the same revision and second. --out names the user's file: kept without --force.
        publish(&part_path, &final_path, args.force || matches!(target, Target::Dir(_)))?;
        common::durable::sync_parent(&final_path)?;
        // Held to here: a cleaner that opened the `.part` before it went takes its lock only now,
        // and finds another file (or none) under that name.
        // The guard first, still under the lock: a `.part` name left linked to the published
        // file goes before another save could take that name.
        drop(part);
        drop(file);
        return Ok(Snapshot {
            kind: "Snapshot".into(),
            path: cli::shown_path(&final_path),
            size: verified.file_size,
            sha256: sha,
            revision: verified.status.revision,
            total_keys: verified.status.total_keys,
            total_size: verified.status.total_size,
            hash: verified.status.hash,
            endpoint: url,
            member_id: hex_id(member_id),
            etcd_version: version,
            taken_at: common::time::rfc3339_secs(common::time::parse_compact_utc(&taken).unwrap_or(0)),
            verified: true,
        });
    }
    // Every member timed out: frozen or unroutable ones may come back (7), as with the survey. A
    // stream that broke midway is an error of its own (1); else nobody would give one (4).
    let code = match (all_timed_out, broke_midway) {
        (true, _) => exit::TIMEOUT,
        (false, true) => exit::ERROR,
        (false, false) => exit::QUORUM_LOST,
    };
    Err(coded(code, format!("no member gave a snapshot: {}", errors.join("; "))))
}

/// The dir's lock as a plan check: tested without creating the lock file.
pub fn lock_free(dir: &Path) -> (bool, String) {
    let held =
        File::open(dir.join(LOCK_FILE)).is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)));
    (!held, if held { "another run holds it" } else { "free" }.to_string())
}

/// What a save would do, checked without writing anything (no dir made, no lock file, no metrics).
fn dry_run(args: &SaveArgs, shared: &Shared, target: &Target, dir: &Path, pruning: bool) -> Result<u8> {
    let mut plan = common::report::Plan::new("etcd-snap save");
    let mode = std::fs::metadata(dir).ok().map(|m| (m.is_dir(), m.permissions().mode() & 0o7777));
    let detail = match mode {
        Some((true, m)) => format!("{} (mode {m:o})", dir.display()),
        Some((false, _)) => format!("{}: not a directory", dir.display()),
        None => format!("{}: will be made (0700)", dir.display()),
    };
    plan.check("snapshot dir usable", mode.is_none_or(|(d, _)| d), detail);
    if let Some((true, m)) = mode {
        plan.check("dir not world-writable", m & 0o002 == 0 || args.force, format!("mode {m:o}"));
    }
    if let Target::File(f) = target {
        let exists = std::fs::symlink_metadata(f).is_ok();
        plan.check("--out does not exist", !exists || args.force, f.display().to_string());
    }
    if args.lock {
        let (ok, detail) = lock_free(dir);
        plan.check("lock free", ok, detail);
    }
    match sources(args, shared) {
        Ok(list) => {
            let names: Vec<String> =
                list.iter().map(|(u, n)| if n.is_empty() { u.clone() } else { format!("{n} ({u})") }).collect();
            plan.check("a healthy member to take it from", true, names.join(", then "));
        }
        Err(e) => plan.check("a healthy member to take it from", false, format!("{e:#}")),
    }
    let into = match target {
        Target::Dir(d) => format!("{}/etcd-snapshot-<UTC time>-<member>-r<revision>.db", d.display()),
        Target::File(f) => f.display().to_string(),
    };
    plan.step("stream", format!("into {into}.part (0600), the SHA-256 trailer checked on the way"), false);
    plan.step("verify and rename", format!("bbolt check, fsync, rename to {into}, fsync the dir"), false);
    if pruning {
        let rules = [("--keep", args.keep), ("--keep-daily", args.keep_daily), ("--keep-weekly", args.keep_weekly)];
        let said: Vec<String> = rules.iter().filter_map(|(f, v)| v.map(|v| format!("{f} {v}"))).collect();
        plan.step("prune", format!("{}: older snapshots beyond {}", dir.display(), said.join(", ")), true);
    }
    if let Some(m) = &args.metrics_file {
        plan.step("metrics", format!("{m} rewritten (success or failure)"), false);
    }
    Ok(cli::plan_gate(&plan, shared.output, true)?.unwrap_or(exit::OK))
}

/// The dir made (0700) and fit for snapshots; `--out` names no existing file.
fn prepare(dir: &Path, target: &Target, force: bool) -> Result<()> {
    make_dir(dir)?;
    let mode = std::fs::metadata(dir).map(|m| m.permissions().mode()).unwrap_or(0);
    if mode & 0o002 != 0 && !force {
        return Err(coded(
            exit::REFUSED,
            format!(
                "{}: world-writable (mode {:o}): anyone could replace or read a snapshot there; \
                 use a private directory or --force",
                dir.display(),
                mode & 0o7777
            ),
        ));
    }
    if let Target::File(f) = target
        && std::fs::symlink_metadata(f).is_ok()
        && !force
    {
        return Err(coded(exit::REFUSED, format!("--out {}: exists; not replacing it without --force", f.display())));
    }
    Ok(())
}

pub enum Target {
    Dir(PathBuf),
    File(PathBuf),
}

pub fn run(args: SaveArgs) -> Result<u8> {
    let started = Instant::now();
    // A run refused before it starts (a bad setting in the timer's environment, a retention rule
    // that keeps nothing) counts as a failure too: else a job wrong from its first run would
    // never write the series an alert watches.
    let checked = checked_settings(&args);
    if let (Err(_), Some(m), false) = (&checked, &args.metrics_file, args.dry_run) {
        let outcome = metrics::Outcome { made: None, failed: true, duration_secs: started.elapsed().as_secs_f64() };
        if let Err(e) = metrics::record(Path::new(m), &outcome) {
            log::error!("--metrics-file {m}: {e:#}");
        }
    }
    let (shared, target, rules, pruning) = checked?;
    run_checked(&args, &shared, target, rules, pruning, started)
}

/// The settings, checked before anything is done: (shared flags, target, rules, pruning or not).
fn checked_settings(args: &SaveArgs) -> Result<(Shared, Target, Rules, bool)> {
    let shared = args.shared_flags().resolve()?;
    let target = match (&args.dir, &args.out) {
        (Some(d), None) => Target::Dir(PathBuf::from(d)),
        (None, Some(f)) => Target::File(PathBuf::from(f)),
        _ => return Err(coded(exit::USAGE, "give --dir or --out (one of them)")),
    };
    // Known before a byte is streamed: neither would ever take the snapshot, --force or not.
    match &target {
        Target::Dir(d) if std::fs::metadata(d).is_ok_and(|m| !m.is_dir()) => {
            return Err(coded(exit::USAGE, format!("--dir {}: not a directory", d.display())));
        }
        Target::File(f) if f.is_dir() => {
            return Err(coded(
                exit::USAGE,
                format!("--out {}: a directory (--out names a file; --dir a directory)", f.display()),
            ));
        }
        _ => {}
    }
    let rules = Rules {
        keep: args.keep.unwrap_or(0),
        daily: args.keep_daily.unwrap_or(0),
        weekly: args.keep_weekly.unwrap_or(0),
    };
    let pruning = args.keep.is_some() || args.keep_daily.is_some() || args.keep_weekly.is_some();
    if (pruning || args.lock) && !matches!(target, Target::Dir(_)) {
        return Err(coded(exit::USAGE, "--keep, --keep-daily, --keep-weekly and --lock go with --dir"));
    }
    if pruning && rules.keep + rules.daily + rules.weekly == 0 {
        return Err(coded(exit::USAGE, "--keep 0 with no daily or weekly rule would keep nothing"));
    }
    Ok((shared, target, rules, pruning))
}

fn run_checked(
    args: &SaveArgs,
    shared: &Shared,
    target: Target,
    rules: Rules,
    pruning: bool,
    started: Instant,
) -> Result<u8> {
    let dir = match &target {
        Target::Dir(d) => d.clone(),
        Target::File(f) => common::durable::parent_dir(f).to_path_buf(),
    };
    if args.dry_run {
        return dry_run(args, shared, &target, &dir, pruning);
    }
    // A failure from here on is the job's and goes into the metrics, except a lock held by
    // another live run: that run reports.
    let mut prepared = prepare(&dir, &target, args.force);
    let mut _lock = None;
    if prepared.is_ok() && args.lock {
        match lock_dir(&dir) {
            Ok(f) => _lock = Some(f),
            Err(e) if exit::code_of(&e) == exit::REFUSED => return Err(e),
            Err(e) => prepared = Err(e),
        }
    }
    let result = prepared.and_then(|()| {
        // Leftovers of killed runs go first: no live save holds their lock.
        if matches!(target, Target::Dir(_)) {
            for p in store::remove_dead_parts(&dir, false)? {
                common::say!("etcd-snap: removed {}, left by an interrupted save", p.display());
            }
        }
        save(args, shared, &target)
    });
    // The file just written is kept whatever the rules say (a clock stepped back can make it look
    // oldest). A failed prune fails the run (the disk fills up otherwise): the snapshot is made,
    // and the error says so.
    let pruned = match (&result, pruning) {
        (Ok(snap), true) => crate::prune::prune(&dir, rules, Some(&snap.path)).map(|list| list.removed).map_err(|e| {
            exit::with_state(e, format!("the snapshot {} is saved and verified; pruning failed", snap.path))
        }),
        _ => Ok(vec![]),
    };
    if let Some(m) = &args.metrics_file {
        let outcome = metrics::Outcome {
            made: result.as_ref().ok().map(|s| (s.size, s.revision)),
            failed: result.is_err() || pruned.is_err(),
            duration_secs: started.elapsed().as_secs_f64(),
        };
        if let Err(e) = metrics::record(Path::new(m), &outcome) {
            log::error!("--metrics-file {m}: {e:#}");
        }
    }
    let snap = result?;
    for r in pruned? {
        common::say!("etcd-snap: removed {r}");
    }
    cli::emit(&snap, shared.output, render);
    Ok(exit::OK)
}

pub fn render(s: &Snapshot) -> String {
    format!(
        "{}\n  size {} ({} of db), revision {}, {} keys, hash {:08x}, sha256 {}\n  from {} (member {}, etcd {}) at {}{}\n",
        s.path,
        s.size,
        common::report::human_bytes(s.total_size as i64),
        s.revision,
        s.total_keys,
        s.hash,
        s.sha256,
        if s.endpoint.is_empty() { "-" } else { &s.endpoint },
        if s.member_id.is_empty() { "-" } else { &s.member_id },
        if s.etcd_version.is_empty() { "-" } else { &s.etcd_version },
        if s.taken_at.is_empty() { "-" } else { &s.taken_at },
        if s.verified { ", verified" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::report::{EndpointStatus, MemberRef};

    fn member(id: &str, leader: bool, applied: u64) -> MemberStatus {
        let url = format!("https://{id}:2379");
        MemberStatus {
            member: MemberRef { id: id.into(), name: id.into(), client_urls: vec![url.clone()], ..Default::default() },
            started: true,
            endpoint: EndpointStatus {
                url,
                reachable: true,
                is_leader: leader,
                raft_applied_index: applied,
                ..Default::default()
            },
        }
    }

    fn order(from: Option<&str>, members: &[MemberStatus], alarms: &[AlarmStatus]) -> Vec<String> {
        candidates(from, members, alarms).unwrap().into_iter().map(|(_, name)| name).collect()
    }

    /// Followers most caught up first, the leader last; a CORRUPT member never, a NOSPACE one
    /// still (its data is sound).
    #[test]
    fn the_members_to_ask_and_their_order() {
        let members = [member("a", true, 100), member("b", false, 40), member("c", false, 99)];
        assert_eq!(order(None, &members, &[]), ["c", "b", "a"]);
        assert_eq!(order(Some("follower"), &members, &[]), ["c", "b"]);
        assert_eq!(order(Some("leader"), &members, &[]), ["a"]);
        let corrupt = [AlarmStatus { member_id: "c".into(), alarm: "CORRUPT".into() }];
        assert_eq!(order(None, &members, &corrupt), ["b", "a"]);
        let nospace = [AlarmStatus { member_id: "c".into(), alarm: "NOSPACE".into() }];
        assert_eq!(order(None, &members, &nospace), ["c", "b", "a"]);
        // Asked by URL: taken as asked, whatever it is.
        assert_eq!(order(Some("https://c:2379"), &members, &corrupt), ["c"]);
        let mut learner = members.clone();
        learner[2].member.is_learner = true;
        learner[1].endpoint.errors.push("etcdserver: no leader".into());
        assert_eq!(order(None, &learner, &[]), ["a"]);
    }

    /// A one-member cluster has no follower: refused (5), not a lost quorum (4); nothing healthy
    /// at all is.
    #[test]
    fn no_follower_is_no_lost_quorum() {
        let e = candidates(Some("follower"), &[member("a", true, 1)], &[]).unwrap_err();
        assert_eq!(exit::code_of(&e), exit::REFUSED);
        assert!(format!("{e}").contains("--from leader"), "{e}");
        let mut down = member("a", true, 1);
        down.endpoint.reachable = false;
        let e = candidates(None, &[down], &[]).unwrap_err();
        assert_eq!(exit::code_of(&e), exit::QUORUM_LOST);
        // A leader passed over (CORRUPT) is no lost quorum either: refused, saying why.
        let corrupt = [AlarmStatus { member_id: "a".into(), alarm: "CORRUPT".into() }];
        let e = candidates(Some("leader"), &[member("a", true, 1), member("b", false, 1)], &corrupt).unwrap_err();
        assert_eq!(exit::code_of(&e), exit::REFUSED);
        assert!(format!("{e}").contains("passed over: a (a): etcd raised a CORRUPT alarm"), "{e}");
    }
}
