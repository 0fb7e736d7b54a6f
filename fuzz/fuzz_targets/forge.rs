//! `common::disk::forge`, the test helpers that damage bbolt files (for the unit tests, the
//! bad-input corpus and fuzz seeds), on arbitrary bytes. Not a parser of untrusted input, but
//! documented to return None for a file not laid out as it expects, so it must not panic either.
//!
//! Invariants checked besides "no panic":
//! - an edited copy has the original's length;
//! - the cycle `with_key_child(db, None)` makes is caught by the reader, when it edited the page
//!   the reader takes for the `key` bucket's root in a file the reader otherwise walks.
//!
//! Seeds: fuzz/corpus/forge (the two inputs that made it panic before ae35936) and fuzz/corpus/bolt,
//! which `fuzz/run` passes too.
#![no_main]

use common::disk::bolt::{Bolt, Visitor};
use common::disk::forge;
use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn scratch() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| std::env::temp_dir().join(format!("etcd-fuzz-forge-{}.db", std::process::id())))
}

struct Ignore;

impl Visitor for Ignore {
    fn bucket(&mut self, _: &[u8]) {}
    fn entry(&mut self, _: &[u8], _: &[u8], _: bool) {}
}

fn walks(path: &Path, data: &[u8]) -> bool {
    std::fs::write(path, data).expect("write the scratch file");
    Bolt::open(path).is_ok_and(|mut b| b.walk(&mut Ignore).is_ok())
}

/// The file offset of the `key` bucket's root page, as the reader finds it.
fn key_root(path: &Path) -> Option<usize> {
    let mut bolt = Bolt::open(path).ok()?;
    let page_size = bolt.meta.page_size as usize;
    let buckets = bolt.buckets().ok()?;
    let (_, value) = buckets.iter().find(|(name, _)| name == b"key")?;
    let root = u64::from_le_bytes(value.get(..8)?.try_into().ok()?);
    usize::try_from(root).ok()?.checked_mul(page_size)
}

fuzz_target!(|data: &[u8]| {
    let branch = forge::key_branch(data);
    let child = data.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let edits = [
        (forge::with_key_child(data, None), true),
        (forge::with_key_child(data, child), false),
        (forge::with_keys_swapped(data), false),
    ];
    if edits.iter().all(|(e, _)| e.is_none()) {
        return;
    }
    assert!(branch.is_some(), "an edit without a key branch");
    // forge reads meta page 0 only; the reader may take meta page 1, and so another root.
    let on_path = walks(scratch(), data) && key_root(scratch()) == branch;
    for (edited, must_fail) in edits {
        let Some(edited) = edited else { continue };
        assert_eq!(edited.len(), data.len());
        let edited_walks = walks(&scratch().with_extension("forged"), &edited);
        if must_fail && on_path {
            assert!(!edited_walks, "the walk missed the cycle forge made");
        }
    }
});
