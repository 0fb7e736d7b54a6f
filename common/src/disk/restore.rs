//! The native `snapshot restore` (ETCD-DISK-FORMAT.md §8.6): one data dir that etcd 3.4, 3.5 and
//! 3.6 start from. The db changes are the same either way: `members` replaced by the new members,
//! `members_removed` emptied, `meta/consistent_index` = N and `meta/term` = 1, optionally a revision
//! bump and dropped alarms. Two ways to write it (memory does not grow with the db in either):
//! a compacting rewrite (every bucket rewritten while it is read: a defrag, and the way for a
//! revision bump, which touches `key`; the default, measured faster) or copy-then-patch (the file
//! copied, new pages appended for the changed buckets and a new root, new meta pages).
//! Then the `.snap` file and the first WAL segment, each member's own.

use super::bolt::{Bolt, Corrupt, OpenError, Visitor};
use super::boltw::BoltWriter;
use super::ids::{InitialMember, cluster_id};
use super::{snapfile, wal};
use crate::backup::private_dir as mkdir;
use crate::durable::sync_dir;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Buckets every restored db has (created empty when the source lacks them).
const ENSURED: [&[u8]; 6] = [b"cluster", b"key", b"lease", b"members", b"members_removed", b"meta"];

pub struct Options<'a> {
    /// Every member of the new cluster; `own` is one of them.
    pub members: &'a [InitialMember],
    pub own: u64,
    /// `--bump-revision X --mark-compacted`.
    pub bump_revision: Option<u64>,
    pub drop_alarms: bool,
    /// Copy the db and patch it instead of the compacting rewrite (a bump always rewrites).
    pub copy_patch: bool,
    /// `meta/confState` := the new voters (ETCD-DISK-FORMAT.md §8.6 step 5; etcdutl keeps the old).
    pub write_conf_state: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub member_id: u64,
    pub cluster_id: u64,
    /// The source's last revision.
    pub revision: i64,
    /// The revision after the bump, when bumped.
    pub bumped_revision: Option<i64>,
    /// The source's `meta` has neither `confState` nor `storageVersion` (a db from etcd 3.4):
    /// etcd 3.6.0–3.6.4 cannot tell its schema and refuse it unless `confState` is written.
    pub legacy_schema: bool,
}

#[derive(Debug)]
pub enum Error {
    Corrupt(Corrupt),
    Io(std::io::Error),
    /// `--bump-revision` past the largest revision etcd takes: the input refused, nothing wrong.
    BumpPast(String),
}

/// The marker of [`Error::BumpPast`] on its way out of the visitor, which returns I/O errors.
#[derive(Debug)]
struct BumpPast(String);

impl std::fmt::Display for BumpPast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BumpPast {}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Corrupt(c) => write!(f, "the snapshot is not a sound bbolt database: {c}"),
            Error::Io(e) => write!(f, "{e}"),
            Error::BumpPast(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

fn revision_key(main: u64) -> Vec<u8> {
    let mut k = main.to_be_bytes().to_vec();
    k.push(b'_');
    k.extend_from_slice(&0u64.to_be_bytes());
    k
}

/// The buckets a restore changes, by name.
fn changes(name: &[u8], opts: &Options) -> bool {
    matches!(name, b"members" | b"members_removed" | b"meta") || (name == b"alarm" && opts.drop_alarms)
}

/// The new entries of a changed bucket, from its old ones.
fn changed_entries(
    name: &[u8],
    old: BTreeMap<Vec<u8>, Vec<u8>>,
    opts: &Options,
    n: u64,
    bumped: Option<&Vec<u8>>,
) -> BTreeMap<Vec<u8>, Vec<u8>> {
    match name {
        b"members" => opts
            .members
            .iter()
            .map(|m| {
                (format!("{:x}", m.id).into_bytes(), snapfile::member_json(m.id, &m.name, &m.peer_urls).into_bytes())
            })
            .collect(),
        b"meta" => {
            let mut meta = old;
            meta.insert(b"consistent_index".to_vec(), n.to_be_bytes().to_vec());
            meta.insert(b"term".to_vec(), 1u64.to_be_bytes().to_vec());
            if opts.write_conf_state {
                let mut voters: Vec<u64> = opts.members.iter().map(|m| m.id).collect();
                voters.sort();
                let ids: Vec<String> = voters.iter().map(u64::to_string).collect();
                // Go's encoding of raftpb.ConfState: empty lists omitted, auto_leave always there.
                let json = format!("{{\"voters\":[{}],\"auto_leave\":false}}", ids.join(","));
                meta.insert(b"confState".to_vec(), json.into_bytes());
            }
            if let Some(k) = bumped {
                meta.insert(b"scheduledCompactRev".to_vec(), k.clone());
            }
            meta
        }
        // members_removed emptied; alarm dropped when asked
        _ => BTreeMap::new(),
    }
}

/// A `meta` bucket from which etcd 3.6.0–3.6.4 cannot tell the schema (see [`Outcome`]).
fn legacy_schema(meta: &BTreeMap<Vec<u8>, Vec<u8>>) -> bool {
    !meta.contains_key(b"confState".as_slice()) && !meta.contains_key(b"storageVersion".as_slice())
}

/// Streams the source db into the writer, with the restore's changes.
struct Rewrite<'a> {
    w: BoltWriter,
    opts: &'a Options<'a>,
    n: u64,
    current: Option<Vec<u8>>,
    done: Vec<(Vec<u8>, Vec<u8>)>,
    /// The current bucket's entries when it is one the restore changes.
    meta: BTreeMap<Vec<u8>, Vec<u8>>,
    last_key: Option<Vec<u8>>,
    bumped: Option<Vec<u8>>,
    legacy_schema: bool,
    err: Option<std::io::Error>,
}

impl Rewrite<'_> {
    fn attempt(&mut self, f: impl FnOnce(&mut Self) -> std::io::Result<()>) {
        if self.err.is_none()
            && let Err(e) = f(self)
        {
            self.err = Some(e);
        }
    }

    /// Writes what a bucket gets besides (or instead of) the source's entries, and closes it.
    fn close(&mut self, name: &[u8]) -> std::io::Result<()> {
        if name == b"key"
            && let Some(x) = self.opts.bump_revision
        {
            let bad = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
            let main =
                match self.last_key.as_ref() {
                    None => 0,
                    Some(k) => k.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).ok_or_else(|| {
                        bad(format!("the last key of bucket key is {} bytes, not a revision", k.len()))
                    })?,
                };
            // etcd reads revisions as int64: a bump past that would come back negative.
            let bumped = main.checked_add(x).filter(|r| *r <= i64::MAX as u64).ok_or_else(|| {
                let why =
                    format!("--bump-revision {x}: revision {main} + {x} is past the largest etcd takes ({})", i64::MAX);
                std::io::Error::other(BumpPast(why))
            })?;
            let key = revision_key(bumped);
            self.w.put(&key, b"")?;
            self.bumped = Some(key);
        }
        if changes(name, self.opts) {
            let old = std::mem::take(&mut self.meta);
            if name == b"meta" {
                self.legacy_schema = legacy_schema(&old);
            }
            for (k, v) in changed_entries(name, old, self.opts, self.n, self.bumped.as_ref()) {
                self.w.put(&k, &v)?;
            }
        }
        let value = self.w.end_bucket()?;
        self.done.push((name.to_vec(), value));
        Ok(())
    }

    /// Closes the current bucket and creates the ensured ones that sort before `next`.
    fn advance(&mut self, next: Option<&[u8]>) -> std::io::Result<()> {
        if let Some(cur) = self.current.take() {
            self.close(&cur)?;
        }
        for name in ENSURED {
            let before_next = next.is_none_or(|n| name < n);
            let missing = !self.done.iter().any(|(d, _)| d == name);
            let after_last = self.done.last().is_none_or(|(d, _)| d.as_slice() < name);
            if before_next && missing && after_last {
                self.close(name)?;
            }
        }
        Ok(())
    }
}

impl Visitor for Rewrite<'_> {
    fn bucket(&mut self, name: &[u8]) {
        self.attempt(|s| s.advance(Some(name)));
        self.current = Some(name.to_vec());
    }

    fn entry(&mut self, key: &[u8], value: &[u8], is_bucket: bool) {
        let cur = self.current.clone().unwrap_or_default();
        if is_bucket {
            self.attempt(|_| Err(std::io::Error::other("nested buckets are not etcd's")));
        } else if changes(&cur, self.opts) {
            // Small buckets: kept until the bucket closes, then written changed.
            self.meta.insert(key.to_vec(), value.to_vec());
        } else {
            if cur == b"key" {
                self.last_key = Some(key.to_vec());
            }
            self.attempt(|s| s.w.put(key, value));
        }
    }
}

fn main_revision(key: Option<&Vec<u8>>) -> i64 {
    key.map_or(0, |k| i64::from_be_bytes(k.get(..8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8])))
}

/// The compacting rewrite: every bucket streamed through the writer.
fn rewrite_db(bolt: &mut Bolt, db: &Path, opts: &Options, n: u64) -> Result<Written, Error> {
    let w = BoltWriter::create(db, bolt.meta.page_size as usize)?;
    let mut rw = Rewrite {
        w,
        opts,
        n,
        current: None,
        done: Vec::new(),
        meta: BTreeMap::new(),
        last_key: None,
        bumped: None,
        legacy_schema: false,
        err: None,
    };
    bolt.walk(&mut rw).map_err(Error::Corrupt)?;
    rw.attempt(|s| s.advance(None));
    if let Some(e) = rw.err {
        return Err(match e.get_ref().and_then(|i| i.downcast_ref::<BumpPast>()) {
            Some(b) => Error::BumpPast(b.0.clone()),
            None => Error::Io(e),
        });
    }
    let out = Written {
        revision: main_revision(rw.last_key.as_ref()),
        bumped: rw.bumped.as_ref().map(|k| main_revision(Some(k))),
        legacy_schema: rw.legacy_schema,
    };
    rw.w.finish(rw.done)?;
    Ok(out)
}

/// What writing the db found out.
struct Written {
    revision: i64,
    bumped: Option<i64>,
    legacy_schema: bool,
}

/// Reads a bucket through: its last key, and whether it nests buckets.
#[derive(Default)]
struct Check {
    last: Option<Vec<u8>>,
    nested: bool,
}

impl Visitor for Check {
    fn bucket(&mut self, _: &[u8]) {}
    fn entry(&mut self, key: &[u8], _: &[u8], is_bucket: bool) {
        self.nested |= is_bucket;
        match &mut self.last {
            Some(l) => {
                l.clear();
                l.extend_from_slice(key);
            }
            None => self.last = Some(key.to_vec()),
        }
    }
}

/// Copy-then-patch: the file copied (the kernel's copy, reflinks where the filesystem has them),
/// the changed buckets and a new root bucket appended as new pages, new meta pages. The old pages
/// of the changed buckets are left unreachable, which a no-freelist file treats as free.
fn patch_db(bolt: &mut Bolt, snapshot: &Path, db: &Path, opts: &Options, n: u64) -> Result<Written, Error> {
    // Created 0600 before any byte of the copy lands (fs::copy would give it the source's mode).
    let mut out = crate::durable::create_new(db, 0o600)?;
    std::io::copy(&mut std::fs::File::open(snapshot)?, &mut out)?;
    drop(out);
    let page_size = bolt.meta.page_size as usize;
    let mut w = BoltWriter::append(db, page_size, bolt.meta.pgid)?;
    // None: a bucket the source lacks (created empty); a present bucket's value is checked as read.
    let mut source: Vec<(Vec<u8>, Option<Vec<u8>>)> =
        bolt.buckets().map_err(Error::Corrupt)?.into_iter().map(|(n, v)| (n, Some(v))).collect();
    for name in ENSURED {
        if !source.iter().any(|(n, _)| n == name) {
            source.push((name.to_vec(), None));
        }
    }
    source.sort();
    let mut revision = 0;
    let mut legacy = false;
    let mut buckets = Vec::new();
    for (name, value) in source {
        match (value, changes(&name, opts)) {
            (Some(value), false) => {
                // Linked as it is, but read through first: the copy must not carry damage the
                // rewrite would refuse (a raw db from a crashed node has no hash to catch it).
                let mut check = Check::default();
                bolt.bucket_entries(&name, &value, &mut check).map_err(Error::Corrupt)?;
                if check.nested {
                    return Err(Error::Io(std::io::Error::other("nested buckets are not etcd's")));
                }
                if name == b"key" {
                    revision = main_revision(check.last.as_ref());
                }
                buckets.push((name, value));
            }
            (value, changed) => {
                let old = match &value {
                    None => BTreeMap::new(),
                    Some(v) => bolt.bucket_map(&name, v).map_err(Error::Corrupt)?,
                };
                if name == b"meta" {
                    legacy = legacy_schema(&old);
                }
                let entries = if changed { changed_entries(&name, old, opts, n, None) } else { old };
                for (k, v) in entries {
                    w.put(&k, &v)?;
                }
                buckets.push((name, w.end_bucket()?));
            }
        }
    }
    w.finish(buckets)?;
    Ok(Written { revision, bumped: None, legacy_schema: legacy })
}

fn write_file(p: &Path, data: &[u8], mode: u32, len: Option<u64>) -> std::io::Result<()> {
    let mut f = crate::durable::create_new(p, mode)?;
    f.write_all(data)?;
    if let Some(len) = len {
        f.set_len(len)?;
    }
    f.sync_all()
}

/// Restores `snapshot` (hash rules already applied by the caller) into `data_dir`, which must not
/// exist; its parent must.
pub fn restore(snapshot: &Path, data_dir: &Path, opts: &Options) -> Result<Outcome, Error> {
    let mut sorted: Vec<&InitialMember> = opts.members.iter().collect();
    sorted.sort_by_key(|m| m.id);
    let ids: Vec<u64> = sorted.iter().map(|m| m.id).collect();
    let cid = cluster_id(&ids);
    let n = ids.len() as u64;

    let open = |p: &Path| {
        Bolt::open(p).map_err(|e| match e {
            OpenError::Io(e) => Error::Io(e),
            OpenError::Corrupt(c) => Error::Corrupt(c),
        })
    };
    let mut bolt = open(snapshot)?;
    mkdir(data_dir)?;
    let member = data_dir.join("member");
    mkdir(&member)?;
    mkdir(&member.join("snap"))?;
    let db = member.join("snap/db");
    // Chosen by measurement (BENCHMARKS.md): the rewrite beat copy-then-patch on a 1.3 GB
    // snapshot, and defragments on the way.
    let written = if opts.copy_patch && opts.bump_revision.is_none() {
        patch_db(&mut bolt, snapshot, &db, opts, n)?
    } else {
        rewrite_db(&mut bolt, &db, opts, n)?
    };

    let v2 = snapfile::v2_store_json(&sorted.iter().map(|m| (m.id, m.peer_urls.clone())).collect::<Vec<_>>());
    let snap = snapfile::snap_file(&v2, &ids, n, 1);
    write_file(&member.join("snap").join(snapfile::snap_name(1, n)), &snap, 0o600, None)?;
    sync_dir(&member.join("snap"))?;

    let jsons: Vec<String> = sorted.iter().map(|m| snapfile::member_json(m.id, &m.name, &m.peer_urls)).collect();
    let wal_members: Vec<wal::WalMember> =
        sorted.iter().zip(&jsons).map(|(m, j)| wal::WalMember { id: m.id, json: j }).collect();
    let segment = wal::restore_segment(opts.own, cid, &wal_members, true);
    // Written under wal.tmp and renamed, as etcd does, so a WAL dir is always whole.
    let tmp = member.join("wal.tmp");
    mkdir(&tmp)?;
    write_file(&tmp.join("0000000000000000-0000000000000000.wal"), &segment, 0o600, Some(wal::SEGMENT_BYTES))?;
    sync_dir(&tmp)?;
    std::fs::rename(&tmp, member.join("wal"))?;
    sync_dir(&member)?;
    sync_dir(data_dir)?;
    Ok(Outcome {
        member_id: opts.own,
        cluster_id: cid,
        revision: written.revision,
        bumped_revision: written.bumped,
        legacy_schema: written.legacy_schema,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A db whose `key` bucket holds `keys` (and an empty `meta`), in a fresh temp dir.
    fn db_with_keys(tag: &str, keys: &[Vec<u8>]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("restore-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.db");
        let mut w = BoltWriter::create(&path, 4096).unwrap();
        for k in keys {
            w.put(k, b"v").unwrap();
        }
        let key = w.end_bucket().unwrap();
        let meta = w.end_bucket().unwrap();
        w.finish(vec![(b"key".to_vec(), key), (b"meta".to_vec(), meta)]).unwrap();
        dir
    }

    /// Damage off the `key` bucket's rightmost path (its first child pointing past the file):
    /// copy-then-patch links that bucket unchanged, but reads it through first, so it refuses the
    /// file as the rewrite does instead of copying the damage into a data dir.
    #[test]
    fn copy_patch_refuses_damage_in_a_bucket_it_keeps() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/snapshot-3.5.30.db");
        let db = std::fs::read(path).unwrap();
        let far = crate::disk::forge::with_key_child(&db, Some(999_999)).unwrap();
        let dir = std::env::temp_dir().join(format!("restore-far-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("s.db"), far).unwrap();
        let m = InitialMember { name: "n1".into(), peer_urls: vec!["https://10.0.0.1:2380".into()], id: 7 };
        for copy_patch in [false, true] {
            let opts = Options {
                members: std::slice::from_ref(&m),
                own: 7,
                bump_revision: None,
                drop_alarms: false,
                copy_patch,
                write_conf_state: false,
            };
            let err = restore(&dir.join("s.db"), &dir.join(format!("data-{copy_patch}")), &opts).unwrap_err();
            assert!(matches!(err, Error::Corrupt(_)), "copy_patch {copy_patch}: {err}");
            assert!(err.to_string().contains("page id 999999 out of range"), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A db from etcd 3.4 (no confState, no storageVersion) is flagged, one from 3.5 is not; with
    /// `write_conf_state` the new voters go in as Go writes raftpb.ConfState, in both write modes.
    #[test]
    fn conf_state_for_a_3_4_db() {
        let dir = std::env::temp_dir().join(format!("restore-confstate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let members = [
            InitialMember { name: "a".into(), peer_urls: vec!["https://10.0.0.1:2380".into()], id: 900 },
            InitialMember { name: "b".into(), peer_urls: vec!["https://10.0.0.2:2380".into()], id: 12 },
        ];
        let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        for (version, legacy) in [("3.4.23", true), ("3.5.30", false)] {
            for (write, copy_patch) in [(false, false), (true, false), (true, true)] {
                let opts = Options {
                    members: &members,
                    own: 12,
                    bump_revision: None,
                    drop_alarms: false,
                    copy_patch,
                    write_conf_state: write,
                };
                let out = dir.join(format!("{version}-{write}-{copy_patch}"));
                let o = restore(&testdata.join(format!("snapshot-{version}.db")), &out, &opts).unwrap();
                assert_eq!(o.legacy_schema, legacy, "{version}");
                let mut bolt = Bolt::open(&out.join("member/snap/db")).unwrap();
                let meta = bolt.buckets().unwrap().into_iter().find(|(n, _)| n == b"meta").unwrap().1;
                let meta = bolt.bucket_map(b"meta", &meta).unwrap();
                let conf = meta.get(b"confState".as_slice()).map(|v| String::from_utf8_lossy(v).into_owned());
                match write {
                    true => assert_eq!(conf.as_deref(), Some(r#"{"voters":[12,900],"auto_leave":false}"#)),
                    false => assert_eq!(conf.is_some(), !legacy, "{version}: the source's own, kept"),
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn bump(dir: &Path, by: u64) -> Result<Outcome, Error> {
        let m = InitialMember { name: "n1".into(), peer_urls: vec!["https://10.0.0.1:2380".into()], id: 7 };
        let opts = Options {
            members: &[m],
            own: 7,
            bump_revision: Some(by),
            drop_alarms: false,
            copy_patch: false,
            write_conf_state: false,
        };
        restore(&dir.join("s.db"), &dir.join(format!("data-{by}")), &opts)
    }

    /// `--bump-revision` reads the last revision off the last key: a key that is not a revision,
    /// or a bump past int64 (etcd reads revisions signed), is an error naming why, never a panic
    /// or a wrapped revision.
    #[test]
    fn bump_errors_name_the_reason() {
        let dir = db_with_keys("short", &[revision_key(3), b"zz".to_vec()]);
        let err = bump(&dir, 10).unwrap_err().to_string();
        assert_eq!(err, "the last key of bucket key is 2 bytes, not a revision");

        let dir2 = db_with_keys("past", &[revision_key(i64::MAX as u64 - 5)]);
        let err = bump(&dir2, 10).unwrap_err().to_string();
        assert!(err.starts_with("--bump-revision 10: revision 9223372036854775802 + 10 is past the largest"), "{err}");
        let bumped = bump(&dir2, 5).map_err(|e| e.to_string()).unwrap().bumped_revision;
        assert_eq!(bumped, Some(i64::MAX), "a bump to int64's largest fits");
        for d in [dir, dir2] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
}
