//! etcd-restore: the runbook's "restore from a snapshot", natively (no etcdctl/etcdutl), into a
//! data dir that etcd 3.4, 3.5 and 3.6 start from; on one node with `--swap`, or on all nodes at
//! once with the commands `plan` prints.

mod plan;
mod swap;

pub use swap::{Swapped, swap};

use anyhow::{Result, anyhow};
use argh::FromArgs;
use common::cli::{self, HasShared};
use common::disk::ids::{self, InitialMember};
use common::disk::{restore, snapshot};
use common::exit::{self, coded};
use common::report::{self, Plan, Restore, Snapshot, hex_id};
use std::io::Read;
use std::path::{Path, PathBuf};

common::with_shared_flags! {
    changing
    /// Restore an etcd snapshot natively (like etcdutl snapshot restore, with the member and
    /// cluster IDs etcd computes for the same flags): into a new data dir, or with --swap into this
    /// node's etcd (stop, restore, swap the data dir in, start, check); `plan` prints the commands
    /// that restore every node into one new cluster.
    #[argh(
        example = "Into a new data dir, for member cp1 of a new 3-member cluster:\n  $ etcd-restore --snapshot /var/backups/etcd/etcd-snapshot-20261123T203332Z-cp1-r304.db --data-dir /var/lib/etcd-new --name cp1 --initial-cluster cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380,cp3=https://10.0.0.13:2380 --initial-advertise-peer-urls https://10.0.0.11:2380 --initial-cluster-token restore-1",
        example = "This node from a snapshot, as a one-member cluster (the other nodes cleaned first; then etcd-member join them):\n  $ etcd-restore --swap --snapshot /var/backups/etcd/etcd-snapshot-20261123T203332Z-cp1-r304.db --yes",
        example = "Every node at once: print each node's command, then run them on the nodes:\n  $ etcd-restore plan --snapshot S --initial-cluster cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380,cp3=https://10.0.0.13:2380",
        note = "Exit codes: 0 ok, 1 error, 2 usage, 5 refused (target not empty, no disk room, --yes missing), 6 integrity \
(hash mismatch, corrupt file), 7 timeout (the swapped-in member did not become healthy; the old data dir is back, or, when etcd \
did not stop either, the message says how to finish or go back)."
    )]
    pub struct Args {
        #[argh(subcommand)]
        pub plan: Option<Cmd>,
        /// the snapshot file, or - for a Snapshot document (etcd-snap) on stdin
        #[argh(option)]
        pub snapshot: Option<String>,
        /// the data dir to create (absent or empty); with --swap, the manifest's by default
        #[argh(option)]
        pub data_dir: Option<String>,
        /// this member's name (in --initial-cluster); with --swap, the manifest's by default
        #[argh(option)]
        pub name: Option<String>,
        /// every member of the new cluster: name=peerURL,...; with --swap, this node alone by default
        #[argh(option)]
        pub initial_cluster: Option<String>,
        /// this member's peer URLs (as in --initial-cluster); with --swap, the manifest's by default
        #[argh(option)]
        pub initial_advertise_peer_urls: Option<String>,
        /// cluster token, part of every member ID (default etcd-cluster; with --swap a new one)
        #[argh(option)]
        pub initial_cluster_token: Option<String>,
        /// accept a file without a sha256 trailer (a raw member/snap/db), or do not check the trailer
        /// (a Snapshot document's recorded sha256 is checked all the same)
        #[argh(switch)]
        pub skip_hash_check: bool,
        /// the sha256 the snapshot's db must have (as in a Snapshot document): plan gives every
        /// node the one it verified, so that no node restores another file of the same name
        #[argh(option)]
        pub snapshot_sha256: Option<String>,
        /// raise the revision by N (needs --mark-compacted), so watchers see no revision going back
        #[argh(option)]
        pub bump_revision: Option<u64>,
        /// mark the revisions before the bump as compacted
        #[argh(switch)]
        pub mark_compacted: bool,
        /// drop the alarms (NOSPACE, CORRUPT) the snapshot carries
        #[argh(switch)]
        pub drop_alarms: bool,
        /// write the new members as meta/confState: etcd 3.6.0-3.6.4 refuse a db from etcd 3.4
        /// (neither confState nor storageVersion) without it; etcdutl keeps the old one
        #[argh(switch)]
        pub write_confstate: bool,
        /// copy the db and patch it instead of rewriting it compactly (the rewrite measured faster
        /// here and defragments; see BENCHMARKS.md)
        #[argh(switch)]
        pub copy_patch: bool,
        /// node mode: stop this node's etcd, restore, swap the data dir in, start it, check health
        #[argh(switch)]
        pub swap: bool,
        /// with --swap: where the old data dir and manifest go (default <rootfs>/var/lib/etcd-recovery)
        #[argh(option)]
        pub backup_dir: Option<String>,
        /// with --swap: go on while a majority of the old cluster still serves without this node
        /// (it goes on beside the restored one: two clusters)
        #[argh(switch)]
        pub force: bool,
        /// with --swap: restore even when this node runs this snapshot's restore already (what was
        /// written since goes to the backup dir)
        #[argh(switch)]
        pub restore_again: bool,
        /// with --swap: how long etcd may take to stop, and to start healthy (default 120s)
        #[argh(option, default = "String::from(\"120s\")")]
        pub timeout: String,
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Cmd {
    Plan(plan::PlanArgs),
}

/// The new cluster's members and this one, checked as etcd's bootstrap checks them.
pub(crate) struct Membership {
    pub members: Vec<InitialMember>,
    pub me: InitialMember,
    pub initial_cluster: String,
}

pub(crate) fn membership(initial_cluster: &str, token: &str, name: &str, advertise: &str) -> Result<Membership> {
    let usage = |m: String| coded(exit::USAGE, m);
    let members = ids::parse_initial_cluster(initial_cluster, token).map_err(|e| usage(format!("{e:#}")))?;
    let me = members
        .iter()
        .find(|m| m.name == name)
        .cloned()
        .ok_or_else(|| usage(format!("--name {name:?} is not in --initial-cluster")))?;
    let mut advertised: Vec<String> = cli::split_list(advertise)
        .iter()
        .map(|u| ids::normalize_url(u))
        .collect::<Result<_>>()
        .map_err(|e| usage(format!("--initial-advertise-peer-urls: {e:#}")))?;
    advertised.sort();
    if advertised != me.peer_urls {
        return Err(usage(format!(
            "--initial-advertise-peer-urls {} does not match {}'s --initial-cluster URLs {}",
            advertised.join(","),
            me.name,
            me.peer_urls.join(",")
        )));
    }
    Ok(Membership { members, me, initial_cluster: initial_cluster.to_string() })
}

/// The snapshot's path and the sha256 recorded for it: by a Snapshot document on stdin, or given
/// by `--snapshot-sha256` (both: they must agree).
fn snapshot_source(arg: &str, given: Option<&str>) -> Result<(String, Option<String>)> {
    if let Some(g) = given
        && (g.len() != 64 || !g.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(coded(exit::USAGE, format!("--snapshot-sha256 {g}: not a sha256 (64 hex digits)")));
    }
    let given = given.map(str::to_ascii_lowercase);
    if !cli::is_stdin(arg) {
        return Ok((arg.to_string(), given));
    }
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let doc: Snapshot = report::read_document(&text, "--snapshot -")?;
    if let Some(g) = given.filter(|g| !g.eq_ignore_ascii_case(&doc.sha256)) {
        return Err(coded(
            exit::USAGE,
            format!("--snapshot-sha256 {g} differs from the sha256 {} of the document on stdin", doc.sha256),
        ));
    }
    Ok((doc.path.clone(), Some(doc.sha256)))
}

/// The recorded sha256 (from a document) must be the file's.
fn check_recorded(path: &str, sha: &str, recorded: Option<&str>) -> Result<()> {
    match recorded {
        Some(want) if want != sha => {
            Err(coded(exit::INTEGRITY, format!("{path}: sha256 {sha} differs from the recorded {want}")))
        }
        _ => Ok(()),
    }
}

/// The snapshot verified whole (hash rules, bbolt structure, numbers): before a swap stops etcd.
pub(crate) fn checked_snapshot(
    arg: &str,
    skip_hash_check: bool,
    sha256: Option<&str>,
) -> Result<(String, snapshot::Verified)> {
    let (path, recorded) = snapshot_source(arg, sha256)?;
    cli::input_file("--snapshot", &path)?;
    let skip = snapshot::hash_check_skipped(skip_hash_check, recorded.as_deref());
    let v = snapshot::verify(Path::new(&path), skip).map_err(|p| coded(exit::INTEGRITY, format!("{path}: {p}")))?;
    check_recorded(&path, &v.sha256, recorded.as_deref())?;
    Ok((path, v))
}

/// A new cluster token: new member and cluster IDs, so nothing of the old cluster talks to the new one.
pub(crate) fn new_token() -> String {
    format!("restore-{}", common::time::compact_utc(std::time::SystemTime::now()).to_lowercase())
}

/// Restores into a temp dir beside `data_dir` (same filesystem), which it returns with the outcome.
pub(crate) fn restore_beside(
    snapshot: &str,
    data_dir: &Path,
    m: &Membership,
    args: &Args,
) -> Result<(PathBuf, restore::Outcome)> {
    let parent = common::durable::parent_dir(data_dir);
    let base = data_dir.file_name().map_or("etcd".into(), |n| n.to_string_lossy().into_owned());
    restore_at(snapshot, &parent.join(format!(".{base}.restore-{}", std::process::id())), m, args)
}

/// The half-built dirs that restores killed midway left inside `data_dir`: a live restore holds
/// a lock on its own (a pid says nothing across PID namespaces, or without /proc).
fn dead_staging(data_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(data_dir) else { return vec![] };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = name
                .strip_prefix(".etcd-restore-")
                .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
            ours && std::fs::File::open(e.path()).is_ok_and(|f| f.try_lock().is_ok())
        })
        .map(|e| e.path())
        .collect()
}

/// Makes this run's staging dir inside the data dir and locks it for the whole restore.
fn lock_staging(staging: &Path) -> Result<std::fs::File> {
    // Under this pid's name, only a dead run of the same pid can have left one.
    let _ = std::fs::remove_dir_all(staging);
    common::backup::private_dir(staging).map_err(|e| anyhow!("{}: cannot create: {e}", staging.display()))?;
    let f = std::fs::File::open(staging)?;
    f.lock().map_err(|e| anyhow!("{}: cannot lock: {e}", staging.display()))?;
    Ok(f)
}

/// Restores into `tmp`, which it returns with the outcome; removes it on failure.
fn restore_at(snapshot: &str, tmp: &Path, m: &Membership, args: &Args) -> Result<(PathBuf, restore::Outcome)> {
    let tmp = tmp.to_path_buf();
    let _ = std::fs::remove_dir_all(&tmp);
    let opts = restore::Options {
        members: &m.members,
        own: m.me.id,
        bump_revision: args.bump_revision.filter(|b| *b > 0),
        drop_alarms: args.drop_alarms,
        copy_patch: args.copy_patch,
        write_conf_state: args.write_confstate,
    };
    match restore::restore(Path::new(snapshot), &tmp, &opts) {
        Ok(o) => {
            if o.legacy_schema && !args.write_confstate {
                common::say!(
                    "etcd-restore: warning: {snapshot} comes from etcd 3.4 (no meta/confState or storageVersion): etcd \
                     3.6.0-3.6.4 will not start from it; --write-confstate makes one they start from"
                );
            }
            Ok((tmp, o))
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(match e {
                restore::Error::Corrupt(_) => coded(exit::INTEGRITY, format!("{snapshot}: {e}")),
                restore::Error::Io(_) => anyhow!("restore into {}: {e}", tmp.display()),
                // As the swap's plan refuses it (there before etcd is stopped).
                restore::Error::BumpPast(_) => coded(exit::REFUSED, format!("refused: revision after the bump: {e}")),
            })
        }
    }
}

pub(crate) fn document(snapshot: String, data_dir: &Path, m: &Membership, o: &restore::Outcome) -> Restore {
    Restore {
        kind: "Restore".into(),
        snapshot: cli::shown_path(Path::new(&snapshot)),
        data_dir: cli::shown_path(data_dir),
        name: m.me.name.clone(),
        member_id: hex_id(o.member_id),
        cluster_id: hex_id(o.cluster_id),
        initial_cluster: m.initial_cluster.clone(),
        revision: o.revision,
        bumped_revision: o.bumped_revision,
        swapped_in: false,
        backups: vec![],
    }
}

/// Room beside `data_dir` for what a restore of `snapshot` writes: its db (at most the snapshot's
/// size) and the first WAL segment, preallocated.
pub(crate) fn room_for(snapshot: &str, data_dir: &Path) -> (bool, String) {
    let db = std::fs::metadata(snapshot).map_or(0, |m| m.len());
    common::backup::room(data_dir, db + common::disk::wal::SEGMENT_BYTES)
}

/// The bump must stay within etcd's int64 revisions: checked in the plan, before a swap stops etcd.
pub(crate) fn bump_check(plan: &mut Plan, revision: i64, bump: Option<u64>) {
    if let Some(b) = bump.filter(|b| *b > 0) {
        let ok = u64::try_from(revision).ok().and_then(|r| r.checked_add(b)).is_some_and(|x| x <= i64::MAX as u64);
        let detail = match ok {
            true => format!("{revision} + {b}"),
            false => format!("--bump-revision {b}: revision {revision} + {b} is past the largest etcd takes"),
        };
        plan.check("revision after the bump", ok, detail);
    }
}

/// A `--data-dir` that is not a dir is a mistake in the command (2), whatever a plan says.
fn check_target(data_dir: &Path) -> Result<()> {
    match std::fs::metadata(data_dir) {
        Ok(m) if !m.is_dir() => Err(coded(exit::USAGE, format!("--data-dir {}: not a directory", data_dir.display()))),
        _ => Ok(()),
    }
}

/// The offline restore's Plan: the snapshot verified, the target checked, nothing written.
fn dry_run(snapshot_arg: &str, data_dir: &Path, m: &Membership, args: &Args, shared: &cli::Shared) -> Result<u8> {
    let (path, verified) = checked_snapshot(snapshot_arg, args.skip_hash_check, args.snapshot_sha256.as_deref())?;
    let mut ids: Vec<u64> = m.members.iter().map(|x| x.id).collect();
    ids.sort();
    let mut plan = Plan::new("etcd-restore");
    plan.check(
        "snapshot verified",
        true,
        format!("{path}: revision {}, {} keys", verified.status.revision, verified.status.total_keys),
    );
    bump_check(&mut plan, verified.status.revision, args.bump_revision);
    let leftovers = dead_staging(data_dir);
    let empty = common::backup::empty_or_absent_but(data_dir, &leftovers);
    plan.check("data dir empty or absent", empty, data_dir.display().to_string());
    for l in &leftovers {
        plan.step("remove", format!("{}: a killed restore's half-built dir", l.display()), true);
    }
    let parent = common::durable::parent_dir(data_dir);
    plan.check("data dir parent exists", parent.is_dir(), parent.display().to_string());
    let (ok, detail) = room_for(&path, data_dir);
    plan.check("disk room for the restore", ok, detail);
    plan.step(
        "restore",
        format!(
            "{path} {} {} as member {} ({}) of cluster {} ({})",
            if data_dir.is_dir() { "inside (its member dir renamed into place)" } else { "beside" },
            data_dir.display(),
            m.me.name,
            hex_id(m.me.id),
            hex_id(ids::cluster_id(&ids)),
            m.initial_cluster
        ),
        false,
    );
    plan.step("rename", format!("the restored dir becomes {}", data_dir.display()), false);
    Ok(cli::plan_gate(&plan, shared.output, true)?.unwrap_or(exit::OK))
}

pub fn run(args: Args) -> Result<u8> {
    if let Some(Cmd::Plan(p)) = args.plan {
        return plan::run(p);
    }
    let shared = args.shared_flags().resolve()?;
    cli::check_bump(args.bump_revision, args.mark_compacted)?;
    let Some(snapshot_arg) = args.snapshot.clone() else {
        return Err(coded(exit::USAGE, "--snapshot is required"));
    };
    if args.swap {
        return swap::run(&args, &shared, &snapshot_arg);
    }
    let need = |v: &Option<String>, flag: &str| {
        v.clone().ok_or_else(|| coded(exit::USAGE, format!("{flag} is required (or --swap)")))
    };
    let data_dir = PathBuf::from(need(&args.data_dir, "--data-dir")?);
    let token = args.initial_cluster_token.clone().unwrap_or_else(|| "etcd-cluster".into());
    let m = membership(
        &need(&args.initial_cluster, "--initial-cluster")?,
        &token,
        &need(&args.name, "--name")?,
        &need(&args.initial_advertise_peer_urls, "--initial-advertise-peer-urls")?,
    )?;
    check_target(&data_dir)?;
    if args.dry_run {
        return dry_run(&snapshot_arg, &data_dir, &m, &args, &shared);
    }
    // A killed restore into this (empty) dir left its half-built dir there: not anyone's data.
    let leftovers = dead_staging(&data_dir);
    if common::backup::empty_or_absent_but(&data_dir, &leftovers) {
        for l in &leftovers {
            common::say!("etcd-restore: removing {}, left by a killed restore", l.display());
            std::fs::remove_dir_all(l).map_err(|e| anyhow!("remove {}: {e}", l.display()))?;
        }
    }
    if !common::backup::empty_or_absent(&data_dir) {
        return Err(coded(exit::REFUSED, format!("--data-dir {}: not empty; nothing was changed", data_dir.display())));
    }
    let parent = common::durable::parent_dir(&data_dir);
    if !parent.is_dir() {
        return Err(coded(
            exit::REFUSED,
            format!(
                "--data-dir {}: its parent {} is not a directory (create it first)",
                data_dir.display(),
                parent.display()
            ),
        ));
    }
    // Refused before anything is made (the staging dir below).
    let (path, recorded) = snapshot_source(&snapshot_arg, args.snapshot_sha256.as_deref())?;
    cli::input_file("--snapshot", &path)?;
    if let (false, detail) = room_for(&path, &data_dir) {
        return Err(coded(
            exit::REFUSED,
            format!("--data-dir {}: no room for the restore: {detail}", data_dir.display()),
        ));
    }
    // An existing empty dir (the mount point of a disk for etcd, a symlink to one) stays where
    // it is: the restore is built inside it and its member dir renamed into place. Beside it
    // would be another filesystem, and the rename at the end would fail.
    let inside = data_dir.is_dir();
    let staging = data_dir.join(format!(".etcd-restore-{}", std::process::id()));
    let _held = inside.then(|| lock_staging(&staging)).transpose()?;
    let drop_staging = || {
        if inside {
            let _ = std::fs::remove_dir_all(&staging);
        }
    };
    // The hash check and the rewrite (which checks the structure) run side by side, one per core;
    // the result is renamed into place only when both passed.
    let (sha, restored) = std::thread::scope(|s| {
        let rewrite = s.spawn(|| match inside {
            true => restore_at(&path, &staging.join("d"), &m, &args),
            false => restore_beside(&path, &data_dir, &m, &args),
        });
        let sha = snapshot::check_trailer(
            Path::new(&path),
            snapshot::hash_check_skipped(args.skip_hash_check, recorded.as_deref()),
        );
        (sha, rewrite.join().unwrap_or_else(|_| Err(anyhow!("restore thread failed"))))
    });
    let hash_ok = sha
        .map_err(|p| coded(exit::INTEGRITY, format!("{path}: {p}")))
        .and_then(|sha| check_recorded(&path, &sha, recorded.as_deref()));
    let (tmp, outcome) = match (hash_ok, restored) {
        (Ok(()), Ok(r)) => r,
        (Err(e), r) => {
            if let Ok((tmp, _)) = r {
                let _ = std::fs::remove_dir_all(tmp);
            }
            drop_staging();
            return Err(e);
        }
        (Ok(()), Err(e)) => {
            drop_staging();
            return Err(e);
        }
    };
    // Renamed into place: the data dir is whole or absent (or empty), and the rename durable
    // before we say it is done.
    let (from, to) = match inside {
        true => (tmp.join("member"), data_dir.join("member")),
        false => (tmp.clone(), data_dir.clone()),
    };
    if let Err(e) = std::fs::rename(&from, &to) {
        let _ = std::fs::remove_dir_all(&tmp);
        drop_staging();
        return Err(anyhow!("rename {} to {}: {e}", from.display(), to.display()));
    }
    drop_staging();
    common::durable::sync_parent(&to).map_err(|e| anyhow!("fsync the dir of {}: {e}", to.display()))?;
    cli::emit(&document(path, &data_dir, &m, &outcome), shared.output, render);
    Ok(exit::OK)
}

pub(crate) fn render(r: &Restore) -> String {
    let mut out = format!(
        "restored {} into {}{}\n  member {} ({}) of cluster {}, revision {}{}\n",
        r.snapshot,
        r.data_dir,
        if r.swapped_in { " (swapped in, healthy)" } else { "" },
        r.name,
        r.member_id,
        r.cluster_id,
        r.revision,
        r.bumped_revision.map(|b| format!(", bumped to {b}")).unwrap_or_default()
    );
    for b in &r.backups {
        out += &format!("  backup: {b}\n");
    }
    out
}
