//! A compacting bbolt writer (ETCD-DISK-FORMAT.md §3 recipe): buckets are written one after the
//! other from sorted entries, leaves packed greedily, branch levels built from the leaves' first
//! keys; only those branch keys stay in memory, so memory does not grow with the values. Pages are
//! allocated from 2 upwards and written sequentially; both meta pages last, no freelist.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;

struct Leaf {
    entries: Vec<(Vec<u8>, Vec<u8>, u32)>,
    size: usize,
}

impl Leaf {
    fn new() -> Leaf {
        Leaf { entries: Vec::new(), size: PAGE_HEADER }
    }
}

pub struct BoltWriter {
    out: BufWriter<File>,
    page_size: usize,
    next_pgid: u64,
    /// The bucket being written: its current leaf and the (first key, page id) of flushed leaves.
    leaf: Leaf,
    children: Vec<(Vec<u8>, u64)>,
    last_key: Option<Vec<u8>>,
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// A leaf page image (id 0 for an inline bucket), unpadded.
fn leaf_image(id: u64, entries: &[(Vec<u8>, Vec<u8>, u32)]) -> Vec<u8> {
    let data: usize = entries.iter().map(|(k, v, _)| k.len() + v.len()).sum();
    let mut b = vec![0u8; PAGE_HEADER + ELEMENT * entries.len() + data];
    put_u64(&mut b, 0, id);
    put_u16(&mut b, 8, 0x02);
    put_u16(&mut b, 10, entries.len() as u16);
    let mut at = PAGE_HEADER + ELEMENT * entries.len();
    for (i, (k, v, flags)) in entries.iter().enumerate() {
        let el = PAGE_HEADER + ELEMENT * i;
        put_u32(&mut b, el, *flags);
        put_u32(&mut b, el + 4, (at - el) as u32);
        put_u32(&mut b, el + 8, k.len() as u32);
        put_u32(&mut b, el + 12, v.len() as u32);
        b[at..at + k.len()].copy_from_slice(k);
        b[at + k.len()..at + k.len() + v.len()].copy_from_slice(v);
        at += k.len() + v.len();
    }
    b
}

impl BoltWriter {
    pub fn create(path: &Path, page_size: usize) -> std::io::Result<BoltWriter> {
        let file = crate::durable::create_new(path, 0o600)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        // Room for the two meta pages, written last.
        out.write_all(&vec![0u8; 2 * page_size])?;
        Ok(BoltWriter { out, page_size, next_pgid: 2, leaf: Leaf::new(), children: Vec::new(), last_key: None })
    }

    /// Appends to an existing bbolt file whose pages `[0, pgid)` stay as they are: new pages go
    /// after them, and `finish` points the meta pages at the new root (copy-then-patch).
    pub fn append(path: &Path, page_size: usize, pgid: u64) -> std::io::Result<BoltWriter> {
        let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(pgid * page_size as u64)?;
        file.seek(SeekFrom::Start(pgid * page_size as u64))?;
        let out = BufWriter::with_capacity(1 << 20, file);
        Ok(BoltWriter { out, page_size, next_pgid: pgid, leaf: Leaf::new(), children: Vec::new(), last_key: None })
    }

    /// Writes a page image at the next page id, padded to whole pages; returns its id.
    fn write_page(&mut self, mut image: Vec<u8>) -> std::io::Result<u64> {
        let id = self.next_pgid;
        let pages = image.len().div_ceil(self.page_size).max(1);
        put_u64(&mut image, 0, id);
        put_u32(&mut image, 12, (pages - 1) as u32);
        image.resize(pages * self.page_size, 0);
        self.out.write_all(&image)?;
        self.next_pgid += pages as u64;
        Ok(id)
    }

    fn flush_leaf(&mut self) -> std::io::Result<()> {
        let leaf = std::mem::replace(&mut self.leaf, Leaf::new());
        if leaf.entries.is_empty() {
            return Ok(());
        }
        let first = leaf.entries[0].0.clone();
        let id = self.write_page(leaf_image(0, &leaf.entries))?;
        self.children.push((first, id));
        Ok(())
    }

    /// Adds an entry to the current bucket; keys must come strictly increasing.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        self.put_flagged(key, value, 0)
    }

    fn put_flagged(&mut self, key: &[u8], value: &[u8], flags: u32) -> std::io::Result<()> {
        if self.last_key.as_deref().is_some_and(|l| key <= l) {
            return Err(std::io::Error::other("bolt writer: keys out of order"));
        }
        self.last_key = Some(key.to_vec());
        let add = ELEMENT + key.len() + value.len();
        if !self.leaf.entries.is_empty() && self.leaf.size + add > self.page_size {
            self.flush_leaf()?;
        }
        self.leaf.size += add;
        self.leaf.entries.push((key.to_vec(), value.to_vec(), flags));
        Ok(())
    }

    /// Ends the current bucket; returns its bucket value (header, plus the leaf when inline).
    pub fn end_bucket(&mut self) -> std::io::Result<Vec<u8>> {
        self.last_key = None;
        let mut value = vec![0u8; 16];
        // Small buckets are inlined in the parent's leaf, as bbolt does.
        if self.children.is_empty() && self.leaf.size <= self.page_size / 4 {
            let leaf = std::mem::replace(&mut self.leaf, Leaf::new());
            value.extend_from_slice(&leaf_image(0, &leaf.entries));
            return Ok(value);
        }
        self.flush_leaf()?;
        let root = self.build_branches()?;
        put_u64(&mut value, 0, root);
        Ok(value)
    }

    /// Branch levels over the flushed leaves until one root page remains. A branch page takes at
    /// least two children (it overflows rather than split below that, as bbolt's do): each level
    /// then at least halves, so even keys of over half a page end in one root.
    fn build_branches(&mut self) -> std::io::Result<u64> {
        let mut level = std::mem::take(&mut self.children);
        while level.len() > 1 {
            let width = level.len();
            let mut next = Vec::new();
            let mut page: Vec<(Vec<u8>, u64)> = Vec::new();
            let mut size = PAGE_HEADER;
            for (key, child) in level {
                let add = ELEMENT + key.len();
                if page.len() >= 2 && size + add > self.page_size {
                    next.push(self.write_branch(std::mem::take(&mut page))?);
                    size = PAGE_HEADER;
                }
                size += add;
                page.push((key, child));
            }
            next.push(self.write_branch(page)?);
            // A guard: a level that does not shrink would loop, writing pages until the disk is full.
            if next.len() >= width {
                return Err(std::io::Error::other("bolt writer: a branch level did not shrink"));
            }
            level = next;
        }
        Ok(level[0].1)
    }

    fn write_branch(&mut self, elems: Vec<(Vec<u8>, u64)>) -> std::io::Result<(Vec<u8>, u64)> {
        let keys: usize = elems.iter().map(|(k, _)| k.len()).sum();
        let mut b = vec![0u8; PAGE_HEADER + ELEMENT * elems.len() + keys];
        put_u16(&mut b, 8, 0x01);
        put_u16(&mut b, 10, elems.len() as u16);
        let mut at = PAGE_HEADER + ELEMENT * elems.len();
        for (i, (k, child)) in elems.iter().enumerate() {
            let el = PAGE_HEADER + ELEMENT * i;
            put_u32(&mut b, el, (at - el) as u32);
            put_u32(&mut b, el + 4, k.len() as u32);
            put_u64(&mut b, el + 8, *child);
            b[at..at + k.len()].copy_from_slice(k);
            at += k.len();
        }
        let first = elems[0].0.clone();
        Ok((first, self.write_page(b)?))
    }

    /// Writes the root bucket from (name, bucket value) in name order, then the meta pages; syncs.
    pub fn finish(mut self, buckets: Vec<(Vec<u8>, Vec<u8>)>) -> std::io::Result<()> {
        self.leaf = Leaf::new();
        self.children.clear();
        for (name, value) in &buckets {
            self.put_flagged(name, value, 0x01)?;
        }
        // The root bucket is always a page tree, never inline.
        self.flush_leaf()?;
        let root = if self.children.is_empty() { self.write_page(leaf_image(0, &[]))? } else { self.build_branches()? };
        let pgid = self.next_pgid;
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        for txid in 0..2u64 {
            let mut page = vec![0u8; self.page_size];
            put_u64(&mut page, 0, txid);
            put_u16(&mut page, 8, 0x04);
            let m = PAGE_HEADER;
            put_u32(&mut page, m, 0xED0C_DAED);
            put_u32(&mut page, m + 4, 2);
            put_u32(&mut page, m + 8, self.page_size as u32);
            put_u64(&mut page, m + 16, root);
            put_u64(&mut page, m + 32, super::bolt::NO_FREELIST);
            put_u64(&mut page, m + 40, pgid);
            put_u64(&mut page, m + 48, txid);
            let sum = super::bolt::fnv1a64(&page[m..m + 56]);
            put_u64(&mut page, m + 56, sum);
            file.seek(SeekFrom::Start(txid * self.page_size as u64))?;
            file.write_all(&page)?;
        }
        file.set_len(pgid * self.page_size as u64)?;
        file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::bolt::{Bolt, Visitor};

    struct Keys(Vec<Vec<u8>>);
    impl Visitor for Keys {
        fn bucket(&mut self, _: &[u8]) {}
        fn entry(&mut self, key: &[u8], _: &[u8], _: bool) {
            self.0.push(key.to_vec());
        }
    }

    /// Keys of over half a page (auth user or role names have no limit in etcd): the branch
    /// levels still end in one root, and the file reads back whole. Splitting a branch page at one
    /// child made every level as wide as the one below, and the writer filled the disk.
    #[test]
    fn keys_longer_than_half_a_page() {
        for (len, count) in [(2100usize, 2usize), (2100, 9), (5000, 3), (9000, 40)] {
            let path = std::env::temp_dir().join(format!("boltw-long-{}-{len}-{count}.db", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let keys: Vec<Vec<u8>> = (0..count).map(|i| vec![b'a' + i as u8 % 26; len + i]).collect();
            let mut sorted = keys.clone();
            sorted.sort();
            let mut w = BoltWriter::create(&path, 4096).unwrap();
            for k in &sorted {
                w.put(k, b"v").unwrap();
            }
            let bucket = w.end_bucket().unwrap();
            w.finish(vec![(b"authUsers".to_vec(), bucket)]).unwrap();
            assert!(std::fs::metadata(&path).unwrap().len() < 64 * (len as u64 + 4096) * count as u64);
            let mut seen = Keys(Vec::new());
            Bolt::open(&path).unwrap().walk(&mut seen).unwrap();
            assert_eq!(seen.0, sorted, "{len} x {count}");
            std::fs::remove_file(&path).unwrap();
        }
    }
}
