//! etcd-snap: the runbook's "create a snapshot", fit for cron jobs that run it for years: from any
//! healthy member, verified, atomic, with retention and a metrics file.

mod metrics;
mod prune;
mod save;
mod store;

use anyhow::Result;
use common::cli::{self, HasShared};
use common::disk::snapshot;
use common::exit::{self, coded};
use common::report::{self, Snapshot};
use std::io::Read;
use std::path::Path;

common::subcommands! {
    /// Verified etcd snapshots: save from any healthy member, verify offline, list, prune; cron mode.
    #[argh(
        example = "A snapshot into a directory, from a healthy follower:\n  $ etcd-snap save --dir /var/backups/etcd",
        example = "Cron mode (lock, retention, node_exporter metrics):\n  $ etcd-snap save --dir /var/backups/etcd --keep 24 --keep-daily 7 --lock --metrics-file /var/lib/node_exporter/textfile_collector/etcd_snapshot.prom",
        example = "Check a file offline, as etcdutl snapshot status would:\n  $ etcd-snap verify /var/backups/etcd/etcd-snapshot-20261123T203332Z-cp1-r304.db",
        note = "Exit codes: 0 ok, 1 error, 2 usage, 4 no healthy member, 5 refused (lock held, a world-writable \
             dir or an existing --out without --force), 6 integrity (hash mismatch, corrupt file), 7 timeout (every \
             member timed out, or no bytes for --stall-timeout)."
    )]
    Save(save::SaveArgs) => save::run,
    Verify(VerifyArgs) => verify,
    List(prune::ListArgs) => prune::run_list,
    Prune(prune::PruneArgs) => prune::run_prune,
}

common::with_shared_flags! {
    /// verify a snapshot file offline (alias: status): sha256 trailer, bbolt structure, and the
    /// numbers etcdutl snapshot status prints; "-" reads a Snapshot document and checks its file
    #[argh(
        subcommand,
        name = "verify",
        example = "  $ etcd-snap verify /var/backups/etcd/etcd-snapshot-20261123T203332Z-cp1-r304.db",
        example = "The file a save just made, against the sha256 it recorded:\n  $ etcd-snap save --dir /var/backups/etcd | etcd-snap verify -"
    )]
    pub struct VerifyArgs {
        /// the snapshot file, or - for a Snapshot document on stdin
        #[argh(positional)]
        pub file: String,
        /// accept a file without a sha256 trailer (a raw member/snap/db) and do not check it (a
        /// Snapshot document's recorded sha256 is checked all the same)
        #[argh(switch)]
        pub skip_hash_check: bool,
    }
}

/// `status` is etcdutl's name for it.
pub const ALIASES: &[(&str, &str)] = &[("status", "verify")];

fn verify(args: VerifyArgs) -> Result<u8> {
    let shared = args.shared_flags().resolve()?;
    // With "-", the Snapshot document names the file and the sha256 it must have.
    let recorded: Option<Snapshot> = if cli::is_stdin(&args.file) {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Some(report::read_document::<Snapshot>(&text, "stdin")?)
    } else {
        None
    };
    let path = recorded.as_ref().map_or(args.file.clone(), |d| d.path.clone());
    cli::input_file("snapshot", &path)?;
    let skip = snapshot::hash_check_skipped(args.skip_hash_check, recorded.as_ref().map(|d| d.sha256.as_str()));
    let v = snapshot::verify(Path::new(&path), skip).map_err(|p| coded(exit::INTEGRITY, format!("{path}: {p}")))?;
    if let Some(d) = &recorded
        && d.sha256 != v.sha256
    {
        return Err(coded(
            exit::INTEGRITY,
            format!("{path}: sha256 {} differs from the recorded {}", v.sha256, d.sha256),
        ));
    }
    let mut doc = recorded.unwrap_or_default();
    doc.kind = "Snapshot".into();
    doc.path = cli::shown_path(Path::new(&path));
    doc.size = v.file_size;
    doc.sha256 = v.sha256;
    doc.revision = v.status.revision;
    doc.total_keys = v.status.total_keys;
    doc.total_size = v.status.total_size;
    doc.hash = v.status.hash;
    doc.verified = true;
    cli::emit(&doc, shared.output, save::render);
    Ok(exit::OK)
}
