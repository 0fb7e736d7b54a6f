//! etcd-restore: the runbook's "restore from a snapshot", natively (no etcdctl/etcdutl), into a
//! data dir that etcd 3.4, 3.5 and 3.6 start from.

use anyhow::{Result, anyhow};
use common::cli::{self, HasShared};
use common::disk::{ids, restore, snapshot};
use common::exit::{self, coded};
use common::report::{Restore, Snapshot, hex_id};
use std::io::Read;
use std::path::{Path, PathBuf};

common::with_shared_flags! {
    /// Restore an etcd snapshot natively into a new data dir (like etcdutl snapshot restore), with
    /// the member and cluster IDs etcd computes for the same flags.
    #[argh(
        example = "Restore for member cp1 of a new 3-member cluster:\n  $ etcd-restore --snapshot /var/backups/etcd/etcd-snapshot-20261123T203332Z-cp1-r304.db --data-dir /var/lib/etcd-new --name cp1 --initial-cluster cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380,cp3=https://10.0.0.13:2380 --initial-advertise-peer-urls https://10.0.0.11:2380 --initial-cluster-token restore-1",
        example = "From etcd-snap's document, checking the recorded sha256 first:\n  $ etcd-snap save --dir /var/backups/etcd | etcd-restore --snapshot - --data-dir ... --name ...",
        note = "Exit codes: 0 ok, 1 error, 2 usage, 5 refused (target not empty), 6 integrity (hash mismatch, corrupt file)."
    )]
    pub struct Args {
        /// the snapshot file, or - for a Snapshot document (etcd-snap) on stdin
        #[argh(option)]
        pub snapshot: String,
        /// the data dir to create (absent or empty)
        #[argh(option)]
        pub data_dir: String,
        /// this member's name (in --initial-cluster)
        #[argh(option)]
        pub name: String,
        /// every member of the new cluster: name=peerURL,...
        #[argh(option)]
        pub initial_cluster: String,
        /// this member's peer URLs (must match its --initial-cluster entries)
        #[argh(option)]
        pub initial_advertise_peer_urls: String,
        /// cluster token, part of every member ID (default etcd-cluster)
        #[argh(option, default = "String::from(\"etcd-cluster\")")]
        pub initial_cluster_token: String,
        /// accept a file without a sha256 trailer (a raw member/snap/db), or do not check the trailer
        #[argh(switch)]
        pub skip_hash_check: bool,
        /// raise the revision by N (needs --mark-compacted), so watchers see no revision going back
        #[argh(option)]
        pub bump_revision: Option<u64>,
        /// mark the revisions before the bump as compacted
        #[argh(switch)]
        pub mark_compacted: bool,
        /// drop the alarms (NOSPACE, CORRUPT) the snapshot carries
        #[argh(switch)]
        pub drop_alarms: bool,
    }
}

fn empty_or_absent(p: &Path) -> bool {
    match std::fs::read_dir(p) {
        Ok(mut d) => d.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

pub fn run(args: Args) -> Result<u8> {
    let shared = args.shared_flags().resolve()?;
    let usage = |m: String| coded(exit::USAGE, m);
    if args.bump_revision.is_some_and(|b| b > 0) != args.mark_compacted {
        return Err(usage("--bump-revision N and --mark-compacted go together".into()));
    }
    let members = ids::parse_initial_cluster(&args.initial_cluster, &args.initial_cluster_token)
        .map_err(|e| usage(format!("{e:#}")))?;
    let me = members
        .iter()
        .find(|m| m.name == args.name)
        .ok_or_else(|| usage(format!("--name {:?} is not in --initial-cluster", args.name)))?;
    let mut advertised: Vec<String> = cli::split_list(&args.initial_advertise_peer_urls)
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
    let data_dir = PathBuf::from(&args.data_dir);
    if !empty_or_absent(&data_dir) {
        return Err(coded(exit::REFUSED, format!("--data-dir {}: not empty; nothing was changed", data_dir.display())));
    }

    // The snapshot: a file, or the file a Snapshot document names, whose recorded sha256 must hold.
    let (path, recorded) = if cli::is_stdin(&args.snapshot) {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        let doc: Snapshot =
            serde_json::from_str(&text).map_err(|e| usage(format!("--snapshot -: not a Snapshot document: {e}")))?;
        (doc.path.clone(), Some(doc.sha256))
    } else {
        (args.snapshot.clone(), None)
    };
    let v = snapshot::verify(Path::new(&path), args.skip_hash_check)
        .map_err(|p| coded(exit::INTEGRITY, format!("{path}: {p}")))?;
    if let Some(want) = recorded
        && want != v.sha256
    {
        return Err(coded(exit::INTEGRITY, format!("{path}: sha256 {} differs from the recorded {want}", v.sha256)));
    }

    // Built beside the target and renamed into place: the data dir is whole or absent.
    let parent = data_dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = parent.join(format!(
        ".{}.restore-{}",
        data_dir.file_name().map_or("etcd".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let opts = restore::Options {
        members: &members,
        own: me.id,
        bump_revision: args.bump_revision.filter(|b| *b > 0),
        drop_alarms: args.drop_alarms,
    };
    let outcome = match restore::restore(Path::new(&path), &tmp, &opts) {
        Ok(o) => o,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(match e {
                restore::Error::Corrupt(_) => coded(exit::INTEGRITY, format!("{path}: {e}")),
                restore::Error::Io(_) => anyhow!("restore into {}: {e}", data_dir.display()),
            });
        }
    };
    if let Err(e) = std::fs::rename(&tmp, &data_dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(anyhow!("rename {} to {}: {e}", tmp.display(), data_dir.display()));
    }
    let doc = Restore {
        kind: "Restore".into(),
        snapshot: path,
        data_dir: data_dir.display().to_string(),
        name: me.name.clone(),
        member_id: hex_id(outcome.member_id),
        cluster_id: hex_id(outcome.cluster_id),
        initial_cluster: args.initial_cluster.clone(),
        revision: outcome.revision,
        bumped_revision: outcome.bumped_revision,
        swapped_in: false,
        backups: vec![],
    };
    cli::emit(&doc, shared.output, render);
    Ok(exit::OK)
}

fn render(r: &Restore) -> String {
    format!(
        "restored {} into {}\n  member {} ({}) of cluster {}, revision {}{}\n",
        r.snapshot,
        r.data_dir,
        r.name,
        r.member_id,
        r.cluster_id,
        r.revision,
        r.bumped_revision.map(|b| format!(", bumped to {b}")).unwrap_or_default()
    )
}
