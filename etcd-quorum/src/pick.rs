//! `pick`: the survivor whose forced start keeps the most. `--force-new-cluster` discards every WAL
//! entry above the member's commit index (3.5.22+: above max(commit, applied)), so a longer log tail
//! counts for nothing: the rank is max(commit, applied index), then the revision, then raft's
//! up-to-date rule (last entry term, then index) for ties. Documents of different clusters are
//! refused; a member that `recover` would refuse (a corrupt WAL, unreadable data, a learner) is
//! never chosen.

use anyhow::Result;
use common::cli::{self, HasShared};
use common::exit::{self, coded};
use common::report::{self, DataDirInspection};
use serde::Serialize;
use std::io::Read;

common::with_shared_flags! {
    /// choose the survivor among DataDirInspection documents (stdin, or files)
    #[argh(
        subcommand,
        name = "pick",
        example = "From every surviving node:\n  $ for n in cp1 cp2; do ssh $n etcd-quorum inspect -w json; done | etcd-quorum pick"
    )]
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

/// The ordering key: what a forced start keeps, then the revision, then the log's last entry.
fn rank(d: &DataDirInspection) -> (u64, i64, u64, u64) {
    (d.commit_index.max(d.applied_index), d.revision, d.last_term, d.last_index)
}

fn why_lost(loser: &DataDirInspection, winner: &DataDirInspection) -> String {
    let (l, w) = (rank(loser), rank(winner));
    if l.0 != w.0 {
        format!("committed/applied index {} < {}: a forced start keeps only up to it", l.0, w.0)
    } else if l.1 != w.1 {
        format!("revision {} < {}", l.1, w.1)
    } else if l.2 != w.2 {
        format!("last entry term {} < {}", l.2, w.2)
    } else if l.3 != w.3 {
        format!("last entry index {} < {} (same term)", l.3, w.3)
    } else {
        "as up to date as the survivor; the first one listed was taken".into()
    }
}

/// Why `recover` would refuse this member, if it would.
/// A db ahead of the WAL's end (its tail lost): a forced start cannot continue that log (etcd
/// 3.5.22+ starts raft from max(commit, applied), past the last entry), where `--via-restore`
/// (which keeps every applied entry) can. None when the WAL holds what the db applied.
pub(crate) fn wal_behind_db(d: &DataDirInspection) -> Option<String> {
    (d.applied_index > d.last_index).then(|| {
        format!(
            "the db applied entry {} but the WAL ends at {}: a forced start cannot continue that log; use \
             --via-restore (it keeps every applied entry)",
            d.applied_index, d.last_index
        )
    })
}

fn unfit(d: &DataDirInspection) -> Option<String> {
    if let Some(behind) = wal_behind_db(d) {
        return Some(behind);
    }
    if !d.wal_crc_ok {
        return Some("its WAL is corrupt (CRC mismatch): etcd will not start from it".into());
    }
    if !d.problems.is_empty() {
        return Some(format!("its data dir is not fully readable: {}", d.problems.join("; ")));
    }
    is_learner(d).then(|| "a learner: raft never elects it, it cannot be forced".to_string())
}

/// Whether the data dir's own member is a learner, by its own membership records.
pub(crate) fn is_learner(d: &DataDirInspection) -> bool {
    d.members.iter().any(|m| m.is_learner && m.id == d.member_id)
}

/// The survivor among `docs` (all of one cluster): the best rank among the fit ones, the first
/// listed on ties; refused when none is fit.
fn best(docs: &[DataDirInspection]) -> Result<usize> {
    let sound: Vec<usize> = (0..docs.len()).filter(|&i| unfit(&docs[i]).is_none()).collect();
    if sound.is_empty() {
        let why: Vec<String> = docs.iter().filter_map(|d| unfit(d).map(|w| format!("{}: {w}", d.name))).collect();
        return Err(coded(
            exit::REFUSED,
            format!(
                "no member can be forced ({}); if a db is readable, restore from the one with the highest \
                 revision: etcd-quorum recover --via-restore on that node",
                why.join("; ")
            ),
        ));
    }
    // The best rank; on ties the first listed (max_by_key would take the last).
    Ok(sound.iter().copied().fold(sound[0], |b, i| if rank(&docs[i]) > rank(&docs[b]) { i } else { b }))
}

/// Refused when a node other than the survivor still has `--force-new-cluster` in its manifest
/// (a recover there was interrupted): its etcd would force a second cluster of the same ID at
/// its next start, beside the one recovered from the survivor.
fn flagged_elsewhere(docs: &[DataDirInspection], best: usize, failed: &[String]) -> Result<()> {
    // A node whose inspect failed says so in its Error document.
    let unreadable: Vec<&String> = failed.iter().filter(|m| m.contains(report::FORCE_FLAG_LEFT)).collect();
    let flagged: Vec<String> = (0..docs.len())
        .filter(|&i| i != best && docs[i].force_new_cluster)
        .map(|i| format!("{} ({})", docs[i].name, docs[i].member_id))
        .chain(unreadable.iter().map(|m| format!("a node whose inspect failed ({m})")))
        .collect();
    if flagged.is_empty() {
        return Ok(());
    }
    // Where the data cannot be read, recover cannot finish there either: the flag goes by hand.
    let unreadable = !unreadable.is_empty();
    Err(coded(
        exit::REFUSED,
        format!(
            "--force-new-cluster is still in the manifest of {} (a recover there was interrupted): its etcd \
             would force a second cluster at its next start. {}; the survivor would be {} ({})",
            flagged.join(", "),
            match unreadable {
                true =>
                    "Take the flag out of that manifest by hand (its data cannot be read, so recover cannot \
                         finish there), or move that manifest out of the manifests dir",
                false =>
                    "Finish that recovery there (etcd-quorum recover takes the flag out), or take the flag out \
                          of that manifest and inspect it again",
            },
            docs[best].name,
            docs[best].member_id
        ),
    ))
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
        common::say!("etcd-quorum: not a candidate, its inspect failed: {s}");
    }
    if docs.is_empty() {
        // Usage when nothing came at all; when every inspect failed, that is what was found.
        let code = if skipped.is_empty() { exit::USAGE } else { exit::INTEGRITY };
        return Err(coded(code, "no DataDirInspection documents given: no candidate to weigh"));
    }
    let clusters: std::collections::BTreeSet<&str> = docs.iter().map(|d| d.cluster_id.as_str()).collect();
    if clusters.len() > 1 {
        let list: Vec<String> =
            docs.iter().map(|d| format!("{} ({}): cluster {}", d.name, d.member_id, d.cluster_id)).collect();
        return Err(coded(exit::REFUSED, format!("documents of different clusters: {}", list.join("; "))));
    }
    // Voters the documents list that sent none (its inspect never ran: an ssh that failed in a
    // loop prints nothing): the most up-to-date one may be among them.
    // A node whose inspect failed is named in its Error document ("node <name>: ..."): it is
    // listed once, as that failure.
    let failed_nodes: Vec<&str> =
        skipped.iter().filter_map(|s| s.strip_prefix("node ")?.split_once(": ").map(|(n, _)| n)).collect();
    let mut unheard: Vec<String> = Vec::new();
    let mut named: Vec<&str> = Vec::new();
    for m in docs.iter().flat_map(|d| &d.members).filter(|m| !m.is_learner) {
        let known = |id: &str| report::same_id(id, &m.id);
        if docs.iter().any(|d| known(&d.member_id))
            || named.iter().any(|id| known(id))
            || (!m.name.is_empty() && failed_nodes.contains(&m.name.as_str()))
        {
            continue;
        }
        named.push(&m.id);
        let label = if m.name.is_empty() { m.id.clone() } else { format!("{} ({})", m.name, m.id) };
        unheard.push(format!("{label}: no DataDirInspection given, not weighed; it may be the most up to date"));
    }
    unheard.sort();
    for u in &unheard {
        common::say!("etcd-quorum: {u}");
    }
    let mut skipped = skipped;
    skipped.extend(unheard);
    // Lagging numbers can rank a node below one that stopped later than it: said, not guessed at.
    let running: Vec<&str> = docs.iter().filter(|d| d.etcd_running).map(|d| d.name.as_str()).collect();
    if !running.is_empty() {
        common::say!(
            "etcd-quorum: warning: etcd was running on {} when inspected: its numbers lag what it served; stop \
             etcd on every node (move its manifest out) and inspect again for an exact choice",
            running.join(", ")
        );
    }
    let best = best(&docs)?;
    let winner = docs[best].clone();
    flagged_elsewhere(&docs, best, &skipped)?;
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
            why: if i == best { "most up to date".into() } else { unfit(d).unwrap_or_else(|| why_lost(d, &winner)) },
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
            out += &format!("  not weighed: {s}\n");
        }
        out
    });
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::report::DiskMember;

    fn doc(name: &str, last: (u64, u64), commit: u64, applied: u64, revision: i64) -> DataDirInspection {
        DataDirInspection {
            name: name.into(),
            member_id: format!("{name}-id"),
            last_term: last.0,
            last_index: last.1,
            commit_index: commit,
            applied_index: applied,
            revision,
            wal_crc_ok: true,
            ..Default::default()
        }
    }

    /// A longer log tail above the commit index is discarded by the forced start: the member that
    /// knows more entries committed wins, whatever its last entry.
    #[test]
    fn the_forced_start_keeps_what_is_committed() {
        let long_tail = doc("b", (5, 100), 90, 88, 80);
        let committed = doc("c", (5, 98), 98, 97, 86);
        assert_eq!(best(&[long_tail.clone(), committed.clone()]).unwrap(), 1);
        assert!(why_lost(&long_tail, &committed).contains("90 < 98"), "{}", why_lost(&long_tail, &committed));
        // A commit index never persisted but applied (3.5.22+ keeps it): the applied index counts.
        assert_eq!(best(&[doc("b", (5, 99), 90, 96, 85), doc("c", (5, 98), 95, 95, 84)]).unwrap(), 0);
        // Equal: the revision, then the last entry, then the first listed.
        assert_eq!(best(&[doc("b", (5, 99), 95, 95, 84), doc("c", (5, 98), 95, 95, 85)]).unwrap(), 1);
        assert_eq!(best(&[doc("b", (5, 98), 95, 95, 85), doc("c", (6, 97), 95, 95, 85)]).unwrap(), 1);
        assert_eq!(best(&[doc("b", (5, 98), 95, 95, 85), doc("c", (5, 98), 95, 95, 85)]).unwrap(), 0);
    }

    /// A node whose manifest still forces a new cluster is refused unless it is the survivor
    /// (recover resumes there); anywhere else it would start a second cluster.
    #[test]
    fn a_flag_left_in_elsewhere_is_refused() {
        let mut flagged = doc("a", (5, 90), 90, 90, 80);
        flagged.force_new_cluster = true;
        let winner = doc("b", (5, 98), 98, 98, 86);
        let docs = [flagged.clone(), winner.clone()];
        assert_eq!(best(&docs).unwrap(), 1);
        let e = flagged_elsewhere(&docs, 1, &[]).unwrap_err();
        assert_eq!(exit::code_of(&e), exit::REFUSED);
        let msg = format!("{e:#}");
        assert!(msg.contains("manifest of a (a-id)") && msg.contains("survivor would be b (b-id)"), "{msg}");
        let mut first = winner;
        first.force_new_cluster = true;
        let two = [first, doc("c", (5, 1), 1, 1, 1)];
        assert!(flagged_elsewhere(&two, 0, &[]).is_ok(), "the survivor's own flag");
        // A node whose inspect failed, its manifest keeping the flag: its Error document says so.
        let failed = format!(
            "x/member/snap/db: not a bbolt file; {} /etc/kubernetes/manifests/etcd.yaml (exit 6)",
            report::FORCE_FLAG_LEFT
        );
        let e = flagged_elsewhere(&two, 0, &[failed]).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("a node whose inspect failed (x/member/snap/db") && msg.contains("by hand"), "{msg}");
        assert!(flagged_elsewhere(&two, 0, &["x: not a bbolt file (exit 6)".into()]).is_ok());
    }

    /// What recover refuses is never chosen: a corrupt WAL, an unreadable db, a learner.
    #[test]
    fn unfit_members_are_passed_over() {
        let mut crc = doc("a", (5, 200), 200, 200, 150);
        crc.wal_crc_ok = false;
        let mut db = doc("b", (5, 199), 199, 0, 0);
        db.problems = vec!["b/member/snap/db: not a bbolt file".into()];
        let mut learner = doc("c", (5, 198), 198, 198, 149);
        learner.members = vec![DiskMember { id: "c-id".into(), is_learner: true, ..Default::default() }];
        let plain = doc("d", (5, 100), 100, 100, 90);
        // Its db applied 210, its WAL ends at 200 (a lost tail): recover refuses to force it.
        let cut = doc("e", (5, 200), 200, 210, 160);
        assert!(unfit(&cut).unwrap().contains("applied entry 210 but the WAL ends at 200"));
        let all = [crc.clone(), db.clone(), learner.clone(), plain, cut];
        assert_eq!(best(&all).unwrap(), 3);
        assert!(unfit(&db).unwrap().contains("not a bbolt file"));
        assert!(unfit(&learner).unwrap().contains("a learner"));
        let e = best(&all[..3]).unwrap_err();
        assert_eq!(exit::code_of(&e), exit::REFUSED);
        let msg = format!("{e:#}");
        assert!(msg.contains("a: its WAL is corrupt") && msg.contains("c: a learner"), "{msg}");
        // Another member's learner entry says nothing about this one.
        learner.members[0].id = "x-id".into();
        assert!(unfit(&learner).is_none());
    }
}
