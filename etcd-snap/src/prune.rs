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
    #[argh(subcommand, name = "list")]
    pub struct ListArgs {
        /// the snapshot directory
        #[argh(option)]
        pub dir: String,
    }
}

common::with_shared_flags! {
    /// remove old snapshots from a directory by retention rules
    #[argh(subcommand, name = "prune")]
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
        /// print what would go, remove nothing
        #[argh(switch)]
        pub dry_run: bool,
    }
}

fn listing(dir: &Path) -> Result<Vec<report::SnapshotEntry>> {
    store::list(dir).map_err(|e| coded(exit::USAGE, format!("--dir {}: {e}", dir.display())))
}

/// Applies the rules; returns what stays and what went (or would go, with `dry_run`).
pub fn prune(dir: &Path, rules: Rules, dry_run: bool) -> Result<SnapshotList> {
    let snaps = listing(dir)?;
    let mut keep = store::kept(&snaps, rules);
    if let Some(i) = store::newest_verified(&snaps) {
        keep.insert(i);
    }
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    for (i, s) in snaps.into_iter().enumerate() {
        if keep.contains(&i) {
            kept.push(s);
            continue;
        }
        if !dry_run {
            std::fs::remove_file(&s.path).map_err(|e| anyhow!("remove {}: {e}", s.path))?;
        }
        removed.push(s.path);
    }
    for p in store::remove_dead_parts(dir, dry_run)? {
        removed.push(p.display().to_string());
    }
    Ok(SnapshotList { kind: "SnapshotList".into(), snapshots: kept, removed })
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
    // A dry run changes nothing, the lock file included.
    let _lock = if args.dry_run { None } else { Some(crate::save::lock_dir(dir)?) };
    let list = prune(dir, rules, args.dry_run)?;
    cli::emit(&list, shared.output, render);
    Ok(exit::OK)
}
