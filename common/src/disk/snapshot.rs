//! Snapshot files (`snapshot save` output: a bbolt image plus a SHA-256 trailer) and the numbers
//! `etcdutl snapshot status` prints for them. ETCD-DISK-FORMAT.md §2.

use super::bolt::{Bolt, Corrupt, OpenError, Visitor};
use std::fs::File;
use std::io::{Read, Seek};
use std::path::Path;

/// bbolt files are whole pages, so a size of 32 past a multiple of 512 means a SHA-256 trailer.
pub fn has_trailer(len: u64) -> bool {
    len % 512 == 32
}

/// `snapshot status` as etcdutl 3.5 / etcdctl 3.4 compute it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// CRC-32C over every bucket name, then each of its keys and values, in order.
    pub hash: u32,
    /// Main revision of the last key of the `key` bucket.
    pub revision: i64,
    /// Entries across all buckets.
    pub total_keys: u64,
    /// pgid × page size.
    pub total_size: u64,
}

struct StatusVisitor {
    crc: u32,
    in_key_bucket: bool,
    last_key: Option<[u8; 8]>,
    total: u64,
}

impl Visitor for StatusVisitor {
    fn bucket(&mut self, name: &[u8]) {
        self.crc = crc32c::crc32c_append(self.crc, name);
        self.in_key_bucket = name == b"key";
    }
    fn entry(&mut self, key: &[u8], value: &[u8], is_bucket: bool) {
        self.crc = crc32c::crc32c_append(self.crc, key);
        if !is_bucket {
            self.crc = crc32c::crc32c_append(self.crc, value);
        }
        if self.in_key_bucket && key.len() >= 8 {
            self.last_key = Some(key[..8].try_into().expect("8 bytes"));
        }
        self.total += 1;
    }
}

/// What `verify` found wrong; every one of them is exit 6.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    Unreadable(String),
    Empty,
    NoTrailer,
    TrailerMismatch { expected: String, got: String },
    Corrupt(Corrupt),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Unreadable(e) => write!(f, "cannot read: {e}"),
            Problem::Empty => f.write_str("empty file (zero bytes)"),
            Problem::NoTrailer => f.write_str(
                "no sha256 trailer (a raw db, or a cut-off snapshot); --skip-hash-check to check it as a raw db",
            ),
            Problem::TrailerMismatch { expected, got } => {
                write!(f, "sha256 mismatch: the trailer says {expected}, the data hashes to {got}")
            }
            Problem::Corrupt(c) => write!(f, "not a sound bbolt database: {c}"),
        }
    }
}

impl std::error::Error for Problem {}

/// The result of a verification.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub file_size: u64,
    /// SHA-256 of the db part (what the trailer holds), hex.
    pub sha256: String,
    pub has_trailer: bool,
    pub status: Status,
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of the first `len` bytes of a file, streamed.
pub fn sha256_prefix(file: &mut File, len: u64) -> std::io::Result<[u8; 32]> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut left = len;
    let mut buf = vec![0u8; 1 << 20];
    let reader = file.by_ref();
    while left > 0 {
        let n = reader.read(&mut buf[..(left.min(1 << 20)) as usize])?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shorter than expected"));
        }
        ctx.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(ctx.finish().as_ref().try_into().expect("32 bytes"))
}

/// Checks a snapshot stream's SHA-256 trailer as the bytes arrive: all but the last 32 bytes are
/// hashed, the last 32 are compared at the end. Nothing is buffered beyond those 32 bytes.
pub struct StreamCheck {
    ctx: ring::digest::Context,
    tail: Vec<u8>,
    total: u64,
}

impl Default for StreamCheck {
    fn default() -> Self {
        StreamCheck { ctx: ring::digest::Context::new(&ring::digest::SHA256), tail: Vec::with_capacity(64), total: 0 }
    }
}

impl StreamCheck {
    pub fn update(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        if data.len() >= 32 {
            self.ctx.update(&self.tail);
            let (body, tail) = data.split_at(data.len() - 32);
            self.ctx.update(body);
            self.tail.clear();
            self.tail.extend_from_slice(tail);
        } else {
            self.tail.extend_from_slice(data);
            let extra = self.tail.len().saturating_sub(32);
            self.ctx.update(&self.tail[..extra]);
            self.tail.drain(..extra);
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The db part's SHA-256 (hex) when the trailer matches.
    pub fn finish(self) -> Result<String, Problem> {
        if !has_trailer(self.total) {
            return Err(Problem::Unreadable(format!("sha256 checksum not found [bytes: {}]", self.total)));
        }
        let digest = self.ctx.finish();
        if digest.as_ref() != self.tail.as_slice() {
            return Err(Problem::TrailerMismatch { expected: hex(&self.tail), got: hex(digest.as_ref()) });
        }
        Ok(hex(digest.as_ref()))
    }
}

/// The status numbers of a bbolt file (a trailer, if any, is ignored like bbolt does).
pub fn status(path: &Path) -> Result<Status, Problem> {
    let mut bolt = Bolt::open(path).map_err(|e| match e {
        OpenError::Io(e) => Problem::Unreadable(e.to_string()),
        OpenError::Corrupt(c) => Problem::Corrupt(c),
    })?;
    let mut v = StatusVisitor { crc: 0, in_key_bucket: false, last_key: None, total: 0 };
    bolt.walk(&mut v).map_err(Problem::Corrupt)?;
    Ok(Status {
        hash: v.crc,
        revision: v.last_key.map_or(0, i64::from_be_bytes),
        total_keys: v.total,
        total_size: bolt.size(),
    })
}

/// The hash rules alone (§2.2): the trailer must be there and match, unless `skip_hash_check`.
/// Returns the db part's SHA-256 (hex; the trailer's value, or "" for a raw db, when skipping).
pub fn check_trailer(path: &Path, skip_hash_check: bool) -> Result<String, Problem> {
    let mut file = File::open(path).map_err(|e| Problem::Unreadable(e.to_string()))?;
    let file_size = file.metadata().map_err(|e| Problem::Unreadable(e.to_string()))?.len();
    if file_size == 0 {
        return Err(Problem::Empty);
    }
    let trailer = has_trailer(file_size);
    if !trailer && !skip_hash_check {
        return Err(Problem::NoTrailer);
    }
    let db_len = if trailer { file_size - 32 } else { file_size };
    let mut recorded = [0u8; 32];
    if skip_hash_check {
        if !trailer {
            return Ok(String::new());
        }
        file.seek(std::io::SeekFrom::Start(db_len)).map_err(|e| Problem::Unreadable(e.to_string()))?;
        file.read_exact(&mut recorded).map_err(|e| Problem::Unreadable(e.to_string()))?;
        return Ok(hex(&recorded));
    }
    let digest = sha256_prefix(&mut file, db_len).map_err(|e| Problem::Unreadable(e.to_string()))?;
    file.read_exact(&mut recorded).map_err(|e| Problem::Unreadable(e.to_string()))?;
    if recorded != digest {
        return Err(Problem::TrailerMismatch { expected: hex(&recorded), got: hex(&digest) });
    }
    Ok(hex(&digest))
}

/// Whether the SHA-256 is left unchecked: only when asked and no document recorded one. With
/// the hash skipped, the trailer is taken as it is, and a recorded sha256 compared with that
/// would pass a file corrupted under an intact trailer.
pub fn hash_check_skipped(skip_hash_check: bool, recorded: Option<&str>) -> bool {
    skip_hash_check && recorded.is_none_or(str::is_empty)
}

/// Verifies a snapshot file offline: the SHA-256 trailer (unless `skip_hash_check`, which also
/// accepts a raw db), the bbolt structure, and computes the status numbers.
pub fn verify(path: &Path, skip_hash_check: bool) -> Result<Verified, Problem> {
    let file_size = std::fs::metadata(path).map_err(|e| Problem::Unreadable(e.to_string()))?.len();
    // Two passes over the file, one per core: the SHA-256 stream and the bbolt walk.
    let (sha256, status) = std::thread::scope(|s| {
        let walk = s.spawn(|| status(path));
        let sha = check_trailer(path, skip_hash_check);
        (sha, walk.join().unwrap_or_else(|_| Err(Problem::Unreadable("reader thread failed".into()))))
    });
    Ok(Verified { file_size, sha256: sha256?, has_trailer: has_trailer(file_size), status: status? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name)
    }

    /// What the real tools printed for the committed snapshots (make-snapshots).
    fn expected(version: &str) -> Status {
        let text = std::fs::read_to_string(testdata(&format!("snapshot-{version}.status.json"))).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        Status {
            hash: v["hash"].as_u64().unwrap() as u32,
            revision: v["revision"].as_i64().unwrap(),
            total_keys: v["totalKey"].as_u64().unwrap(),
            total_size: v["totalSize"].as_u64().unwrap(),
        }
    }

    fn scratch(name: &str, data: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("snapshot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    #[test]
    fn same_numbers_as_etcdutl_and_etcdctl() {
        for v in ["3.4.23", "3.5.30"] {
            let got = verify(&testdata(&format!("snapshot-{v}.db")), false).unwrap();
            assert_eq!(got.status, expected(v), "etcd {v}");
            assert!(got.has_trailer);
            let bytes = std::fs::read(testdata(&format!("snapshot-{v}.db"))).unwrap();
            assert_eq!(got.sha256, hex(&bytes[bytes.len() - 32..]));
        }
    }

    #[test]
    fn stream_check_matches_the_file_whatever_the_chunking() {
        let bytes = std::fs::read(testdata("snapshot-3.4.23.db")).unwrap();
        for chunk in [1, 7, 31, 32, 33, 4096, 100_000] {
            let mut c = StreamCheck::default();
            for piece in bytes.chunks(chunk) {
                c.update(piece);
            }
            assert_eq!(c.finish().unwrap(), hex(&bytes[bytes.len() - 32..]), "chunks of {chunk}");
        }
        let mut c = StreamCheck::default();
        c.update(&bytes[..bytes.len() - 1]);
        assert!(c.finish().unwrap_err().to_string().contains("sha256 checksum not found"));
        let mut bad = bytes.clone();
        bad[5000] ^= 1;
        let mut c = StreamCheck::default();
        c.update(&bad);
        assert!(matches!(c.finish(), Err(Problem::TrailerMismatch { .. })));
    }

    #[test]
    fn raw_db_needs_skip_hash_check() {
        let bytes = std::fs::read(testdata("snapshot-3.5.30.db")).unwrap();
        let raw = scratch("raw.db", &bytes[..bytes.len() - 32]);
        assert_eq!(verify(&raw, false), Err(Problem::NoTrailer));
        assert_eq!(verify(&raw, true).unwrap().status, expected("3.5.30"));
    }

    #[test]
    fn damaged_files_are_errors() {
        let bytes = std::fs::read(testdata("snapshot-3.5.30.db")).unwrap();
        assert_eq!(verify(&scratch("zero.db", b""), false), Err(Problem::Empty));
        // Text, sized like a snapshot with a trailer (12320 % 512 == 32).
        let text = scratch("text.db", &[b'x'; 12320]);
        assert!(matches!(verify(&text, true), Err(Problem::Corrupt(_))), "{:?}", verify(&text, true));
        // Cut at a page boundary plus 32: looks like it has a trailer, which no longer matches.
        let cut = scratch("cut.db", &bytes[..4096 * 5 + 32]);
        assert!(matches!(verify(&cut, false), Err(Problem::TrailerMismatch { .. })));
        // The same cut, hash check skipped: the meta page says more pages than the file holds.
        let err = verify(&cut, true).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        let mut flipped = bytes.clone();
        flipped[4096 * 4 + 100] ^= 0x40;
        assert!(matches!(verify(&scratch("flip.db", &flipped), false), Err(Problem::TrailerMismatch { .. })));
    }

    #[test]
    fn structural_damage_is_found_without_the_hash() {
        let bytes = std::fs::read(testdata("snapshot-3.5.30.db")).unwrap();
        // First child pointing back at the branch itself: a cycle.
        let cycle = crate::disk::forge::with_key_child(&bytes, None).unwrap();
        let err = verify(&scratch("cycle.db", &cycle), true).unwrap_err().to_string();
        assert!(err.contains("reached twice"), "{err}");
        // A child page id beyond the end.
        let far = crate::disk::forge::with_key_child(&bytes, Some(999_999)).unwrap();
        let err = verify(&scratch("far.db", &far), true).unwrap_err().to_string();
        assert!(err.contains("page id 999999 out of range"), "{err}");
        // Two branch keys swapped out of order.
        let order = crate::disk::forge::with_keys_swapped(&bytes).unwrap();
        let err = verify(&scratch("order.db", &order), true).unwrap_err().to_string();
        assert!(err.contains("out of order") || err.contains("below its parent"), "{err}");
    }
}
