//! `pick`: the survivor by raft's up-to-date rule (last entry term, then index), then by what is
//! applied (commit/applied index, revision); documents of different clusters are refused, and a
//! member whose WAL is corrupt is never chosen.

use anyhow::Result;
use common::cli::{self, HasShared};
use common::exit::{self, coded};
use common::report::{self, DataDirInspection};
use serde::Serialize;
use std::io::Read;

common::with_shared_flags! {
    /// choose the survivor among DataDirInspection documents (stdin, or files)
    #[argh(subcommand, name = "pick")]
    pub struct PickArgs {
        /// files with DataDirInspection documents (default: stdin); concatenated or an array
        #[argh(positional)]
        pub files: Vec<String>,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    name: String,
    member_id: String,
    data_dir: String,
    last_term: u64,
    last_index: u64,
    commit_index: u64,
    applied_index: u64,
    revision: i64,
    chosen: bool,
    why: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SurvivorChoice {
    kind: &'static str,
    cluster_id: String,
    survivor: String,
    survivor_member_id: String,
    candidates: Vec<Candidate>,
    /// The failed inspections among the input (their Error documents' messages).
    skipped: Vec<String>,
}

/// The ordering key: raft's up-to-date rule, then what is applied, then the revision.
fn rank(d: &DataDirInspection) -> (u64, u64, u64, i64) {
    (d.last_term, d.last_index, d.commit_index.max(d.applied_index), d.revision)
}

fn why_lost(loser: &DataDirInspection, winner: &DataDirInspection) -> String {
    let (l, w) = (rank(loser), rank(winner));
    if l.0 != w.0 {
        format!("last entry term {} < {}", l.0, w.0)
    } else if l.1 != w.1 {
        format!("last entry index {} < {} (same term)", l.1, w.1)
    } else if l.2 != w.2 {
        format!("applied/committed index {} < {}", l.2, w.2)
    } else if l.3 != w.3 {
        format!("revision {} < {}", l.3, w.3)
    } else {
        "as up to date as the survivor; the first one listed was taken".into()
    }
}

pub fn run(args: PickArgs) -> Result<u8> {
    let shared = args.shared_flags().resolve()?;
    let mut docs = Vec::new();
    let mut skipped = Vec::new();
    if args.files.is_empty() || args.files.iter().any(|f| cli::is_stdin(f)) {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        let (d, e) = report::read_documents_and_errors::<DataDirInspection>(&text, "stdin")?;
        docs.extend(d);
        skipped.extend(e);
    }
    for f in args.files.iter().filter(|f| !cli::is_stdin(f)) {
        let text = std::fs::read_to_string(f).map_err(|e| coded(exit::USAGE, format!("{f}: cannot read: {e}")))?;
        let (d, e) = report::read_documents_and_errors::<DataDirInspection>(&text, f)?;
        docs.extend(d);
        skipped.extend(e);
    }
    // A node whose inspect failed is no candidate, but the operator must know it was not weighed.
    let skipped: Vec<String> = skipped.into_iter().map(|e| format!("{} (exit {})", e.message, e.code)).collect();
    for s in &skipped {
        eprintln!("etcd-quorum: not a candidate, its inspect failed: {s}");
    }
    if docs.is_empty() {
        return Err(coded(exit::USAGE, "no DataDirInspection documents given"));
    }
    let clusters: std::collections::BTreeSet<&str> = docs.iter().map(|d| d.cluster_id.as_str()).collect();
    if clusters.len() > 1 {
        let list: Vec<String> =
            docs.iter().map(|d| format!("{} ({}): cluster {}", d.name, d.member_id, d.cluster_id)).collect();
        return Err(coded(exit::REFUSED, format!("documents of different clusters: {}", list.join("; "))));
    }
    // A corrupt WAL (CRC chain broken) is not a survivor: etcd refuses to start from it.
    let sound: Vec<usize> = (0..docs.len()).filter(|&i| docs[i].wal_crc_ok).collect();
    if sound.is_empty() {
        return Err(coded(
            exit::REFUSED,
            "every WAL given is corrupt (CRC mismatch): no member can be forced; restore the db with \
             highest revision: etcd-quorum recover --via-restore on that node",
        ));
    }
    // The best rank; on ties the first listed (max_by_key would take the last).
    let best = sound.iter().copied().fold(sound[0], |b, i| if rank(&docs[i]) > rank(&docs[b]) { i } else { b });
    let winner = docs[best].clone();
    let candidates = docs
        .iter()
        .enumerate()
        .map(|(i, d)| Candidate {
            name: d.name.clone(),
            member_id: d.member_id.clone(),
            data_dir: d.data_dir.clone(),
            last_term: d.last_term,
            last_index: d.last_index,
            commit_index: d.commit_index,
            applied_index: d.applied_index,
            revision: d.revision,
            chosen: i == best,
            why: if i == best {
                "most up to date".into()
            } else if !d.wal_crc_ok {
                "its WAL is corrupt (CRC mismatch): etcd will not start from it".into()
            } else {
                why_lost(d, &winner)
            },
        })
        .collect();
    let choice = SurvivorChoice {
        kind: "SurvivorChoice",
        cluster_id: winner.cluster_id.clone(),
        survivor: winner.name.clone(),
        survivor_member_id: winner.member_id.clone(),
        candidates,
        skipped,
    };
    cli::emit(&choice, shared.output, |c| {
        let mut out = format!("survivor: {} ({})\n", c.survivor, c.survivor_member_id);
        for k in &c.candidates {
            out += &format!(
                "  {} {} ({}): last entry {}/{}, commit {}, applied {}, revision {}: {}\n",
                if k.chosen { "*" } else { " " },
                k.name,
                k.member_id,
                k.last_term,
                k.last_index,
                k.commit_index,
                k.applied_index,
                k.revision,
                k.why
            );
        }
        for s in &c.skipped {
            out += &format!("  not weighed (inspect failed): {s}\n");
        }
        out
    });
    Ok(exit::OK)
}
