//! `--swap`: the runbook's restore on one node, through the static pod. The manifest leaves the
//! manifests dir (the kubelet stops etcd), the snapshot is restored beside the data dir, the old
//! data dir goes to the backup dir, the new one is renamed into place, the manifest comes back
//! with the new cluster's flags, and etcd must come up healthy with at least the snapshot's
//! revision. Until then every step is undone on failure: old data dir and manifest back.
//!
//! A journal (`<backup root>/swap-in-progress.json`) records where the original manifest and the
//! old data dir went, so that a run killed at any step is finished by running the same command
//! again: the original manifest and old data dir are found there, whatever the kill left half done
//! is moved aside (never deleted), and the swap starts over.

use crate::{Args, Membership, checked_snapshot, document, membership, render, restore_beside};
use anyhow::{Result, anyhow};
use common::backup;
use common::cli::{self, Shared};
use common::exit::{self, coded};
use common::manifest::Manifest;
use common::nodelock::NodeLock;
use common::report::{Plan, Restore};
use common::runtime::Crictl;
use std::path::{Path, PathBuf};

const JOURNAL: &str = "swap-in-progress.json";

/// What a finished swap writes into its manifest: the snapshot's sha256, the restored member, its
/// cluster, and when (a new pod each run: the kubelet's back-off of an earlier crash loop is kept
/// per pod). A rerun of the same command then finds its work done instead of restoring again over
/// what the cluster has written since.
const RESTORED_SNAPSHOT: &str = "etcd-recovery/restored-snapshot";
const RESTORED_MEMBER: &str = "etcd-recovery/restored-member";
const RESTORED_CLUSTER: &str = "etcd-recovery/restored-cluster";
const RESTORED_AT: &str = "etcd-recovery/restored-at";

#[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct Journal {
    backup_dir: PathBuf,
    manifest_backup: Option<PathBuf>,
    old_data_backup: Option<PathBuf>,
    token: String,
    /// The manifest this run puts in place (its bytes), journaled before it is written.
    #[serde(default)]
    written_manifest: Option<String>,
    /// The snapshot this run restores (path, and sha256: its content tells a rerun of another
    /// snapshot; a raw db has none, as recover --via-restore's copy of one).
    #[serde(default)]
    snapshot: String,
    #[serde(default)]
    snapshot_sha256: String,
}

fn read_journal(root: &Path) -> Option<Journal> {
    serde_json::from_slice(&std::fs::read(root.join(JOURNAL)).ok()?).ok()
}

/// An earlier run's journal, when it still describes this node: no manifest in place (the run
/// stopped between taking it out and writing its own), the original still in place (stopped
/// before moving it), or its own manifest in place and etcd not healthy yet; and the same
/// snapshot. A journal whose run got its etcd healthy, beside a manifest someone else wrote
/// since, or of another snapshot, is retired (renamed, kept) instead: resuming it would put back
/// data and flags older than what this node runs now. Another snapshot while the manifest is out
/// is refused: only that run knows where the original went.
fn live_journal(root: &Path, shared: &Shared, retire: bool, snapshot: (&str, &str)) -> Result<Option<Journal>> {
    let path = root.join(JOURNAL);
    let Some(j) = read_journal(root) else { return Ok(None) };
    // By content: a path may be rewritten, or (recover --via-restore) differ at each run. Journals
    // of older versions, and raw dbs, have no sha256.
    let other_snapshot = !j.snapshot_sha256.is_empty() && !snapshot.1.is_empty() && j.snapshot_sha256 != snapshot.1;
    let in_place = std::fs::read_to_string(&shared.manifest).ok();
    let ours = in_place.is_some() && in_place == j.written_manifest;
    // Killed between journaling the manifest's move and making it: the one in place is the original.
    let not_moved_yet = j.manifest_backup.as_ref().is_some_and(|d| backup::moved_to(&shared.manifest, d).is_none());
    let stale = match &in_place {
        None if other_snapshot => {
            return Err(coded(
                exit::REFUSED,
                format!(
                    "an interrupted swap of {} has this node's manifest out (journal {}): run that command again \
                     to finish it first{}",
                    j.snapshot,
                    path.display(),
                    way_back(&j, shared).map(|w| format!(", or go back: {w}")).unwrap_or_default()
                ),
            ));
        }
        None => None,
        Some(_) if not_moved_yet && !other_snapshot => None,
        Some(_) if !ours => Some("a manifest it did not write is in place"),
        Some(_) if other_snapshot => Some("its manifest is in place, and it restored another snapshot"),
        Some(_) => Manifest::load(&shared.manifest)
            .ok()
            .and_then(|m| m.client_urls().into_iter().next())
            .filter(|url| common::cluster::wait_member(shared, url, std::time::Duration::from_secs(5)).is_ok())
            .map(|_| "its etcd is healthy: it had finished"),
    };
    let Some(why) = stale else { return Ok(Some(j)) };
    if !retire {
        return Ok(None);
    }
    let retired = root.join(format!("{JOURNAL}.{}", common::time::compact_utc(std::time::SystemTime::now())));
    match std::fs::rename(&path, &retired) {
        Ok(()) => {
            common::say!("etcd-restore: an earlier swap's journal is stale ({why}); kept as {}", retired.display())
        }
        Err(e) => common::say!("etcd-restore: an earlier swap's journal is stale ({why}) but could not be moved: {e}"),
    }
    Ok(None)
}

fn save_journal(root: &Path, j: &Journal) -> Result<()> {
    common::manifest::write_atomic(&root.join(JOURNAL), serde_json::to_string_pretty(j)?.as_bytes())
}

/// A path as the journal keeps it: absolute, symlinks resolved when it exists.
fn absolute(p: &str) -> String {
    std::fs::canonicalize(p).or_else(|_| std::path::absolute(p)).map_or(p.to_string(), |a| a.display().to_string())
}

/// Moves a leftover of an interrupted run aside (into `<backup>/restore-failed/`), never deleting it.
fn set_aside(p: &Path, backup_dir: &Path) -> Result<PathBuf> {
    let failed = backup_dir.join("restore-failed");
    backup::private_dir_all(&failed)?;
    let name = format!(
        "{}.{}",
        p.file_name().map_or("x".into(), |n| n.to_string_lossy().into_owned()),
        common::time::compact_utc(std::time::SystemTime::now())
    );
    // Two set aside within the same second (a resumed run's leftover, then its undo): a name each.
    let dest = (0..)
        .map(|i| failed.join(if i == 0 { name.clone() } else { format!("{name}.{i}") }))
        .find(|d| std::fs::symlink_metadata(d).is_err())
        .expect("a free name");
    // Across filesystems (a --backup-dir elsewhere) as move_aside does it: a dir beside itself.
    backup::move_to(p, &dest)
}

/// Moves `src` into the backup dir, to where the journal's `slot` says, and journals that before
/// the move (write-ahead): a kill at any point of it leaves `src` where the journal says or still
/// in place. When an interrupted run moved it already, what stands in its place now is that run's
/// own work and goes aside. Returns where the original is, if it existed.
fn journaled_move(
    root: &Path,
    j: &mut Journal,
    slot: fn(&mut Journal) -> &mut Option<PathBuf>,
    src: &Path,
    step: &str,
) -> Result<Option<PathBuf>> {
    let backup_dir = j.backup_dir.clone();
    let dest = match slot(j).clone() {
        Some(d) => d,
        None => backup::aside_in(src, &backup_dir)?,
    };
    if let Some(at) = backup::moved_to(src, &dest) {
        if src.exists() {
            set_aside(src, &backup_dir)?;
        }
        return Ok(Some(at));
    }
    if !src.exists() {
        return Ok(None);
    }
    *slot(j) = Some(dest.clone());
    save_journal(root, j)?;
    common::failpoint::hit(&format!("swap-{step}-journaled"));
    let to = backup::move_to(src, &dest)?;
    common::failpoint::hit(&format!("swap-{step}-moved"));
    if to != dest {
        // Renamed beside itself (the backup dir is on another filesystem): journal where. Only a
        // refinement (a rerun finds it from `dest` too): failing it must not hide the move from
        // the undo.
        *slot(j) = Some(to.clone());
        if let Err(e) = save_journal(root, j) {
            log::warn!("journal the move to {}: {e:#}", to.display());
        }
    }
    Ok(Some(to))
}

/// The shell commands that put the old data dir and the original manifest back, for an operator
/// to run once etcd has stopped: what stands in the data dir's place goes aside first, beside
/// itself (same filesystem), and nothing is moved over a file (`mv -n`, names of their own).
fn go_back(
    manifest_in_place: Option<Option<String>>,
    new_in_place: bool,
    old: Option<&Path>,
    manifest_backup: Option<&Path>,
    data_dir: &Path,
    backup_dir: &Path,
    manifest: &Path,
) -> String {
    let q = |p: &Path| crate::plan::shell_quote(&p.display().to_string());
    let ts = common::time::compact_utc(std::time::SystemTime::now());
    let mut todo = Vec::new();
    let mut first = String::new();
    if let Some(pod) = manifest_in_place {
        // Not into the backup dir by its name: the original's copy is there under it.
        let written = backup_dir.join(format!("etcd.yaml.written-{ts}"));
        // The static pod's container only: other kube-system pods run containers named etcd too.
        let which = match pod {
            Some(p) => format!("--label io.kubernetes.pod.name={}", crate::plan::shell_quote(&p)),
            None => "--label io.kubernetes.pod.namespace=kube-system".to_string(),
        };
        first = format!(
            "mv -n {} {} && while crictl ps -q --label io.kubernetes.container.name=etcd {which} | grep -q .; do \
             sleep 1; done && ",
            q(manifest),
            q(&written)
        );
    }
    if new_in_place {
        let name = data_dir.file_name().map_or("etcd".into(), |n| n.to_string_lossy().into_owned());
        let aside = data_dir.with_file_name(format!("{name}.restored-{ts}"));
        todo.push(format!("mv -n {} {}", q(data_dir), q(&aside)));
    }
    if let Some(old) = old {
        todo.push(format!("mv -n {} {}", q(old), q(data_dir)));
    }
    if let Some(m) = manifest_backup {
        // Through a dot file and a rename: the kubelet never reads half a manifest.
        let tmp = common::manifest::temp_path(manifest).unwrap_or_default();
        // cp -p keeps its mode (0600), sync makes it durable before etcd starts on it.
        todo.push(format!("cp -p {} {} && mv {} {} && sync", q(m), q(&tmp), q(&tmp), q(manifest)));
    }
    first + &todo.join(" && ")
}

/// [`go_back`] from an interrupted run's journal, when its manifest is out and so the node down.
fn way_back(j: &Journal, shared: &Shared) -> Option<String> {
    let manifest_backup = j.manifest_backup.as_ref().and_then(|d| backup::moved_to(&shared.manifest, d))?;
    if shared.manifest.exists() {
        return None;
    }
    let data_dir = Manifest::load(&manifest_backup).ok()?.data_dir(&shared.rootfs).ok()?;
    let old = j.old_data_backup.as_ref().and_then(|d| backup::moved_to(&data_dir, d));
    let new_in_place = old.is_some() && data_dir.exists();
    let cmds =
        go_back(None, new_in_place, old.as_deref(), Some(&manifest_backup), &data_dir, &j.backup_dir, &shared.manifest);
    Some(cmds)
}

/// What has been done so far (by this run, or by the interrupted run it resumes), to undo it.
#[derive(Default)]
struct Done {
    manifest_backup: Option<PathBuf>,
    old_data_backup: Option<PathBuf>,
    /// Something other than the old data dir is in its place.
    new_in_place: bool,
    manifest_written: bool,
    /// etcd was seen stopped since a manifest of ours was last in place: the data dirs can move.
    stopped: bool,
    /// A data dir was there before the swap (in place, or moved by the run this one resumes).
    had_data: bool,
    tmp: Option<PathBuf>,
}

/// Puts the old data dir and the original manifest back; says what it did and what it could not,
/// and whether it is settled (false: stopped midway, the journal must stay for a rerun).
fn undo(
    done: &Done,
    original: &Manifest,
    data_dir: &Path,
    backup_dir: &Path,
    crictl: &Crictl,
    timeout: std::time::Duration,
) -> (String, bool) {
    let mut said = Vec::new();
    let taken_out = match done.manifest_written {
        true => {
            let t = set_aside(&original.path, backup_dir);
            match &t {
                Ok(_) => said.push("new manifest taken out".to_string()),
                Err(e) => said.push(format!("new manifest NOT taken out: {e:#}")),
            }
            t.map(|_| ())
        }
        false => Ok(()),
    };
    let moves_data = done.new_in_place || done.old_data_backup.is_some();
    if moves_data
        && !done.stopped
        && let Err(why) = crictl.wait_stopped_on(timeout, data_dir)
    {
        // etcd may still run on data a swap put in place: moving dirs from under it, or starting the old
        // member beside it, is worse than stopping here with the way back spelled out.
        said.push(why);
        let pod = crictl.find_etcd().ok().flatten().map(|c| c.pod_name);
        let todo = go_back(
            taken_out.is_err().then_some(pod),
            done.new_in_place,
            done.old_data_backup.as_deref(),
            done.manifest_backup.as_deref(),
            data_dir,
            backup_dir,
            &original.path,
        );
        said.push(format!(
            "stopped undoing; once etcd has stopped, run the same command again to finish the swap, or go back: {todo}"
        ));
        return (said.join("; "), false);
    }
    // The original manifest goes back only onto the old data dir: on anything else it would run
    // etcd on the restored data, or bootstrap an empty cluster in an empty dir.
    let mut data_back = true;
    if done.new_in_place && data_dir.exists() {
        match set_aside(data_dir, backup_dir) {
            Ok(to) => said.push(format!("restored data dir moved to {}", to.display())),
            Err(e) => {
                said.push(format!("restored data dir NOT moved: {e:#}"));
                data_back = false;
            }
        }
    }
    if let Some(old) = done.old_data_backup.as_ref().filter(|_| data_back) {
        // Durable before the manifest that starts etcd on it.
        match std::fs::rename(old, data_dir).and_then(|()| common::durable::sync_parent(data_dir)) {
            Ok(()) => said.push(format!("old data dir back in {}", data_dir.display())),
            Err(e) => {
                said.push(format!("old data dir NOT back, it is in {}: {e}", old.display()));
                data_back = false;
            }
        }
    }
    // Nothing in the place of a data dir there was (its move went unrecorded, say): the original
    // manifest would bootstrap a new, empty cluster there (the kubelet creates the hostPath).
    if data_back && done.manifest_backup.is_some() && done.had_data && !data_dir.exists() {
        said.push(format!("no data dir in {}", data_dir.display()));
        data_back = false;
    }
    if let (Some(m), false) = (&done.manifest_backup, data_back) {
        said.push(format!(
            "original manifest NOT put back (the old data dir is not in place), it is in {}: run the same command \
             again to finish the swap",
            m.display()
        ));
        return (said.join("; "), false);
    }
    if let Some(m) = &done.manifest_backup {
        let put_back = std::fs::read(m)
            .map_err(anyhow::Error::from)
            .and_then(|b| common::manifest::write_atomic(&original.path, &b));
        match put_back {
            Ok(()) => said.push("original manifest back".into()),
            Err(e) => said.push(format!("original manifest NOT back, it is in {}: {e:#}", m.display())),
        }
    }
    if let Some(t) = &done.tmp {
        let _ = std::fs::remove_dir_all(t);
    }
    (said.join("; "), true)
}

/// Half-built restore dirs of killed runs (`.<data dir>.restore-<pid>` beside it) go aside.
fn leftover_restores(data_dir: &Path, backup_dir: &Path) -> Result<()> {
    let parent = common::durable::parent_dir(data_dir);
    let base = data_dir.file_name().map_or("etcd".into(), |n| n.to_string_lossy().into_owned());
    for e in std::fs::read_dir(parent)?.filter_map(Result::ok) {
        if is_leftover_restore(&e.file_name().to_string_lossy(), &base) {
            set_aside(&e.path(), backup_dir)?;
        }
    }
    Ok(())
}

/// A half-built restore dir, not one set aside already: across filesystems that is renamed
/// beside itself (`….etcd-recovery-…`), and renaming it again each run would grow its name
/// past what a filesystem takes.
fn is_leftover_restore(name: &str, data_dir_name: &str) -> bool {
    name.strip_prefix(&format!(".{data_dir_name}.restore-")).is_some_and(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
}

/// The manifest the swap starts from: the original an interrupted run moved into its backup (its
/// journal says where), else the one in place.
fn original_manifest(journal: Option<&Journal>, shared: &Shared) -> Result<Manifest> {
    match journal.and_then(|j| j.manifest_backup.clone()).filter(|p| p.is_file()) {
        Some(p) => {
            let mut m = Manifest::load(&p)?;
            m.path = shared.manifest.clone();
            Ok(m)
        }
        None => Manifest::load(&shared.manifest),
    }
}

/// Whether a flag given repeats the manifest's setting: peer URLs as etcd reads them (plan writes
/// them normalized and sorted), a name as it is.
fn same_setting(flag: &str, given: &str, runs: &str) -> bool {
    if flag == "name" {
        return given == runs;
    }
    let norm = |l: &str| {
        let mut v: Vec<String> = cli::split_list(l)
            .iter()
            .map(|u| common::disk::ids::normalize_url(u).unwrap_or_else(|_| u.clone()))
            .collect();
        v.sort();
        v
    };
    norm(given) == norm(runs)
}

/// This node's member name, peer URLs and data dir, from the manifest; flags may only repeat them.
fn identity(args: &Args, shared: &Shared, original: &Manifest) -> Result<(String, String, PathBuf)> {
    let name = args
        .name
        .clone()
        .or_else(|| original.flag("name"))
        .ok_or_else(|| coded(exit::USAGE, "no --name, none in the manifest"))?;
    let peer = args
        .initial_advertise_peer_urls
        .clone()
        .or_else(|| original.flag("initial-advertise-peer-urls"))
        .ok_or_else(|| coded(exit::USAGE, "no --initial-advertise-peer-urls, none in the manifest"))?;
    // The manifest keeps its --name and peer URLs (only the cluster flags are rewritten): others
    // would make a member etcd refuses to start, or another node's member (a plan line pasted on
    // the wrong node) running twice.
    for (flag, given) in [("name", &args.name), ("initial-advertise-peer-urls", &args.initial_advertise_peer_urls)] {
        let runs = original.flag(flag).unwrap_or_default();
        if let Some(g) = given
            && !same_setting(flag, g, &runs)
        {
            return Err(coded(
                exit::USAGE,
                format!(
                    "--{flag} {g}: this node's manifest runs etcd with --{flag}={runs}; run each node's own \
                     command on that node"
                ),
            ));
        }
    }
    // The manifest's data dir is the one etcd will start on: another --data-dir would be restored
    // and never used.
    let data_dir = original.data_dir_matching(args.data_dir.as_deref(), &shared.rootfs)?;
    Ok((name, peer, data_dir))
}

/// What a swap did: only printed its plan (`--dry-run`, or refused), or swapped the data in.
pub enum Swapped {
    Planned(u8),
    Done(Box<Restore>),
}

pub fn run(args: &Args, shared: &Shared, snapshot_arg: &str) -> Result<u8> {
    match swap(args, shared, snapshot_arg)? {
        Swapped::Planned(code) => Ok(code),
        Swapped::Done(doc) => {
            cli::emit(doc.as_ref(), shared.output, render);
            Ok(exit::OK)
        }
    }
}

/// Whether the old cluster can no longer go on without this node: its other voters that answer,
/// and that the new cluster does not take in (option 2 restores them too), are fewer than a
/// majority. Else they keep serving the old data next to the restored node: two clusters, and
/// the control plane split between them. A member hidden by a TLS failure counts as answering.
/// Members are told apart by name or peer URL (etcd's spelling of it).
fn old_cluster_gone(
    shared: &Shared,
    manifest: &Manifest,
    name: &str,
    data_dir: &Path,
    m: &Membership,
) -> (bool, String) {
    let survey = match common::cluster::survey_with_known(shared, Some(manifest), data_dir) {
        Ok(s) => s,
        Err(e) => return (false, format!("could not ask the old cluster: {e:#} (--force to go on)")),
    };
    let norm = |u: &String| common::disk::ids::normalize_url(u).unwrap_or_else(|_| u.clone());
    let mine: Vec<String> =
        cli::split_list(&manifest.flag("initial-advertise-peer-urls").unwrap_or_default()).iter().map(norm).collect();
    let same = |x: &common::report::MemberStatus, names: &[&str], urls: &[String]| {
        (!x.name.is_empty() && names.contains(&x.name.as_str())) || x.peer_urls.iter().any(|u| urls.contains(&norm(u)))
    };
    let new_names: Vec<&str> = m.members.iter().map(|x| x.name.as_str()).collect();
    let new_urls: Vec<String> = m.members.iter().flat_map(|x| &x.peer_urls).map(norm).collect();
    let voters: Vec<_> = survey.status.members.iter().filter(|x| !x.is_learner).collect();
    let needed = voters.len() / 2 + 1;
    let others: Vec<_> =
        voters.iter().filter(|x| !same(x, &[name], &mine) && !same(x, &new_names, &new_urls)).collect();
    let outsiders: Vec<String> = others
        .iter()
        .filter(|x| x.endpoint.reachable || survey.tls_failed(&x.endpoint.url))
        .map(|x| x.label())
        .collect();
    // Counted as down, as recover counts them; named, since a partition looks the same.
    let silent: Vec<String> = others
        .iter()
        .filter(|x| !x.endpoint.reachable && !survey.tls_failed(&x.endpoint.url))
        .map(|x| format!("{}: {}", x.label(), x.endpoint.error.clone().unwrap_or_default()))
        .collect();
    let down = match silent.is_empty() {
        true => String::new(),
        false => format!("; counted as down: {}", silent.join("; ")),
    };
    match outsiders.len() >= needed && !voters.is_empty() {
        false if outsiders.is_empty() => (true, format!("no other member of the old cluster answers{down}")),
        false => (
            true,
            format!(
                "{} of {} voters answer ({}): too few to go on{down}",
                outsiders.len(),
                voters.len(),
                outsiders.join(", ")
            ),
        ),
        true => (
            false,
            format!(
                "{} of {} voters of the old cluster still serve ({}): stop them first (etcd-member clean --force there: \
                 their members answer), or \
                 restore every node at once (etcd-restore plan); --force to go on anyway",
                outsiders.len(),
                voters.len(),
                outsiders.join(", ")
            ),
        ),
    }
}

/// This node already runs the restore of this snapshot that the same command made: its manifest
/// says so (and asks for the same cluster) and the restored member answers healthy there. The
/// Restore document of that work, or None.
fn restored_already(
    args: &Args,
    shared: &Shared,
    sha256: &str,
    snapshot: &str,
    data_dir: &Path,
    name: &str,
) -> Option<Restore> {
    let m = Manifest::load(&shared.manifest).ok()?;
    let note = |k: &str| m.annotations.get(k).cloned().unwrap_or_default();
    if sha256.is_empty() || note(RESTORED_SNAPSHOT) != sha256 {
        return None;
    }
    let same = |given: &Option<String>, flag: &str| {
        given.as_ref().is_none_or(|g| cli::split_list(g) == cli::split_list(&m.flag(flag).unwrap_or_default()))
    };
    if !same(&args.initial_cluster, "initial-cluster") || !same(&args.initial_cluster_token, "initial-cluster-token") {
        return None;
    }
    let url = m.client_urls().into_iter().next()?;
    let (id, revision) = common::cluster::wait_member(shared, &url, std::time::Duration::from_secs(5)).ok()?;
    if !common::report::same_id(&common::report::hex_id(id), &note(RESTORED_MEMBER)) {
        return None;
    }
    common::say!(
        "etcd-restore: this node already runs this snapshot's restore (member {}, since {}): nothing to do; \
         --restore-again restores it again over what was written since",
        note(RESTORED_MEMBER),
        note(RESTORED_AT)
    );
    Some(Restore {
        kind: "Restore".into(),
        snapshot: cli::shown_path(Path::new(snapshot)),
        data_dir: cli::shown_path(data_dir),
        name: name.to_string(),
        member_id: note(RESTORED_MEMBER),
        cluster_id: note(RESTORED_CLUSTER),
        initial_cluster: m.flag("initial-cluster").unwrap_or_default(),
        revision,
        bumped_revision: None,
        swapped_in: false,
        backups: vec![],
    })
}

/// The swap itself, without printing its result (etcd-quorum recover --via-restore uses it).
pub fn swap(args: &Args, shared: &Shared, snapshot_arg: &str) -> Result<Swapped> {
    let timeout = cli::timeout_flag("timeout", &args.timeout)?;
    let root = backup::backup_root(shared, args.backup_dir.as_deref());
    // Bad input is refused first (a usage error, not another run's lock): checked on a look at
    // the journal here, and again under the lock below.
    // With an interrupted run's manifest out the node is down: a refusal says how to go back.
    let way = |e: anyhow::Error| match read_journal(&root).and_then(|j| way_back(&j, shared)) {
        Some(w) => exit::with_state(e, format!("an interrupted swap has this node's manifest out; to go back: {w}")),
        None => e,
    };
    // No manifest and no journal here: an interrupted swap's journal is under the backup dir it
    // was given, which this run must be given too.
    // What is missing comes first: more often a wrong --rootfs or --manifest than a lost journal.
    let no_manifest = |e: anyhow::Error| match shared.manifest.exists() || read_journal(&root).is_some() {
        true => e,
        false => coded(
            exit::code_of(&e),
            format!(
                "{e:#} (no etcd manifest here: check --rootfs/--manifest; or, if an interrupted swap took it out \
                 with another --backup-dir, run that swap again with that --backup-dir: there is no swap journal \
                 in {})",
                root.display()
            ),
        ),
    };
    identity(args, shared, &original_manifest(read_journal(&root).as_ref(), shared).map_err(no_manifest)?)
        .map_err(way)?;
    // An interrupted earlier run: its journal says where the original manifest went.
    // Held from before the journal is judged: a running swap's journal is never taken for stale.
    let mut lock = NodeLock::unless_dry_run(args.dry_run, &shared.manifest)?;
    let (path, verified) =
        checked_snapshot(snapshot_arg, args.skip_hash_check, args.snapshot_sha256.as_deref()).map_err(way)?;
    let snapshot_id = (absolute(&path), verified.sha256.clone());
    // A dry run judges the journal as the real run would, and leaves a stale one where it is.
    let journal = live_journal(&root, shared, !args.dry_run, (&snapshot_id.0, &snapshot_id.1))?;
    let original = original_manifest(journal.as_ref(), shared)?;
    if journal.as_ref().is_some_and(|j| j.manifest_backup.as_ref().is_some_and(|p| p.is_file())) {
        common::say!("etcd-restore: finishing an interrupted swap (journal {})", root.join(JOURNAL).display());
    }
    let (name, peer, data_dir) = identity(args, shared, &original)?;
    if journal.is_none()
        && !args.restore_again
        && let Some(doc) = restored_already(args, shared, &snapshot_id.1, &path, &data_dir, &name)
    {
        lock.tidy();
        if args.dry_run {
            let detail = format!("this node runs this snapshot's restore already (member {})", doc.member_id);
            return cli::nothing_to_do("etcd-restore --swap", detail, shared.output).map(Swapped::Planned);
        }
        return Ok(Swapped::Done(Box::new(doc)));
    }
    let initial = args
        .initial_cluster
        .clone()
        .unwrap_or_else(|| cli::split_list(&peer).iter().map(|u| format!("{name}={u}")).collect::<Vec<_>>().join(","));
    let token = args
        .initial_cluster_token
        .clone()
        .or_else(|| journal.as_ref().map(|j| j.token.clone()))
        .unwrap_or_else(crate::new_token);
    let m: Membership = membership(&initial, &token, &name, &peer)?;
    let client_url = original
        .client_urls()
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("manifest {}: no client URL", original.path.display()))?;
    let crictl = Crictl::new(&shared.crictl);
    // The manifest this swap will write, made now: one that cannot be edited is found before etcd
    // is stopped, not after the data dir was swapped.
    let new_manifest = (|| -> Result<String> {
        let mut new = original.clone();
        new.set_flag("initial-cluster", &initial)?;
        new.set_flag("initial-cluster-state", "new")?;
        new.set_flag("initial-cluster-token", &token)?;
        new.remove_flag("force-new-cluster")?;
        let ids: Vec<u64> = m.members.iter().map(|x| x.id).collect();
        new.set_annotation(RESTORED_SNAPSHOT, &snapshot_id.1)?;
        new.set_annotation(RESTORED_MEMBER, &common::report::hex_id(m.me.id))?;
        new.set_annotation(RESTORED_CLUSTER, &common::report::hex_id(common::disk::ids::cluster_id(&ids)))?;
        new.set_annotation(RESTORED_AT, &common::time::compact_utc(std::time::SystemTime::now()))?;
        new.to_yaml()
    })();

    let mut plan = Plan::new("etcd-restore --swap");
    common::manifest::rivals_check(&mut plan, &shared.manifest);
    common::manifest::hidden_check(&mut plan, &original, None);
    plan.check(
        "snapshot verified",
        true,
        format!("{path}: revision {}, {} keys", verified.status.revision, verified.status.total_keys),
    );
    crate::bump_check(&mut plan, verified.status.revision, args.bump_revision);
    // Asked on a resumed run too (this node's restored member is not counted): the old members
    // may be back since.
    // A resumed run's data dir may hold its restored db: the members the old one knew are asked.
    let old_dir =
        journal.as_ref().and_then(|j| j.old_data_backup.as_ref()).and_then(|d| backup::moved_to(&data_dir, d));
    let old_data = old_dir.as_deref().unwrap_or(&data_dir);
    // The data replaced went further than the snapshot: without a bump, the revisions it served
    // since are served again with other contents, and Kubernetes clients that hold them (watch
    // caches, informers' resourceVersions) are not told. Said, not refused: a rollback is often
    // what the restore is for.
    let old_revision = common::disk::inspect::read_db(&old_data.join("member/snap/db")).map_or(0, |d| d.revision);
    // The restored cluster serves the snapshot's contents at its revision plus the bump: the old
    // data must not have reached that revision (without a bump, any revision past the snapshot's).
    let bump = args.bump_revision.map_or(0, |b| b.min(i64::MAX as u64) as i64);
    let served_from = verified.status.revision.saturating_add(bump);
    if old_revision > served_from || (bump > 0 && old_revision == served_from) {
        let w = format!(
            "{} was at revision {old_revision}, the restore starts at {served_from}: revisions up to {old_revision} \
             would be served again with other contents; under Kubernetes, give --bump-revision more than every \
             revision served since (etcd's guide uses 1000000000) and --mark-compacted",
            data_dir.display()
        );
        common::say!("etcd-restore: warning: {w}");
        plan.check("no revision served again", true, format!("warning: {w}"));
    }
    let (alone, detail) = old_cluster_gone(shared, &original, &name, old_data, &m);
    plan.check("no majority of the old cluster serves beside the new one", alone || args.force, detail);
    crictl.plan_check(&mut plan, None);
    plan.check(
        "the manifest can be rewritten",
        new_manifest.is_ok(),
        match &new_manifest {
            Ok(_) => "--initial-cluster, --initial-cluster-state=new, --initial-cluster-token, annotations".to_string(),
            Err(e) => format!("{e:#}"),
        },
    );
    // The health check after the swap talks TLS with our client certificate: an expired one
    // (kubeadm's last a year) would undo a good swap after --timeout.
    let dialer = common::client::Dialer::new(shared, client_url.starts_with("https://"));
    plan.check(
        "client certificate usable",
        dialer.is_ok(),
        dialer.err().map_or_else(|| "the health check can connect".to_string(), |e| format!("{e:#}")),
    );
    let parent = common::durable::parent_dir(&data_dir);
    plan.check("data dir parent exists", parent.is_dir(), parent.display().to_string());
    let (ok, detail) = crate::room_for(&path, &data_dir);
    plan.check("disk room for the restore", ok, detail);
    backup::movable_check(&mut plan, &data_dir);
    backup::writable_check(&mut plan, &root);
    plan.step("move manifest", format!("{} -> {}/<timestamp>/", original.path.display(), root.display()), true);
    plan.step("wait", format!("until the kubelet has stopped etcd (at most {timeout:?})"), false);
    plan.step(
        "restore",
        format!(
            "{path} beside {} as member {} ({}) of {initial}",
            data_dir.display(),
            m.me.name,
            common::report::hex_id(m.me.id)
        ),
        false,
    );
    plan.step("move old data dir", format!("{} -> {}/<timestamp>/", data_dir.display(), root.display()), true);
    plan.step("swap in", format!("the restored dir becomes {}", data_dir.display()), true);
    plan.step(
        "write manifest",
        format!("--initial-cluster={initial} --initial-cluster-state=new --initial-cluster-token={token}"),
        true,
    );
    plan.step("verify", format!("{client_url} healthy with revision >= {}", verified.status.revision), false);
    // Refused while resuming: the node is down (manifest out); the way back is spelled out.
    let gate = cli::plan_gate(&plan, shared.output, args.dry_run).map_err(way)?;
    if let Some(code) = gate {
        return Ok(Swapped::Planned(code));
    }
    cli::confirm(args.yes, &format!("replace this node's etcd data ({}) with {path}", data_dir.display()))?;
    lock.begin();

    let mut j = match journal {
        Some(j) => j,
        None => Journal {
            backup_dir: backup::new_backup_dir(&root)?,
            token: token.clone(),
            snapshot: snapshot_id.0,
            snapshot_sha256: snapshot_id.1,
            ..Default::default()
        },
    };
    let backup_dir = j.backup_dir.clone();
    backup::private_dir_all(&backup_dir)?;
    save_journal(&root, &j)?;
    let mut done = Done::default();
    // Resumed after the old data dir went: what stands in its place is the interrupted run's work,
    // and an undo must bring the old one back.
    if let Some(at) = j.old_data_backup.as_ref().and_then(|d| backup::moved_to(&data_dir, d)) {
        done.old_data_backup = Some(at);
        done.new_in_place = data_dir.exists();
    }
    done.had_data = done.old_data_backup.is_some() || data_dir.exists();
    let result = (|| -> Result<(common::disk::restore::Outcome, i64)> {
        done.manifest_backup = journaled_move(&root, &mut j, |j| &mut j.manifest_backup, &original.path, "manifest")?;
        crictl.wait_stopped_on(timeout, &data_dir).map_err(|why| coded(exit::TIMEOUT, why))?;
        done.stopped = true;
        common::failpoint::hit("swap-stopped");
        leftover_restores(&data_dir, &backup_dir)?;
        let (tmp, outcome) = restore_beside(&path, &data_dir, &m, args)?;
        done.tmp = Some(tmp.clone());
        // Owned as the old data dir is: an etcd that runs as another user (kubeadm's rootless
        // control plane) could not open a root-owned one.
        let old_dir = done.old_data_backup.clone().unwrap_or_else(|| data_dir.clone());
        if let (Ok(old), Ok(new)) = (std::fs::metadata(&old_dir), std::fs::metadata(&tmp)) {
            use std::os::unix::fs::MetadataExt;
            if (old.uid(), old.gid()) != (new.uid(), new.gid()) {
                backup::chown_tree(&tmp, old.uid(), old.gid())
                    .map_err(|e| anyhow!("give {} to {}:{}: {e}", tmp.display(), old.uid(), old.gid()))?;
            }
        }
        common::failpoint::hit("swap-restored");
        done.old_data_backup = journaled_move(&root, &mut j, |j| &mut j.old_data_backup, &data_dir, "old-data")?;
        std::fs::rename(&tmp, &data_dir)
            .map_err(|e| anyhow!("rename {} to {}: {e}", tmp.display(), data_dir.display()))?;
        done.tmp = None;
        done.new_in_place = true;
        // Durable before the manifest that starts etcd on it: else a crash could keep the manifest
        // and lose the rename, and etcd would bootstrap an empty cluster in an empty dir.
        common::durable::sync_parent(&data_dir).map_err(|e| anyhow!("fsync the dir of {}: {e}", data_dir.display()))?;
        common::failpoint::hit("swap-swapped-in");
        // Journaled first: a rerun after a kill right after the write knows the manifest as ours.
        let text = new_manifest.as_ref().map_err(|e| anyhow!("{e:#}"))?.clone();
        j.written_manifest = Some(text.clone());
        save_journal(&root, &j)?;
        common::failpoint::hit("swap-new-manifest-journaled");
        done.stopped = false;
        common::manifest::write_atomic(&original.path, text.as_bytes())?;
        done.manifest_written = true;
        common::failpoint::hit("swap-manifest-written");
        let (id, revision) = common::cluster::wait_member(shared, &client_url, timeout)?;
        if id != outcome.member_id {
            return Err(anyhow!(
                "{client_url} answers as member {}, not the restored {}",
                common::report::hex_id(id),
                common::report::hex_id(outcome.member_id)
            ));
        }
        let want = outcome.bumped_revision.unwrap_or(outcome.revision);
        if revision < want {
            return Err(anyhow!("{client_url} is at revision {revision}, below the snapshot's {want}"));
        }
        Ok((outcome, revision))
    })();
    // Done or undone, no run is left to finish: the journal goes once the outcome is settled (a
    // kill during the undo's wait leaves it, and the rerun finds the original manifest there).
    let journal_done = || {
        let _ = std::fs::remove_file(root.join(JOURNAL));
    };
    match result {
        Ok((outcome, _)) => {
            journal_done();
            let mut doc = document(path, &data_dir, &m, &outcome);
            doc.swapped_in = true;
            doc.backups = [&done.manifest_backup, &done.old_data_backup]
                .into_iter()
                .flatten()
                .map(|p| p.display().to_string())
                .collect();
            Ok(Swapped::Done(Box::new(doc)))
        }
        Err(e) => {
            let (state, settled) = undo(&done, &original, &data_dir, &backup_dir, &crictl, timeout);
            if settled {
                journal_done();
            }
            Err(exit::with_state(
                e,
                format!("undone: {}", if state.is_empty() { "nothing had changed" } else { &state }),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan line's peer URLs (normalized, sorted) are the manifest's in another spelling.
    #[test]
    fn a_plan_line_repeats_the_manifest() {
        let flag = "initial-advertise-peer-urls";
        assert!(same_setting(
            flag,
            "https://10.0.0.2:2380,https://10.0.0.1:2380",
            "HTTPS://10.0.0.1:2380,https://10.0.0.2:2380"
        ));
        assert!(!same_setting(flag, "https://10.0.0.1:2380", "https://10.0.0.1:2380,https://10.0.0.2:2380"));
        assert!(!same_setting(flag, "https://10.0.0.3:2380", "https://10.0.0.1:2380"));
        assert!(same_setting("name", "cp1", "cp1") && !same_setting("name", "cp1", "CP1"));
    }

    #[test]
    fn leftovers_are_the_half_built_dirs_only() {
        assert!(is_leftover_restore(".etcd.restore-4242", "etcd"));
        assert!(!is_leftover_restore(".etcd.restore-4242.etcd-recovery-.etcd.restore-4242.20261124T150000Z", "etcd"));
        assert!(!is_leftover_restore(".etcd.restore-4242", "etcd-main"));
        assert!(!is_leftover_restore("etcd", "etcd"));
    }
}
