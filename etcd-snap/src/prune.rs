//! `list` and `prune`: only files with the tool's own names are touched; the newest snapshot that
//! verifies is never removed; `.part` leftovers of killed saves (no live save holds their lock) go.

use crate::store::{self, Rules};
use anyhow::{Result, anyhow};
use common::cli::{self, HasShared};
use common::exit::{self, coded};
use common::report::{self, SnapshotList};
use std::path::Path;

common::with_shared_flags! {
    /// list the snapshots in a directory, newest first
    #[argh(
        subcommand,
        name = "list",
        example = "  $ etcd-snap list --dir /var/backups/etcd"
    )]
    pub struct ListArgs {
        /// the snapshot directory
        #[argh(option)]
        pub dir: String,
    }
}

common::with_shared_flags! {
    /// remove old snapshots from a directory by retention rules
    #[argh(
        subcommand,
        name = "prune",
        example = "See first, then remove:\n  $ etcd-snap prune --dir /var/backups/etcd --keep 24 --keep-daily 7 --dry-run\n  $ etcd-snap prune --dir /var/backups/etcd --keep 24 --keep-daily 7"
    )]
    pub struct PruneArgs {
        /// the snapshot directory
        #[argh(option)]
        pub dir: String,
        /// keep the newest N
        #[argh(option)]
        pub keep: usize,
        /// also keep the newest of each of the last D days (UTC)
        #[argh(option, default = "0")]
        pub keep_daily: usize,
        /// also keep the newest of each of the last W weeks (from Monday, UTC)
        #[argh(option, default = "0")]
        pub keep_weekly: usize,
        /// print the plan (what would go), remove nothing
        #[argh(switch)]
        pub dry_run: bool,
    }
}

fn listing(dir: &Path) -> Result<Vec<report::SnapshotEntry>> {
    store::list(dir).map_err(|e| {
        let msg = format!("--dir {}: {e}", dir.display());
        // A dir that is not there is bad input; one that fails to read is the disk's.
        match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => coded(exit::USAGE, msg),
            _ => anyhow!(msg),
        }
    })
}

/// The snapshots the rules keep and the ones they let go, decided without touching anything.
struct Decision {
    kept: Vec<report::SnapshotEntry>,
    going: Vec<String>,
    newest_verified: Option<String>,
}

/// How far past this host's clock a name may be and still count (a save on a host whose clock is
/// a little ahead, into a shared dir).
const FUTURE_SLACK_SECS: i64 = 300;

fn decide(dir: &Path, rules: Rules, protect: Option<&str>) -> Result<Decision> {
    let all = listing(dir)?;
    // Named later than now: the clock was ahead when they were taken (and stepped back since).
    // Counted, they would fill the newest slots and push out every real new snapshot, run after
    // run; so they are left alone, neither counted nor removed, and named.
    let now = common::time::now_secs();
    let (future, snaps): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|s| common::time::parse_rfc3339(&s.taken_at).is_some_and(|t| t > now + FUTURE_SLACK_SECS));
    for f in &future {
        common::say!("etcd-snap: {}: named later than now (a clock that was ahead?): left alone, not counted", f.path);
    }
    let mut keep = store::kept(&snaps, rules);
    let name = |p: &str| Path::new(p).file_name().map(|n| n.to_owned());
    keep.extend(snaps.iter().position(|s| protect.is_some_and(|p| name(p) == name(&s.path))));
    let newest_verified = store::newest_verified(&snaps);
    keep.extend(newest_verified);
    let newest_verified = newest_verified.map(|i| snaps[i].path.clone());
    let (mut kept, mut going) = (future, Vec::new());
    for (i, s) in snaps.into_iter().enumerate() {
        match keep.contains(&i) {
            true => kept.push(s),
            false => going.push(s.path),
        }
    }
    Ok(Decision { kept, going, newest_verified })
}

/// Applies the rules, never removing `protect` (the snapshot a save just wrote); returns what
/// stays and what went.
pub fn prune(dir: &Path, rules: Rules, protect: Option<&str>) -> Result<SnapshotList> {
    let d = decide(dir, rules, protect)?;
    common::failpoint::hit("prune-decided");
    let mut removed = Vec::new();
    for p in d.going {
        match std::fs::remove_file(&p) {
            Ok(()) => removed.push(p),
            // Gone already (another prune, by hand or without the lock): what we wanted.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => log::info!("{p}: removed by someone else"),
            Err(e) => return Err(anyhow!("remove {p}: {e}")),
        }
    }
    // Killed saves' leftovers go each under its own lock (a save may have started since).
    for p in store::remove_dead_parts(dir, false)? {
        removed.push(p.display().to_string());
    }
    Ok(SnapshotList { kind: "SnapshotList".into(), snapshots: d.kept, removed })
}

/// `prune --dry-run`: the Plan, every file that would go a step of its own; nothing touched.
fn plan(dir: &Path, rules: Rules) -> Result<report::Plan> {
    let d = decide(dir, rules, None)?;
    let mut plan = report::Plan::new("etcd-snap prune");
    let (ok, detail) = crate::save::lock_free(dir);
    plan.check("lock free", ok, detail);
    plan.check(
        "newest verified snapshot kept",
        true,
        d.newest_verified.unwrap_or_else(|| "none verifies: the rules alone decide".into()),
    );
    let kept: Vec<&str> = d.kept.iter().map(|s| s.path.as_str()).collect();
    plan.step("keep", if kept.is_empty() { "nothing".into() } else { kept.join(", ") }, false);
    let parts = store::remove_dead_parts(dir, true)?;
    for p in d.going.into_iter().chain(parts.iter().map(|p| p.display().to_string())) {
        plan.step("remove", p, true);
    }
    Ok(plan)
}

pub fn render(l: &SnapshotList) -> String {
    let rows: Vec<Vec<String>> = l
        .snapshots
        .iter()
        .map(|s| {
            vec![
                s.taken_at.clone(),
                s.member.clone(),
                s.revision.to_string(),
                report::human_bytes(s.size as i64),
                s.path.clone(),
            ]
        })
        .collect();
    let mut out = report::table(&["TAKEN AT", "MEMBER", "REVISION", "SIZE", "PATH"], &rows);
    for r in &l.removed {
        out += &format!("removed: {r}\n");
    }
    out
}

pub fn run_list(args: ListArgs) -> Result<u8> {
    let shared = args.shared_flags().resolve()?;
    let list = SnapshotList { kind: "SnapshotList".into(), snapshots: listing(Path::new(&args.dir))?, removed: vec![] };
    cli::emit(&list, shared.output, render);
    Ok(exit::OK)
}

pub fn run_prune(args: PruneArgs) -> Result<u8> {
    let shared = args.shared_flags().resolve()?;
    let rules = Rules { keep: args.keep, daily: args.keep_daily, weekly: args.keep_weekly };
    if rules.keep + rules.daily + rules.weekly == 0 {
        return Err(coded(exit::USAGE, "--keep 0 with no daily or weekly rule would keep nothing"));
    }
    let dir = Path::new(&args.dir);
    if args.dry_run {
        // Changes nothing, the lock file included.
        return Ok(cli::plan_gate(&plan(dir, rules)?, shared.output, true)?.unwrap_or(exit::OK));
    }
    let _lock = crate::save::lock_dir(dir)?;
    let list = prune(dir, rules, None)?;
    cli::emit(&list, shared.output, render);
    Ok(exit::OK)
}
