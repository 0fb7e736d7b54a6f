//! Offline inspection of a member's data dir (ETCD-DISK-FORMAT.md §10): the WAL (identity, last
//! HardState, last entry, CRC chain, torn tail), the newest `.snap`, and the db (applied index,
//! revision, compaction, members). Read-only; works while etcd is stopped (and, best effort, while
//! it runs: the files are only read).

use super::bolt::{Bolt, OpenError};
use super::pb;
use super::snapfile;
use super::wal;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct WalState {
    pub member_id: u64,
    pub cluster_id: u64,
    /// Last HardState.
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
    /// The last surviving entry (or the last snapshot record when no entry follows it).
    pub last_index: u64,
    pub last_term: u64,
    pub snapshots: Vec<(u64, u64)>,
    /// Where the CRC chain broke or a tail was torn: (file, offset).
    pub crc_mismatch: Option<(String, u64)>,
    pub torn_tail: Option<(String, u64)>,
    pub files: usize,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnapState {
    pub file: String,
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DbState {
    pub consistent_index: u64,
    pub term: u64,
    pub revision: i64,
    pub compact_revision: i64,
    /// From the `members` bucket.
    pub members: Vec<DbMember>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DbMember {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    /// Empty for a member that never started (and in dbs that do not keep them).
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inspection {
    pub wal: Option<WalState>,
    pub snap: Option<SnapState>,
    pub db: Option<DbState>,
    /// What could not be read, in words.
    pub problems: Vec<String>,
}

fn sorted_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == ext)).collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Reads every WAL segment in order, following the CRC chain from file to file.
pub fn read_wal(dir: &Path) -> Result<WalState, String> {
    let files = sorted_files(dir, "wal");
    if files.is_empty() {
        return Err(format!("{}: no WAL files", dir.display()));
    }
    let mut st = WalState { files: files.len(), ..Default::default() };
    let mut entries_last: Option<(u64, u64)> = None;
    // The CRC chain runs on from one segment into the next.
    let mut chain = 0u32;
    for (i, f) in files.iter().enumerate() {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let file = std::fs::File::open(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let mut meta = (0, 0);
        let mut state = (st.term, st.vote, st.commit);
        let mut snapshots = Vec::new();
        let read = wal::scan_segment(std::io::BufReader::with_capacity(1 << 20, file), chain, |r| {
            let Some(f) = pb::fields(&r.data) else { return };
            match r.typ {
                wal::METADATA => meta = (pb::uint_of(&f, 1), pb::uint_of(&f, 2)),
                wal::STATE => {
                    // An empty HardState (force-new-cluster appends one) changes nothing.
                    let s = (pb::uint_of(&f, 1), pb::uint_of(&f, 2), pb::uint_of(&f, 3));
                    if s != (0, 0, 0) {
                        state = s;
                    }
                }
                // A lower or equal index overwrites the tail: later writes win.
                wal::ENTRY => entries_last = Some((pb::uint_of(&f, 3), pb::uint_of(&f, 2))),
                wal::SNAPSHOT => {
                    let (index, term) = (pb::uint_of(&f, 1), pb::uint_of(&f, 2));
                    snapshots.push((index, term));
                    if entries_last.is_none_or(|(i, _)| i < index) {
                        entries_last = Some((index, term));
                    }
                }
                _ => {}
            }
        });
        chain = read.crc;
        if meta != (0, 0) {
            (st.member_id, st.cluster_id) = meta;
        }
        (st.term, st.vote, st.commit) = state;
        st.snapshots.extend(snapshots);
        if let Some(at) = read.crc_mismatch_at
            && st.crc_mismatch.is_none()
        {
            st.crc_mismatch = Some((name.clone(), at));
        }
        if let Some(at) = read.torn_at {
            st.torn_tail = Some((name.clone(), at));
            if i + 1 < files.len() && st.crc_mismatch.is_none() {
                st.crc_mismatch = Some((name.clone(), at));
            }
        }
    }
    (st.last_index, st.last_term) = entries_last.unwrap_or((0, 0));
    Ok(st)
}

/// The `.snap` etcd would load: the newest whose CRC holds and, when the WAL was read, that a WAL
/// snapshot record at or below the commit index names (etcd writes the `.snap` before that record,
/// so a crash between the two leaves one it ignores). An unreadable file is skipped, as etcd does.
pub fn read_snap(dir: &Path, wal: Option<&WalState>) -> Result<Option<SnapState>, String> {
    let usable = |index: u64, term: u64| wal.is_none_or(|w| index <= w.commit && w.snapshots.contains(&(index, term)));
    let mut unreadable = Vec::new();
    for f in sorted_files(dir, "snap").into_iter().rev() {
        let bytes = match std::fs::read(&f) {
            Ok(b) => b,
            Err(e) => {
                unreadable.push(format!("{}: {e}", f.display()));
                continue;
            }
        };
        let Some(m) = snapfile::parse(&bytes) else { continue };
        if !usable(m.index, m.term) {
            continue;
        }
        return Ok(Some(SnapState {
            file: f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            index: m.index,
            term: m.term,
            voters: m.voters,
            learners: m.learners,
        }));
    }
    // Nothing usable: a file we could not read may have been the one.
    match unreadable.is_empty() {
        true => Ok(None),
        false => Err(unreadable.join("; ")),
    }
}

fn be_u64(v: Option<&Vec<u8>>) -> u64 {
    v.and_then(|b| b.get(..8)).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes)
}

/// The db's applied index and term, revision, compaction and members; only small buckets and the
/// rightmost path of `key` are read.
pub fn read_db(path: &Path) -> Result<DbState, String> {
    let mut bolt = Bolt::open(path).map_err(|e| match e {
        OpenError::Io(e) => format!("{}: {e}", path.display()),
        OpenError::Corrupt(c) => format!("{}: {c}", path.display()),
    })?;
    let buckets = bolt.buckets().map_err(|c| format!("{}: {c}", path.display()))?;
    let mut st = DbState::default();
    for (name, value) in buckets {
        match name.as_slice() {
            b"key" => {
                let last = bolt.last_key(&value).map_err(|c| format!("{}: {c}", path.display()))?;
                st.revision = be_u64(last.as_ref()) as i64;
            }
            b"meta" | b"members" => {
                let entries = bolt.bucket_map(&name, &value).map_err(|e| format!("{}: {e}", path.display()))?;
                if name == b"meta" {
                    st.consistent_index = be_u64(entries.get(b"consistent_index".as_slice()));
                    st.term = be_u64(entries.get(b"term".as_slice()));
                    st.compact_revision = be_u64(entries.get(b"finishedCompactRev".as_slice())) as i64;
                } else {
                    for v in entries.values() {
                        let Ok(m) = serde_json::from_slice::<serde_json::Value>(v) else { continue };
                        st.members.push(DbMember {
                            id: m["id"].as_u64().unwrap_or(0),
                            name: m["name"].as_str().unwrap_or("").to_string(),
                            peer_urls: m["peerURLs"]
                                .as_array()
                                .map(|a| a.iter().filter_map(|u| u.as_str().map(String::from)).collect())
                                .unwrap_or_default(),
                            client_urls: m["clientURLs"]
                                .as_array()
                                .map(|a| a.iter().filter_map(|u| u.as_str().map(String::from)).collect())
                                .unwrap_or_default(),
                            is_learner: m["isLearner"].as_bool().unwrap_or(false),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    Ok(st)
}

/// Everything readable from a data dir; what cannot be read is listed, not fatal.
pub fn inspect(data_dir: &Path) -> Inspection {
    let member = data_dir.join("member");
    let mut out = Inspection::default();
    match read_wal(&member.join("wal")) {
        Ok(w) => out.wal = Some(w),
        Err(e) => out.problems.push(e),
    }
    match read_snap(&member.join("snap"), out.wal.as_ref()) {
        Ok(s) => out.snap = s,
        Err(e) => out.problems.push(e),
    }
    match read_db(&member.join("snap/db")) {
        Ok(d) => out.db = Some(d),
        Err(e) => out.problems.push(e),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.snap` no WAL snapshot record names (written just before a crash), or one above the
    /// commit index, is not the one etcd loads; the newest one it would load is reported.
    #[test]
    fn the_snap_is_the_one_etcd_would_load() {
        let dir = std::env::temp_dir().join(format!("snap-choice-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let v2 = snapfile::v2_store_json(&[(1, vec!["https://10.0.0.1:2380".into()])]);
        for (term, index) in [(2, 100), (2, 200), (3, 300)] {
            std::fs::write(dir.join(snapfile::snap_name(term, index)), snapfile::snap_file(&v2, &[1], index, term))
                .unwrap();
        }
        let wal = |commit: u64, snapshots: &[(u64, u64)]| WalState {
            commit,
            snapshots: snapshots.to_vec(),
            ..Default::default()
        };
        let index = |w: Option<&WalState>| read_snap(&dir, w).unwrap().map(|s| s.index);
        assert_eq!(index(None), Some(300), "no WAL: the newest sound file");
        assert_eq!(index(Some(&wal(350, &[(0, 0), (100, 2), (200, 2)]))), Some(200), "no record names 300");
        assert_eq!(index(Some(&wal(250, &[(100, 2), (200, 2), (300, 3)]))), Some(200), "300 is above the commit");
        assert_eq!(index(Some(&wal(350, &[(100, 2), (200, 3), (300, 3)]))), Some(300));
        assert_eq!(index(Some(&wal(350, &[(0, 0)]))), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn segment(prev_crc: u32, index: u64) -> Vec<u8> {
        let mut w = wal::Writer::new(prev_crc);
        let entry = pb::Msg::default().uint(2, 1).uint(3, index).into_bytes();
        w.record(wal::ENTRY, &entry);
        w.buf
    }

    /// Two segments: the second's CRC record carries the first's last CRC; a second segment that
    /// starts a chain of its own is a mismatch at its first byte (as etcd's reader says).
    #[test]
    fn the_crc_chain_runs_from_file_to_file() {
        let dir = std::env::temp_dir().join(format!("wal-chain-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let first = segment(0, 1);
        let chain = wal::read_segment(&first).crc;
        std::fs::write(dir.join("0000000000000000-0000000000000000.wal"), &first).unwrap();
        let second = dir.join("0000000000000001-0000000000000002.wal");
        std::fs::write(&second, segment(chain, 2)).unwrap();
        let st = read_wal(&dir).unwrap();
        assert_eq!((st.files, st.crc_mismatch.clone(), st.last_index), (2, None, 2), "{st:?}");

        std::fs::write(&second, segment(0, 2)).unwrap();
        let st = read_wal(&dir).unwrap();
        assert_eq!(st.crc_mismatch, Some(("0000000000000001-0000000000000002.wal".to_string(), 0)), "{st:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
