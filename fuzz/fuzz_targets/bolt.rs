//! The bbolt reader and the snapshot checks on top of it, on arbitrary file contents.
//!
//! The reader takes a file, so each input is written to one scratch file per process (in
//! `$TMPDIR`, which `fuzz/run` points at /dev/shm) and opened from there.
//!
//! Invariants checked besides "no panic, no hang, no unbounded allocation":
//! - a walk that returns Ok visited top-level buckets in strictly increasing name order and each
//!   bucket's keys in strictly increasing order;
//! - `status` succeeds exactly when the walk does, with the walk's entry count and `size()`;
//! - `last_key` of a bucket (on a fresh reader) is the last key the walk saw in it;
//! - `verify` agrees with `status` and with the file: size, trailer flag, trailer hash.
//!
//! (`common::disk::forge`, the test helpers that damage such files, has its own target: `forge`.)
#![no_main]

use common::disk::bolt::{Bolt, OpenError, Visitor};
use common::disk::snapshot::{self, Problem};
use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn scratch() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| std::env::temp_dir().join(format!("etcd-fuzz-bolt-{}.db", std::process::id())))
}

/// Records what a walk visits and whether the order held.
#[derive(Default)]
struct Record {
    /// (bucket name, its keys in visit order)
    buckets: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
    entries: u64,
    in_order: bool,
}

impl Visitor for Record {
    fn bucket(&mut self, name: &[u8]) {
        if let Some((prev, _)) = self.buckets.last()
            && name <= prev.as_slice()
        {
            self.in_order = false;
        }
        self.buckets.push((name.to_vec(), Vec::new()));
    }
    fn entry(&mut self, key: &[u8], _value: &[u8], _is_bucket: bool) {
        self.entries += 1;
        let Some((_, keys)) = self.buckets.last_mut() else {
            self.in_order = false;
            return;
        };
        if keys.last().is_some_and(|k| key <= k.as_slice()) {
            self.in_order = false;
        }
        keys.push(key.to_vec());
    }
}

fn open(path: &Path) -> Option<Bolt> {
    match Bolt::open(path) {
        Ok(b) => Some(b),
        Err(OpenError::Corrupt(_)) => None,
        Err(OpenError::Io(e)) => panic!("scratch file unreadable: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("write the scratch file");
    let len = data.len() as u64;

    // The walk, through from_file this time.
    let file = std::fs::File::open(path).expect("open the scratch file");
    let mut walked: Option<(Record, u64)> = None;
    if let Ok(mut bolt) = Bolt::from_file(file) {
        let size = bolt.size();
        assert!(size <= len, "size {size} past the file's {len} bytes");
        assert_eq!(size, bolt.meta.pgid * u64::from(bolt.meta.page_size));
        let mut rec = Record { in_order: true, ..Record::default() };
        if bolt.walk(&mut rec).is_ok() {
            assert!(rec.in_order, "a walk that returned Ok visited keys out of order");
            walked = Some((rec, size));
        }
        // A second walk on the same reader: every page is marked, so it must fail (or find nothing
        // to read), never loop.
        let _ = bolt.walk(&mut Record::default());
    }

    // The rest of the reader's API, each on a fresh reader (pages are marked as they are read).
    let buckets = open(path).map(|mut bolt| bolt.buckets());
    if walked.is_some() {
        assert!(matches!(buckets, Some(Ok(_))), "the walk succeeded but buckets() did not: {buckets:?}");
    }
    if let Some(Ok(buckets)) = buckets {
        if let Some((rec, _)) = &walked {
            let names: Vec<&[u8]> = buckets.iter().map(|(n, _)| n.as_slice()).collect();
            let seen: Vec<&[u8]> = rec.buckets.iter().map(|(n, _)| n.as_slice()).collect();
            assert_eq!(names, seen, "buckets() and walk() disagree on the bucket list");
        }
        for (i, (name, value)) in buckets.iter().enumerate() {
            let last = open(path).map(|mut b| b.last_key(value));
            if let (Some((rec, _)), Some(last)) = (&walked, last) {
                let walk_last = rec.buckets[i].1.last().cloned();
                assert_eq!(last.ok(), Some(walk_last), "last_key of bucket {name:?} is not the walk's last key");
            }
            if let Some(mut b) = open(path) {
                let map = b.bucket_map(name, value);
                if let (Some((rec, _)), Ok(map)) = (&walked, map) {
                    assert_eq!(map.len(), rec.buckets[i].1.len(), "bucket_map of {name:?} lost entries");
                }
            }
        }
    }

    // snapshot::status walks the same way; verify adds the trailer rules.
    let status = snapshot::status(path);
    match (&status, &walked) {
        (Ok(s), Some((rec, size))) => {
            assert_eq!(s.total_keys, rec.entries);
            assert_eq!(s.total_size, *size);
        }
        (Err(Problem::Corrupt(_)), None) => {}
        (s, w) => panic!("status {s:?} but the walk {}", if w.is_some() { "succeeded" } else { "failed" }),
    }
    let trailer = snapshot::has_trailer(len);
    for skip in [false, true] {
        match snapshot::verify(path, skip) {
            Ok(v) => {
                assert_eq!(v.file_size, len);
                assert_eq!(v.has_trailer, trailer);
                assert_eq!(Ok(v.status), status, "verify and status disagree");
                if trailer {
                    assert_eq!(v.sha256, snapshot::hex(&data[data.len() - 32..]), "the trailer's hash");
                } else {
                    assert!(skip, "verify accepted a file without a trailer");
                    assert_eq!(v.sha256, "");
                }
            }
            Err(Problem::Empty) => assert_eq!(len, 0),
            Err(Problem::NoTrailer) => assert!(!skip && !trailer),
            Err(Problem::TrailerMismatch { .. }) => assert!(!skip && trailer),
            Err(Problem::Corrupt(_)) => assert!(status.is_err()),
            Err(Problem::Unreadable(e)) => panic!("verify: unreadable: {e}"),
        }
    }
});
