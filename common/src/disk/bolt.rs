//! A bbolt reader (file format version 2, as bbolt 1.3/1.4 write it). Pages are read on demand
//! with pread, so memory does not grow with the database; every page id, offset and length is
//! bounds-checked and every page is visited at most once, so a corrupt file is an error, never a
//! panic or a hang. Layout: ETCD-DISK-FORMAT.md §3.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const PAGE_HEADER: usize = 16;
const LEAF_ELEMENT: usize = 16;
const BRANCH_ELEMENT: usize = 16;
/// bbolt refuses longer keys (MaxKeySize).
const MAX_KEY_SIZE: u32 = 32768;
const FLAG_BRANCH: u16 = 0x01;
const FLAG_LEAF: u16 = 0x02;
const FLAG_META: u16 = 0x04;
const BUCKET_LEAF_FLAG: u32 = 0x01;
/// The freelist page id of files written with NoFreelistSync (every etcd file on Linux).
pub const NO_FREELIST: u64 = u64::MAX;

/// What is wrong with a file that is not a sound bbolt database.
#[derive(Debug, Clone, PartialEq)]
pub struct Corrupt(pub String);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Corrupt {}

pub type Result<T> = std::result::Result<T, Corrupt>;

fn corrupt(msg: impl Into<String>) -> Corrupt {
    Corrupt(msg.into())
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Meta {
    pub page_size: u32,
    pub root: u64,
    pub freelist: u64,
    /// High-water mark: pages `[0, pgid)` are in use.
    pub pgid: u64,
    pub txid: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// FNV-1a 64, bbolt's meta checksum.
pub(crate) fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Parses and validates the meta struct of a meta page image.
fn parse_meta(page: &[u8]) -> Option<Meta> {
    if page.len() < PAGE_HEADER + 64 || u16_at(page, 8) & FLAG_META == 0 {
        return None;
    }
    let m = &page[PAGE_HEADER..PAGE_HEADER + 64];
    if u32_at(m, 0) != MAGIC || u32_at(m, 4) != VERSION || fnv1a64(&m[..56]) != u64_at(m, 56) {
        return None;
    }
    Some(Meta {
        page_size: u32_at(m, 8),
        root: u64_at(m, 16),
        freelist: u64_at(m, 32),
        pgid: u64_at(m, 40),
        txid: u64_at(m, 48),
    })
}

/// Receives (key, value, is_bucket) in key order.
type Emit<'a> = dyn FnMut(&[u8], &[u8], bool) + 'a;

/// One page (with its overflow pages) as read from the file.
struct Page {
    id: u64,
    flags: u16,
    count: usize,
    /// The page bytes are `data[..len]`; the buffer is reused from page to page.
    data: Vec<u8>,
    len: usize,
}

impl Page {
    fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

/// A visitor of the whole database in key order.
pub trait Visitor {
    /// A top-level bucket starts.
    fn bucket(&mut self, name: &[u8]);
    /// An entry of the current bucket; `is_bucket` for a nested bucket (etcd has none).
    fn entry(&mut self, key: &[u8], value: &[u8], is_bucket: bool);
}

pub struct Bolt {
    file: File,
    len: u64,
    pub meta: Meta,
    /// Bit per page: reached already (a second visit means a cycle or a shared page).
    seen: Vec<u64>,
    /// The page buffer between reads.
    spare: Vec<u8>,
}

impl Bolt {
    /// Opens a file (which may carry a snapshot's sha256 trailer: only pages below `pgid` are read).
    pub fn open(path: &Path) -> std::result::Result<Bolt, OpenError> {
        let file = File::open(path).map_err(OpenError::Io)?;
        Bolt::from_file(file).map_err(OpenError::Corrupt)
    }

    pub fn from_file(file: File) -> Result<Bolt> {
        let len = file.metadata().map_err(|e| corrupt(format!("cannot stat: {e}")))?.len();
        if len == 0 {
            return Err(corrupt("empty file"));
        }
        let mut first = vec![0u8; (PAGE_HEADER + 64).min(len as usize)];
        file.read_exact_at(&mut first, 0).map_err(|e| corrupt(format!("cannot read: {e}")))?;
        let meta0 = parse_meta(&first);
        // Meta 1 sits one page further; the page size comes from meta 0, or is guessed if it is bad.
        let sizes: Vec<u64> = match meta0 {
            Some(m) => vec![u64::from(m.page_size)],
            None => vec![4096, 8192, 16384, 32768, 65536],
        };
        let mut meta1 = None;
        for ps in sizes {
            if ps < 512 || len < ps + (PAGE_HEADER + 64) as u64 {
                continue;
            }
            let mut buf = vec![0u8; PAGE_HEADER + 64];
            if file.read_exact_at(&mut buf, ps).is_ok()
                && let Some(m) = parse_meta(&buf).filter(|m| u64::from(m.page_size) == ps)
            {
                meta1 = Some(m);
                break;
            }
        }
        let meta = match (meta0, meta1) {
            (Some(a), Some(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => return Err(corrupt("not a bbolt database (no valid meta page)")),
        };
        let ps = u64::from(meta.page_size);
        if !(512..=1 << 20).contains(&ps) || !ps.is_power_of_two() {
            return Err(corrupt(format!("bad page size {ps}")));
        }
        if meta.pgid < 3 || meta.pgid.checked_mul(ps).is_none_or(|need| need > len) {
            return Err(corrupt(format!(
                "truncated: the meta says {} pages of {ps} bytes, the file has {len} bytes",
                meta.pgid
            )));
        }
        let seen = vec![0u64; (meta.pgid as usize).div_ceil(64)];
        Ok(Bolt { file, len, meta, seen, spare: Vec::new() })
    }

    /// The database size as bbolt reports it (`tx.Size()`): pgid × page size.
    pub fn size(&self) -> u64 {
        self.meta.pgid * u64::from(self.meta.page_size)
    }

    fn read_page(&mut self, id: u64) -> Result<Page> {
        let ps = u64::from(self.meta.page_size);
        if id < 2 || id >= self.meta.pgid {
            return Err(corrupt(format!("page id {id} out of range [2, {})", self.meta.pgid)));
        }
        let mut header = [0u8; PAGE_HEADER];
        self.file.read_exact_at(&mut header, id * ps).map_err(|e| corrupt(format!("page {id}: {e}")))?;
        let (pid, flags, count, overflow) =
            (u64_at(&header, 0), u16_at(&header, 8), u16_at(&header, 10) as usize, u64::from(u32_at(&header, 12)));
        if pid != id {
            return Err(corrupt(format!("page {id}: header says page {pid}")));
        }
        if id + overflow >= self.meta.pgid {
            return Err(corrupt(format!("page {id}: {overflow} overflow pages run past page {}", self.meta.pgid)));
        }
        for p in id..=id + overflow {
            let (word, bit) = ((p / 64) as usize, p % 64);
            if self.seen[word] & (1 << bit) != 0 {
                return Err(corrupt(format!("page {p} reached twice (a cycle or a shared page)")));
            }
            self.seen[word] |= 1 << bit;
        }
        let total = (overflow + 1) * ps;
        if id * ps + total > self.len {
            return Err(corrupt(format!("page {id} runs past the end of the file")));
        }
        // Only the bytes the elements use are read, so a corrupt overflow count alone cannot make
        // us allocate up to the whole file: the first page (one read for most pages), then the rest
        // of the element table if it runs on, then up to the furthest element's data.
        let is_leaf = flags & FLAG_LEAF != 0;
        let elements = if flags & (FLAG_LEAF | FLAG_BRANCH) != 0 { count } else { 0 };
        let table = (PAGE_HEADER + elements * if is_leaf { LEAF_ELEMENT } else { BRANCH_ELEMENT }) as u64;
        let past = || corrupt(format!("page {id}: its elements run past its {} page(s)", overflow + 1));
        if table > total {
            return Err(past());
        }
        // One buffer for all pages: grown (and zeroed) only when a bigger page comes.
        let mut data = std::mem::take(&mut self.spare);
        let read = |data: &mut Vec<u8>, from: u64, to: u64| {
            if data.len() < to as usize {
                data.resize(to as usize, 0);
            }
            self.file
                .read_exact_at(&mut data[from as usize..to as usize], id * ps + from)
                .map_err(|e| corrupt(format!("page {id}: {e}")))
        };
        let have = ps.min(total).max(table);
        read(&mut data, 0, have)?;
        let end = element_data_end(&data, elements, is_leaf, id)?;
        if end > total {
            return Err(past());
        }
        if end > have {
            read(&mut data, have, end)?;
        }
        let len = end as usize;
        Ok(Page { id, flags, count, data, len })
    }

    /// Walks every top-level bucket in order and its entries in key order, checking structure and
    /// key order on the way. Can be called once per `Bolt` (pages are marked as they are read).
    pub fn walk(&mut self, v: &mut dyn Visitor) -> Result<()> {
        for (name, value) in self.buckets()? {
            v.bucket(&name);
            self.bucket_entries(&name, &value, v)?;
        }
        Ok(())
    }

    /// The top-level buckets in order: (name, bucket value as stored in the root bucket's leaf).
    pub fn buckets(&mut self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let root = self.meta.root;
        let mut names: Vec<(Vec<u8>, Vec<u8>, bool)> = Vec::new();
        let mut last: Option<Vec<u8>> = None;
        self.walk_tree(root, "root bucket", &mut last, &mut |k, val, is_bucket| {
            names.push((k.to_vec(), val.to_vec(), is_bucket));
        })?;
        names
            .into_iter()
            .map(|(name, value, is_bucket)| {
                if is_bucket {
                    Ok((name, value))
                } else {
                    Err(corrupt(format!("root bucket entry {:?} is not a bucket", String::from_utf8_lossy(&name))))
                }
            })
            .collect()
    }

    /// One bucket's entries in key order, by its bucket value (from [`Bolt::buckets`]).
    pub fn bucket_entries(&mut self, name: &[u8], value: &[u8], v: &mut dyn Visitor) -> Result<()> {
        self.walk_bucket(value, &String::from_utf8_lossy(name), v)
    }

    /// A (small) bucket's entries as a map.
    pub fn bucket_map(&mut self, name: &[u8], value: &[u8]) -> Result<std::collections::BTreeMap<Vec<u8>, Vec<u8>>> {
        struct Collect(std::collections::BTreeMap<Vec<u8>, Vec<u8>>);
        impl Visitor for Collect {
            fn bucket(&mut self, _: &[u8]) {}
            fn entry(&mut self, key: &[u8], value: &[u8], _: bool) {
                self.0.insert(key.to_vec(), value.to_vec());
            }
        }
        let mut c = Collect(Default::default());
        self.bucket_entries(name, value, &mut c)?;
        Ok(c.0)
    }

    /// The last key of a bucket, down its rightmost path (pages read are marked as visited).
    pub fn last_key(&mut self, value: &[u8]) -> Result<Option<Vec<u8>>> {
        if value.len() < 16 {
            return Err(corrupt("bucket header cut short"));
        }
        let last_of_leaf = |page: &Page| -> Result<Option<Vec<u8>>> {
            let mut last = None;
            leaf_entries(page, "last key", &mut None, &mut |k, _, _| last = Some(k.to_vec()))?;
            Ok(last)
        };
        let root = u64_at(value, 0);
        if root == 0 {
            return last_of_leaf(&inline_page(value, "last key")?);
        }
        let mut id = root;
        loop {
            let page = self.read_page(id)?;
            if page.flags & FLAG_LEAF != 0 {
                let last = last_of_leaf(&page)?;
                if last.is_none() && id != root {
                    return Err(empty_leaf("last key", id));
                }
                return Ok(last);
            }
            if page.flags & FLAG_BRANCH == 0 {
                return Err(corrupt(format!("page {id} is neither branch nor leaf")));
            }
            id = branch_children(&page, "last key")?.last().map(|(_, c)| *c).unwrap_or(0);
        }
    }

    fn walk_bucket(&mut self, header: &[u8], name: &str, v: &mut dyn Visitor) -> Result<()> {
        if header.len() < 16 {
            return Err(corrupt(format!("bucket {name:?}: header of {} bytes", header.len())));
        }
        let root = u64_at(header, 0);
        let mut last: Option<Vec<u8>> = None;
        let mut emit = |k: &[u8], val: &[u8], is_bucket: bool| v.entry(k, val, is_bucket);
        if root == 0 {
            return leaf_entries(&inline_page(header, name)?, name, &mut last, &mut emit).map(drop);
        }
        self.walk_tree(root, name, &mut last, &mut emit)
    }

    fn walk_tree(&mut self, root: u64, name: &str, last: &mut Option<Vec<u8>>, emit: &mut Emit) -> Result<()> {
        // Depth-first with an explicit stack: (page id, the parent's key for it, the parent's next
        // key). Every key of a page lies in [its key, the next one), as bbolt's check wants.
        type Bound = Option<Vec<u8>>;
        let mut stack: Vec<(u64, Bound, Bound)> = vec![(root, None, None)];
        let above = |id: u64| corrupt(format!("bucket {name:?} page {id}: a key at or above its parent's next key"));
        while let Some((id, lower, upper)) = stack.pop() {
            let page = self.read_page(id)?;
            if page.flags & FLAG_LEAF != 0 {
                let first = leaf_entries(&page, name, last, emit)?;
                if let (Some(lo), Some(first)) = (&lower, &first)
                    && first < lo
                {
                    return Err(corrupt(format!("bucket {name:?} page {id}: first key below its parent's key")));
                }
                if lower.is_some() && first.is_none() {
                    return Err(empty_leaf(name, id));
                }
                if let (Some(up), Some(l)) = (&upper, last.as_ref())
                    && l >= up
                {
                    return Err(above(id));
                }
            } else if page.flags & FLAG_BRANCH != 0 {
                let children = branch_children(&page, name)?;
                if let Some(lo) = &lower
                    && children[0].0 < *lo
                {
                    return Err(corrupt(format!("bucket {name:?} page {id}: first key below its parent's key")));
                }
                if let (Some(up), Some((l, _))) = (&upper, children.last())
                    && l >= up
                {
                    return Err(above(id));
                }
                let mut next = upper;
                for (key, child) in children.into_iter().rev() {
                    stack.push((child, Some(key.clone()), next));
                    next = Some(key);
                }
            } else {
                return Err(corrupt(format!(
                    "bucket {name:?}: page {id} is neither branch nor leaf (flags {:#x})",
                    page.flags
                )));
            }
            self.spare = page.data;
        }
        Ok(())
    }
}

/// bbolt never leaves an empty leaf below a branch (it merges or drops it): the walk and the
/// rightmost-path readers would disagree about such a file, so it is corrupt for both.
fn empty_leaf(name: &str, id: u64) -> Corrupt {
    corrupt(format!("bucket {name:?} page {id}: empty leaf below a branch"))
}

/// Where a page's element data ends, from its element table (`data` holds at least the table):
/// bbolt writes the keys and values back to back after the table, in element order. Data that
/// overlaps (elements sharing bytes), or a key over bbolt's limit, is no bbolt page, and would let
/// a small file claim far more keys and values than it holds (a restore gigabytes long).
fn element_data_end(data: &[u8], count: usize, is_leaf: bool, id: u64) -> Result<u64> {
    let mut end = (PAGE_HEADER + count * LEAF_ELEMENT) as u64;
    for i in 0..count {
        let at = PAGE_HEADER + i * LEAF_ELEMENT;
        let el = &data[at..at + LEAF_ELEMENT];
        let (pos, ksize, size) = match is_leaf {
            true => (u32_at(el, 4), u32_at(el, 8), u64::from(u32_at(el, 8)) + u64::from(u32_at(el, 12))),
            false => (u32_at(el, 0), u32_at(el, 4), u64::from(u32_at(el, 4))),
        };
        let start = at as u64 + u64::from(pos);
        if start < end {
            return Err(corrupt(format!("page {id}: element {i}'s data overlaps what comes before it")));
        }
        if ksize > MAX_KEY_SIZE {
            return Err(corrupt(format!("page {id}: element {i}'s key is {ksize} bytes, over bbolt's {MAX_KEY_SIZE}")));
        }
        end = start + size;
    }
    Ok(end)
}

/// An inline bucket's leaf: the page image after the 16-byte bucket header, its elements checked
/// as a page's are (it is written the same way).
fn inline_page(value: &[u8], name: &str) -> Result<Page> {
    let cut = || corrupt(format!("bucket {name:?}: inline page cut short"));
    let image = value.get(16..).filter(|i| i.len() >= PAGE_HEADER).ok_or_else(cut)?;
    let (flags, count) = (u16_at(image, 8), u16_at(image, 10) as usize);
    if flags & FLAG_LEAF != 0 {
        if image.len() < PAGE_HEADER + count * LEAF_ELEMENT {
            return Err(cut());
        }
        element_data_end(image, count, true, 0).map_err(|e| corrupt(format!("bucket {name:?} inline {e}")))?;
    }
    Ok(Page {
        id: 0,
        flags: u16_at(image, 8),
        count: u16_at(image, 10) as usize,
        data: image.to_vec(),
        len: image.len(),
    })
}

fn slice<'a>(page: &'a Page, from: usize, len: usize, what: &str, name: &str) -> Result<&'a [u8]> {
    from.checked_add(len)
        .and_then(|end| page.bytes().get(from..end))
        .ok_or_else(|| corrupt(format!("bucket {name:?} page {}: {what} out of the page", page.id)))
}

/// Emits a leaf's entries, checking each key is above the last one seen; returns the first key.
fn leaf_entries(page: &Page, name: &str, last: &mut Option<Vec<u8>>, emit: &mut Emit) -> Result<Option<Vec<u8>>> {
    let mut first = None;
    if page.flags & FLAG_LEAF == 0 {
        return Err(corrupt(format!("bucket {name:?} page {}: not a leaf", page.id)));
    }
    for i in 0..page.count {
        let at = PAGE_HEADER + i * LEAF_ELEMENT;
        let el = slice(page, at, LEAF_ELEMENT, "element", name)?;
        let (flags, pos, ksize, vsize) =
            (u32_at(el, 0), u32_at(el, 4) as usize, u32_at(el, 8) as usize, u32_at(el, 12) as usize);
        let key = slice(page, at + pos, ksize, "key", name)?;
        let value = slice(page, at + pos + ksize, vsize, "value", name)?;
        if let Some(prev) = last.as_deref()
            && key <= prev
        {
            return Err(corrupt(format!("bucket {name:?} page {}: keys out of order", page.id)));
        }
        if first.is_none() {
            first = Some(key.to_vec());
        }
        *last = Some(key.to_vec());
        emit(key, value, flags & BUCKET_LEAF_FLAG != 0);
    }
    Ok(first)
}

fn branch_children(page: &Page, name: &str) -> Result<Vec<(Vec<u8>, u64)>> {
    let mut out: Vec<(Vec<u8>, u64)> = Vec::with_capacity(page.count);
    if page.count == 0 {
        return Err(corrupt(format!("bucket {name:?} page {}: empty branch", page.id)));
    }
    for i in 0..page.count {
        let at = PAGE_HEADER + i * BRANCH_ELEMENT;
        let el = slice(page, at, BRANCH_ELEMENT, "element", name)?;
        let (pos, ksize, child) = (u32_at(el, 0) as usize, u32_at(el, 4) as usize, u64_at(el, 8));
        let key = slice(page, at + pos, ksize, "key", name)?.to_vec();
        if out.last().is_some_and(|(prev, _)| key <= *prev) {
            return Err(corrupt(format!("bucket {name:?} page {}: branch keys out of order", page.id)));
        }
        out.push((key, child));
    }
    Ok(out)
}

#[derive(Debug)]
pub enum OpenError {
    Io(std::io::Error),
    Corrupt(Corrupt),
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Count(u64);
    impl Visitor for Count {
        fn bucket(&mut self, _: &[u8]) {}
        fn entry(&mut self, _: &[u8], _: &[u8], _: bool) {
            self.0 += 1;
        }
    }

    /// A fresh db (temp file named by `tag`) whose bucket `key` holds 200 keys over 6 leaves and a
    /// branch; returns its path and the bucket's value.
    fn db_of_200_keys(tag: &str) -> (std::path::PathBuf, Vec<u8>) {
        let path = std::env::temp_dir().join(format!("{tag}-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut w = crate::disk::boltw::BoltWriter::create(&path, 4096).unwrap();
        for i in 0..200u32 {
            w.put(&i.to_be_bytes(), &[7u8; 100]).unwrap();
        }
        let bucket = w.end_bucket().unwrap();
        w.finish(vec![(b"key".to_vec(), bucket.clone())]).unwrap();
        (path, bucket)
    }

    /// A corrupt overflow count (one bit flip) on a big db: only the bytes the page's elements use
    /// are read, not the hundreds of MB the count claims. bbolt reads such a page fine too.
    #[test]
    fn a_huge_overflow_count_reads_only_what_the_elements_use() {
        use std::os::unix::fs::FileExt;
        let (path, _) = db_of_200_keys("overflow");
        // Grown to 2^20 pages (4 GiB, sparse), as both meta pages say.
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let pages = 1u64 << 20;
        f.set_len(pages * 4096).unwrap();
        let mut root = 0;
        for m in 0..2u64 {
            let mut meta = vec![0u8; 4096];
            f.read_exact_at(&mut meta, m * 4096).unwrap();
            root = u64_at(&meta, PAGE_HEADER + 16);
            meta[PAGE_HEADER + 40..PAGE_HEADER + 48].copy_from_slice(&pages.to_le_bytes());
            let sum = fnv1a64(&meta[PAGE_HEADER..PAGE_HEADER + 56]);
            meta[PAGE_HEADER + 56..PAGE_HEADER + 64].copy_from_slice(&sum.to_le_bytes());
            f.write_all_at(&meta, m * 4096).unwrap();
        }
        // The root bucket's page claims 600,000 overflow pages (2.3 GiB).
        f.write_all_at(&600_000u32.to_le_bytes(), root * 4096 + 12).unwrap();
        drop(f);
        let mut count = Count(0);
        Bolt::open(&path).unwrap().walk(&mut count).unwrap();
        assert_eq!(count.0, 200);
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let hwm_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .unwrap()
            .trim()
            .trim_end_matches(" kB")
            .trim()
            .parse()
            .unwrap();
        assert!(hwm_kb < 1 << 20, "peak RSS {hwm_kb} kB: the claimed overflow was read");
        std::fs::remove_file(&path).unwrap();
    }

    /// A leaf whose keys reach its parent's next key: still in order overall, but bbolt's check
    /// (and so `etcdutl`) refuses it, and so do we.
    #[test]
    fn a_key_at_or_above_the_parents_next_key_is_corrupt() {
        use std::os::unix::fs::FileExt;
        let (path, bucket) = db_of_200_keys("upper");
        let mut count = Count(0);
        Bolt::open(&path).unwrap().walk(&mut count).unwrap();
        assert_eq!(count.0, 200);
        // The branch's second key lowered to 10: the first leaf (keys 0..) now runs past it.
        let branch = u64_at(&bucket, 0) * 4096;
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let mut el = [0u8; 16];
        f.read_exact_at(&mut el, branch + 32).unwrap();
        let key_at = branch + 32 + u64::from(u32_at(&el, 0));
        f.write_all_at(&10u32.to_be_bytes(), key_at).unwrap();
        drop(f);
        let err = Bolt::open(&path).unwrap().walk(&mut Count(0)).unwrap_err().to_string();
        assert!(err.contains("a key at or above its parent's next key"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    /// An empty leaf below a branch is corrupt for the walk and for `last_key` alike (found by
    /// fuzzing: the walk skipped it while `last_key` returned None, so the revision read 0).
    #[test]
    fn an_empty_leaf_below_a_branch_is_corrupt() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/snapshot-3.5.30.db");
        let mut db = std::fs::read(path).unwrap();
        db.truncate(db.len() - 32);
        let branch = crate::disk::forge::key_branch(&db).unwrap();
        let count = u16_at(&db, branch + 10) as usize;
        let last_child = u64_at(&db, branch + PAGE_HEADER + (count - 1) * BRANCH_ELEMENT + 8) as usize;
        db[last_child * 4096 + 10..last_child * 4096 + 12].copy_from_slice(&0u16.to_le_bytes());
        let file = std::env::temp_dir().join(format!("empty-leaf-{}.db", std::process::id()));
        std::fs::write(&file, &db).unwrap();

        let err = Bolt::open(&file).unwrap().walk(&mut Count(0)).unwrap_err().to_string();
        assert!(err.contains("empty leaf below a branch"), "{err}");
        let mut bolt = Bolt::open(&file).unwrap();
        let key = bolt.buckets().unwrap().into_iter().find(|(n, _)| n == b"key").unwrap().1;
        let err = bolt.last_key(&key).unwrap_err().to_string();
        assert!(err.contains("empty leaf below a branch"), "{err}");
        std::fs::remove_file(&file).unwrap();
    }

    /// Elements that share bytes (each a window over one region) are no bbolt page: refused,
    /// not read as far more keys than the file holds. Likewise a key over bbolt's size limit.
    #[test]
    fn overlapping_elements_are_corrupt() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/snapshot-3.5.30.db");
        let mut db = std::fs::read(path).unwrap();
        db.truncate(db.len() - 32);
        let branch = crate::disk::forge::key_branch(&db).unwrap();
        let el = |i: usize| branch + PAGE_HEADER + i * BRANCH_ELEMENT;
        let file = std::env::temp_dir().join(format!("overlap-{}.db", std::process::id()));
        let walk = |db: &[u8]| {
            std::fs::write(&file, db).unwrap();
            Bolt::open(&file).unwrap().walk(&mut Count(0)).unwrap_err().to_string()
        };
        // The second element's key at the first one's bytes.
        let mut shared = db.clone();
        let pos0 = u32_at(&db, el(0));
        shared[el(1)..el(1) + 4].copy_from_slice(&(pos0 - BRANCH_ELEMENT as u32).to_le_bytes());
        let err = walk(&shared);
        assert!(err.contains("element 1's data overlaps what comes before it"), "{err}");
        // The first element's key inside the element table.
        let mut in_table = db.clone();
        in_table[el(0)..el(0) + 4].copy_from_slice(&4u32.to_le_bytes());
        assert!(walk(&in_table).contains("element 0's data overlaps"), "in the table");
        // A last key longer than bbolt writes.
        let mut long = db.clone();
        let last = u16_at(&db, branch + 10) as usize - 1;
        long[el(last) + 4..el(last) + 8].copy_from_slice(&40000u32.to_le_bytes());
        let err = walk(&long);
        assert!(err.contains("key is 40000 bytes, over bbolt's 32768"), "{err}");
        std::fs::remove_file(&file).unwrap();
    }

    /// An inline bucket's elements are checked as a page's: overlapping data there is corrupt too.
    #[test]
    fn overlapping_elements_of_an_inline_bucket_are_corrupt() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/snapshot-3.5.30.db");
        let mut db = std::fs::read(path).unwrap();
        db.truncate(db.len() - 32);
        // The root bucket's leaf (meta page 0: page size, root pgid), and an inline bucket of it
        // with two entries or more.
        let ps = u32_at(&db, 24) as usize;
        let root = u64_at(&db, 32) as usize * ps;
        assert_eq!(u16_at(&db, root + 8) & FLAG_LEAF, FLAG_LEAF, "the root bucket is one leaf");
        let image = (0..u16_at(&db, root + 10) as usize)
            .map(|i| root + PAGE_HEADER + i * LEAF_ELEMENT)
            .map(|el| el + u32_at(&db, el + 4) as usize + u32_at(&db, el + 8) as usize)
            .find(|&value| u64_at(&db, value) == 0 && u16_at(&db, value + 16 + 10) >= 2)
            .expect("an inline bucket with two entries")
            + 16;
        let (el0, el1) = (image + PAGE_HEADER, image + PAGE_HEADER + LEAF_ELEMENT);
        let pos0 = u32_at(&db, el0 + 4);
        db[el1 + 4..el1 + 8].copy_from_slice(&(pos0 - LEAF_ELEMENT as u32).to_le_bytes());
        let file = std::env::temp_dir().join(format!("inline-overlap-{}.db", std::process::id()));
        std::fs::write(&file, &db).unwrap();
        let err = Bolt::open(&file).unwrap().walk(&mut Count(0)).unwrap_err().to_string();
        assert!(err.contains("inline page 0: element 1's data overlaps"), "{err}");
        std::fs::remove_file(&file).unwrap();
    }
}
