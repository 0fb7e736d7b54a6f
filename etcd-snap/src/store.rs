//! A snapshot directory: the tool's own naming, listing and retention. Only files named by this
//! tool are ever touched.

use anyhow::{Result, anyhow, bail};
use common::disk::snapshot;
use common::exit::{self, coded};
use common::report::SnapshotEntry;
use common::time;
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

const PREFIX: &str = "etcd-snapshot-";

/// `etcd-snapshot-<UTC yyyymmddThhmmssZ>-<member>-r<revision>.db`
pub fn file_name(taken: &str, member: &str, revision: i64) -> String {
    format!("{PREFIX}{taken}-{member}-r{revision}.db")
}

/// The `.part` a save streams into before the revision (and so the final name) is known.
pub fn part_name(taken: &str, member: &str) -> String {
    format!("{PREFIX}{taken}-{member}.part")
}

/// Whether `name` is a `.part` this tool names (another tool's, `etcd-snapshot-x.db.part` from
/// etcdctl say, is never touched).
fn is_part_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX).and_then(|r| r.strip_suffix(".part")) else { return false };
    rest.get(..16).is_some_and(|t| time::parse_compact_utc(t).is_some())
        && rest.get(16..).and_then(|m| m.strip_prefix('-')).is_some_and(|m| !m.is_empty() && !m.ends_with(".db"))
}

/// (time, member, revision) of a name this tool made.
pub fn parse_name(name: &str) -> Option<(String, String, i64)> {
    let rest = name.strip_prefix(PREFIX)?.strip_suffix(".db")?;
    let (taken, rest) = (rest.get(..16)?, rest.get(16..)?);
    time::parse_compact_utc(taken)?;
    let (member, rev) = rest.strip_prefix('-')?.rsplit_once("-r")?;
    if member.is_empty() || rev.is_empty() || !rev.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((taken.to_string(), member.to_string(), rev.parse().ok()?))
}

/// The tool's snapshots in `dir`, newest first.
pub fn list(dir: &Path) -> std::io::Result<Vec<SnapshotEntry>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((taken, member, revision)) = parse_name(&name) else { continue };
        let Ok(meta) = e.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let secs = time::parse_compact_utc(&taken).unwrap_or(0);
        out.push(SnapshotEntry {
            path: common::cli::shown_path(&e.path()),
            size: meta.len(),
            taken_at: time::rfc3339_secs(secs),
            member,
            revision,
        });
    }
    out.sort_by(|a, b| (&b.taken_at, b.revision).cmp(&(&a.taken_at, a.revision)));
    Ok(out)
}

/// Retention rules; `keep` newest, plus the newest of each of the last `daily` days and `weekly`
/// weeks (UTC, weeks from Monday) that have snapshots.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules {
    pub keep: usize,
    pub daily: usize,
    pub weekly: usize,
}

/// Which of `snaps` (newest first) the rules keep, by index.
pub fn kept(snaps: &[SnapshotEntry], rules: Rules) -> BTreeSet<usize> {
    let mut keep: BTreeSet<usize> = (0..snaps.len().min(rules.keep)).collect();
    let day = |s: &SnapshotEntry| time::parse_rfc3339(&s.taken_at).unwrap_or(0).div_euclid(86_400);
    // 1970-01-01 was a Thursday: shifting by 3 days makes weeks start on Monday.
    let week = |s: &SnapshotEntry| (day(s) + 3).div_euclid(7);
    for (period, count) in [(&day as &dyn Fn(&SnapshotEntry) -> i64, rules.daily), (&week, rules.weekly)] {
        let mut seen = BTreeSet::new();
        for (i, s) in snaps.iter().enumerate() {
            if seen.len() == count {
                break;
            }
            if seen.insert(period(s)) {
                keep.insert(i);
            }
        }
    }
    keep
}

/// The newest snapshot that verifies: prune never removes it, whatever the rules say.
pub fn newest_verified(snaps: &[SnapshotEntry]) -> Option<usize> {
    snaps.iter().position(|s| snapshot::verify(Path::new(&s.path), false).is_ok())
}

/// A `.part` untouched this long, whose lock is free, is a dead save's leftover. The age guards a
/// live save whose lock this host cannot see (NFS with host-local locks); a live save writes on.
const STALE_PART_SECS: u64 = 3600;

/// (device, inode) of a file: what stands under a name is checked against what a fd holds.
pub fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

/// Opens a `.part` for writing and holds an exclusive lock on it for the whole save: the lock dies
/// with the process (kill -9 too), which is how a cleaner tells a dead run's leftover from a live one.
pub fn open_part(path: &Path) -> Result<File> {
    for _ in 0..20 {
        // No truncate before the lock: the file may be another live save's.
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| anyhow!("{}: cannot create: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            // A cleaner holds it for a moment before removing it; a live save for longer.
            Err(TryLockError::WouldBlock) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(TryLockError::Error(e)) => bail!("{}: cannot lock: {e}", path.display()),
        }
        // A cleaner may have removed the file between our open and our lock: only a file still
        // under its name counts.
        let same = std::fs::metadata(path).ok().map(|m| identity(&m));
        let ours = file.metadata().ok().map(|m| identity(&m));
        // A name still linked to a published snapshot (its unlink failed): only the name goes.
        if same.is_some() && same == ours && file.metadata().is_ok_and(|m| m.nlink() > 1) {
            std::fs::remove_file(path).map_err(|e| anyhow!("{}: cannot remove: {e}", path.display()))?;
            continue;
        }
        if same.is_some() && same == ours {
            file.set_len(0)?;
            // The umask may have narrowed, or an old leftover widened, the mode.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            return Ok(file);
        }
    }
    Err(coded(exit::REFUSED, format!("{}: another etcd-snap save is writing it", path.display())))
}

/// Removes the `.part` files of this tool that no live save holds and that have not changed for
/// an hour (leftovers of killed runs), each while holding its lock; returns them. With `dry_run`,
/// only lists them.
pub fn remove_dead_parts(dir: &Path, dry_run: bool) -> Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(vec![]) };
    let mut removed = Vec::new();
    for e in entries.filter_map(Result::ok) {
        if !is_part_name(&e.file_name().to_string_lossy()) {
            continue;
        }
        let Ok(file) = File::open(e.path()) else { continue };
        let old = file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() >= STALE_PART_SECS);
        // A lock this filesystem cannot take says nothing: the age alone decides then.
        let unheld = !matches!(file.try_lock(), Err(TryLockError::WouldBlock));
        // Still the file under that name: a save that finished meanwhile renamed it away, and a
        // new one may have made another under the same name.
        let same = std::fs::metadata(e.path()).ok().map(|m| identity(&m)) == file.metadata().ok().map(|m| identity(&m));
        if old && unheld && same {
            if !dry_run {
                match std::fs::remove_file(e.path()) {
                    Ok(()) => {}
                    // Another cleaner was first: what we wanted.
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(anyhow!("remove {}: {err}", e.path().display())),
                }
            }
            removed.push(e.path());
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(taken: &str, rev: i64) -> SnapshotEntry {
        SnapshotEntry {
            path: file_name(taken, "node1", rev),
            size: 1,
            taken_at: time::rfc3339_secs(time::parse_compact_utc(taken).unwrap()),
            member: "node1".into(),
            revision: rev,
        }
    }

    #[test]
    fn names_round_trip() {
        let n = file_name("20261123T203332Z", "cp-1", 304);
        assert_eq!(n, "etcd-snapshot-20261123T203332Z-cp-1-r304.db");
        assert_eq!(parse_name(&n), Some(("20261123T203332Z".into(), "cp-1".into(), 304)));
        for bad in [
            "etcd-snapshot-20261123T203332Z-cp-1-r304.db.part",
            "etcd-snapshot-2026112T203332Z-cp-1-r304.db",
            "etcd-snapshot-20261123T203332Z-cp-1-rx.db",
            "etcd-snapshot-20261123T203332Z--r5.db",
            "backup.db",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn part_names_are_the_tools_own_only() {
        assert!(is_part_name(&part_name("20261123T203332Z", "cp-1")));
        assert!(is_part_name(&part_name("20261123T203332Z", "cp-1.example.com")));
        for other in [
            "etcd-snapshot-pre-upgrade.db.part",
            "etcd-snapshot-20261123T203332Z-cp-1-r304.db.part",
            "etcd-snapshot-20261123T203332Z-.part",
            "etcd-snapshot-2026112XT203332Z-cp-1.part",
        ] {
            assert!(!is_part_name(other), "{other}");
        }
    }

    #[test]
    fn retention_rules() {
        // Newest first: two on Nov 23 (Monday), one each on Nov 22, 21, 16, 9.
        let snaps = vec![
            entry("20261123T120000Z", 60),
            entry("20261123T060000Z", 50),
            entry("20261122T060000Z", 40),
            entry("20261121T060000Z", 30),
            entry("20261116T060000Z", 20),
            entry("20261109T060000Z", 10),
        ];
        let k = |keep, daily, weekly| kept(&snaps, Rules { keep, daily, weekly }).into_iter().collect::<Vec<_>>();
        assert_eq!(k(2, 0, 0), [0, 1]);
        assert_eq!(k(1, 3, 0), [0, 2, 3]);
        // Weeks: Nov 23 (new week, Monday), Nov 16-22, Nov 9-15.
        assert_eq!(k(0, 0, 3), [0, 2, 5]);
        assert_eq!(k(0, 0, 0), Vec::<usize>::new());
        assert_eq!(k(10, 0, 0), [0, 1, 2, 3, 4, 5]);
    }
}
