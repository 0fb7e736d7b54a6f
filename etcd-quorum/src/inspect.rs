//! `inspect`: a member's data dir read offline into a `DataDirInspection`.

use anyhow::Result;
use common::cli::{self, HasShared, Shared};
use common::disk::inspect;
use common::exit::{self, coded};
use common::manifest::Manifest;
use common::report::{DataDirInspection, DiskMember, hex_id};
use std::path::{Path, PathBuf};

common::with_shared_flags! {
    /// read a member's data dir offline (WAL, snap, db): identity, raft position, revision
    #[argh(
        subcommand,
        name = "inspect",
        example = "This node's data dir (from its manifest), with etcd up or down:\n  $ etcd-quorum inspect"
    )]
    pub struct InspectArgs {
        /// the data dir (default: the manifest's --data-dir)
        #[argh(option)]
        pub data_dir: Option<String>,
    }
}

/// The data dir: the flag, else the manifest's (through its hostPath mount). One given that is
/// not a dir is a mistake in the command (2), not damaged data; the manifest's missing is a node
/// without member data (its disk lost, say), not damage either.
pub(crate) fn data_dir(flag: Option<&str>, shared: &Shared, manifest: Option<&Manifest>) -> Result<PathBuf> {
    let dir = match (flag, manifest) {
        (Some(d), _) => PathBuf::from(d),
        (None, Some(m)) => m.data_dir(&shared.rootfs)?,
        // A node whose manifest was moved out (the kubeadm way to stop etcd): kubeadm's data dir.
        (None, None) => {
            let default = common::manifest::default_data_dir(&shared.rootfs);
            if !default.join("member").is_dir() {
                return Err(coded(
                    exit::USAGE,
                    format!(
                        "no --data-dir, no manifest at {}, and no member data in {}",
                        shared.manifest.display(),
                        default.display()
                    ),
                ));
            }
            default
        }
    };
    match (std::fs::metadata(&dir), flag.is_some()) {
        (Ok(m), _) if m.is_dir() => Ok(dir),
        (Ok(_), true) => Err(coded(exit::USAGE, format!("--data-dir {}: not a directory", dir.display()))),
        (Err(e), true) => Err(coded(exit::USAGE, format!("--data-dir {}: {e}", dir.display()))),
        (Ok(_), false) => Err(anyhow::anyhow!("{} (the manifest's --data-dir): not a directory", dir.display())),
        (Err(e), false) => {
            Err(anyhow::anyhow!("{} (the manifest's --data-dir): {e}: no member data here", dir.display()))
        }
    }
}

/// Which node an error is about, for `pick`, which shows it among the other nodes' documents:
/// the manifest's --name (kubeadm's node name), else the host name.
fn node_label(shared: &Shared, manifest: Option<&Manifest>) -> Option<String> {
    let host = || {
        let at_root = cli::host_path(&shared.rootfs, "/etc/hostname");
        let read = |p: &Path| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        read(&at_root).or_else(|| {
            (shared.rootfs == Path::new("/")).then(|| read(Path::new("/proc/sys/kernel/hostname"))).flatten()
        })
    };
    manifest.and_then(|m| m.flag("name")).filter(|n| !n.is_empty()).or_else(host)
}

/// Inspects `dir`; errors when nothing identifies the member (no readable WAL).
pub(crate) fn inspection(dir: &Path, manifest: Option<&Manifest>) -> Result<DataDirInspection> {
    inspection_and_crc(dir, manifest).map(|(doc, _)| doc)
}

/// [`inspection`], and where the WAL's CRC chain broke (file, offset), if it did.
fn inspection_and_crc(dir: &Path, manifest: Option<&Manifest>) -> Result<(DataDirInspection, Option<(String, u64)>)> {
    let i = inspect::inspect(dir);
    let Some(wal) = &i.wal else {
        return Err(coded(exit::INTEGRITY, format!("{}: {}", dir.display(), i.problems.join("; "))));
    };
    let db = i.db.clone().unwrap_or_default();
    let mut members: Vec<DiskMember> = db
        .members
        .iter()
        .map(|m| DiskMember {
            id: hex_id(m.id),
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
            is_learner: m.is_learner,
        })
        .collect();
    if members.is_empty()
        && let Some(s) = &i.snap
    {
        // 3.4-era dbs may lack members: the snapshot's voters and learners at least.
        let member = |id: &u64, is_learner| DiskMember { id: hex_id(*id), is_learner, ..Default::default() };
        members =
            s.voters.iter().map(|id| member(id, false)).chain(s.learners.iter().map(|id| member(id, true))).collect();
    }
    // The db's own entry names the member whose data this is; the manifest's --name only when the
    // db has none (a --data-dir may be another member's).
    let name = db
        .members
        .iter()
        .find(|m| m.id == wal.member_id)
        .map(|m| m.name.clone())
        .filter(|n| !n.is_empty())
        .or_else(|| manifest.and_then(|m| m.flag("name")))
        .unwrap_or_default();
    let doc = DataDirInspection {
        kind: "DataDirInspection".into(),
        data_dir: cli::shown_path(dir),
        name,
        member_id: hex_id(wal.member_id),
        cluster_id: hex_id(wal.cluster_id),
        term: wal.term,
        vote: if wal.vote == 0 { String::new() } else { hex_id(wal.vote) },
        commit_index: wal.commit,
        last_index: wal.last_index,
        last_term: wal.last_term,
        applied_index: db.consistent_index,
        revision: db.revision,
        compact_revision: db.compact_revision,
        members,
        wal_crc_ok: wal.crc_mismatch.is_none(),
        torn_tail: wal.torn_tail.as_ref().map(|(f, at)| format!("{f} at byte {at}")),
        snapshot_index: i.snap.as_ref().map(|s| s.index),
        force_new_cluster: manifest.is_some_and(Manifest::force_new_cluster),
        etcd_running: common::durable::locked_by_another(&dir.join("member/snap/db")),
        inspected_at: common::time::rfc3339_secs(common::time::now_secs()),
        problems: i.problems.clone(),
    };
    Ok((doc, wal.crc_mismatch.clone()))
}

pub fn run(args: InspectArgs) -> Result<u8> {
    let shared = args.shared_flags().resolve()?;
    let manifest = match (shared.manifest.exists(), &args.data_dir) {
        (false, _) => None,
        // With --data-dir the manifest only adds the name and the flag warning: a broken one is
        // this node's other problem, not a reason to refuse reading the data.
        (true, Some(_)) => Manifest::load(&shared.manifest)
            .map_err(|e| common::say!("etcd-quorum: warning: {e:#}; inspecting without it"))
            .ok(),
        (true, None) => Some(Manifest::load(&shared.manifest)?),
    };
    // Settings etcd takes from outside its flags (a wrapper's string, an env var) may name another
    // data dir, or force a new cluster: read from the flags, the document could mislead pick.
    if let Some(problem) = manifest.as_ref().and_then(Manifest::hidden_problem) {
        match args.data_dir {
            None => return Err(coded(exit::REFUSED, format!("{problem}; give --data-dir to inspect all the same"))),
            Some(_) => common::say!("etcd-quorum: warning: {problem}"),
        }
    }
    // A node whose data cannot be read still says when its manifest keeps the flag: pick reads
    // its Error document and refuses (that etcd would force a second cluster at its next start).
    let label = node_label(&shared, manifest.as_ref());
    let flagged = |e: anyhow::Error| {
        let e = match &label {
            Some(l) => coded(exit::code_of(&e), format!("node {l}: {e:#}")),
            None => e,
        };
        match manifest.as_ref().filter(|m| m.force_new_cluster()) {
            Some(m) => exit::with_state(e, format!("{} {}", common::report::FORCE_FLAG_LEFT, m.path.display())),
            None => e,
        }
    };
    let dir = data_dir(args.data_dir.as_deref(), &shared, manifest.as_ref()).map_err(flagged)?;
    let (doc, crc) = inspection_and_crc(&dir, manifest.as_ref()).map_err(flagged)?;
    if doc.etcd_running {
        common::say!(
            "etcd-quorum: warning: etcd runs on {}: these numbers are what it has written, behind what it serves; \
             for an exact choice stop it (move its manifest out of the manifests dir) and inspect again",
            dir.display()
        );
    }
    if doc.force_new_cluster {
        common::say!("etcd-quorum: WARNING: {} {}", common::report::FORCE_FLAG_LEFT, shared.manifest.display());
    }
    // The document goes out whatever was found, so that `pick` sees every node.
    cli::emit(&doc, shared.output, render);
    if let Some((file, at)) = crc {
        // Damage, not a crash: etcd refuses to start from it ("walpb: crc mismatch").
        common::say!(
            "etcd-quorum: {}: WAL CRC mismatch in {file} at byte {at}: the WAL is corrupt, etcd will not start from it",
            dir.display()
        );
        return Ok(exit::INTEGRITY);
    }
    if !doc.problems.is_empty() {
        // The WAL names the member, but part of its data cannot be read: recover refuses it too.
        common::say!("etcd-quorum: {}: unreadable: {}", dir.display(), doc.problems.join("; "));
        return Ok(exit::INTEGRITY);
    }
    if let Some(t) = &doc.torn_tail {
        // What a crash mid-write leaves; etcd cuts it off when it starts.
        common::say!(
            "etcd-quorum: {}: torn WAL tail in {t} (a write cut short by a crash; etcd repairs it at start)",
            dir.display()
        );
    }
    Ok(exit::OK)
}

pub(crate) fn render(d: &DataDirInspection) -> String {
    let mut out = format!(
        "{} ({}) member {} of cluster {}\n  WAL: last entry {} (term {}), HardState term {} commit {}{}{}\n  db: applied {} revision {} compacted {}\n",
        d.data_dir,
        if d.name.is_empty() { "?" } else { &d.name },
        d.member_id,
        d.cluster_id,
        d.last_index,
        d.last_term,
        d.term,
        d.commit_index,
        if d.wal_crc_ok { "" } else { ", CRC CHAIN BROKEN" },
        d.torn_tail.as_ref().map(|t| format!(", torn tail in {t}")).unwrap_or_default(),
        d.applied_index,
        d.revision,
        d.compact_revision
    );
    for m in &d.members {
        out += &format!("  member {} {} {}\n", m.id, m.name, m.peer_urls.join(","));
    }
    if d.force_new_cluster {
        out += "  !!! --force-new-cluster is still in the manifest !!!\n";
    }
    for p in &d.problems {
        out += &format!("  problem: {p}\n");
    }
    out
}
