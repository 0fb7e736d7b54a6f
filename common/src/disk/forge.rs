//! Damaged copies of real bbolt files, for the tests and fuzz seeds that prove corrupt input is
//! caught: the `key` bucket's root branch edited in place. Read like a reader does (meta page,
//! root bucket, `key` bucket); None when the file is not laid out that way. And a WAL segment
//! with a HardState appended, for the states a crash leaves that a lab cannot time.

use super::pb::{self, Msg};
use super::wal;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The file offset of the `key` bucket's root page when it is a branch page.
pub fn key_branch(db: &[u8]) -> Option<usize> {
    // Meta page 0: page header (16 bytes), magic, version, page size, flags, root bucket pgid.
    let page_size = u32_at(db, 24)?;
    let root = usize::try_from(u64_at(db, 32)?).ok()?.checked_mul(page_size)?;
    for i in 0..usize::from(u16_at(db, root.checked_add(10)?)?) {
        let el = root + 16 + i * 16;
        let (pos, ksize) = (u32_at(db, el + 4)?, u32_at(db, el + 8)?);
        let key = el.checked_add(pos)?;
        let end = key.checked_add(ksize)?;
        if db.get(key..end)? == b"key" {
            let page = usize::try_from(u64_at(db, end)?).ok()?.checked_mul(page_size)?;
            // Flag 0x01: a branch page.
            return (u16_at(db, page.checked_add(8)?)? == 0x01).then_some(page);
        }
    }
    None
}

/// A copy whose `key` branch points its first child at `child`, or at itself (a cycle) for None.
pub fn with_key_child(db: &[u8], child: Option<u64>) -> Option<Vec<u8>> {
    let off = key_branch(db)?;
    let own = u64_at(db, off)?;
    let mut out = db.to_vec();
    out.get_mut(off + 24..off + 32)?.copy_from_slice(&child.unwrap_or(own).to_le_bytes());
    Some(out)
}

/// A copy whose `key` branch has its first two keys in the wrong order.
pub fn with_keys_swapped(db: &[u8]) -> Option<Vec<u8>> {
    let off = key_branch(db)?;
    if u16_at(db, off + 10)? < 2 {
        return None;
    }
    let (e0, e1) = (off + 16, off + 32);
    let (k0, k1) = (u32_at(db, e0)?.checked_add(e0)?, u32_at(db, e1)?.checked_add(e1)?);
    let mut out = db.to_vec();
    out.get_mut(k1..k1.checked_add(8)?)?.copy_from_slice(db.get(k0..k0.checked_add(8)?)?);
    Some(out)
}

/// A copy of a first WAL segment with one more HardState, of the last one's term and vote and
/// `commit`: the state of a member whose commit index was never synced past `commit` though it
/// applied more (etcd 3.5.22's fix of `--force-new-cluster` is about it). None when the segment
/// does not read whole or holds no HardState.
pub fn wal_with_commit(seg: &[u8], commit: u64) -> Option<Vec<u8>> {
    let read = wal::read_segment(seg);
    if read.torn_at.is_some() || read.crc_mismatch_at.is_some() {
        return None;
    }
    let last = read.records.iter().rev().find(|r| r.typ == wal::STATE)?;
    let f = pb::fields(&last.data)?;
    let mut w = wal::Writer::continuing(read.crc);
    w.record(
        wal::STATE,
        &Msg::default().uint(1, pb::uint_of(&f, 1)).uint(2, pb::uint_of(&f, 2)).uint(3, commit).into_bytes(),
    );
    let end = usize::try_from(read.records.last()?.end).ok()?;
    let mut out = seg.get(..end)?.to_vec();
    out.extend_from_slice(&w.buf);
    out.extend_from_slice(seg.get(out.len().min(seg.len())..)?);
    Some(out)
}

/// A copy of a first WAL segment cut before its first entry above `index`, zeros from there on
/// (as a preallocated segment's tail is): a WAL that lost a tail its db applied. None when the
/// segment does not read whole or has no entry above `index`.
pub fn wal_cut_after(seg: &[u8], index: u64) -> Option<Vec<u8>> {
    let read = wal::read_segment(seg);
    if read.torn_at.is_some() || read.crc_mismatch_at.is_some() {
        return None;
    }
    let first_above = read
        .records
        .iter()
        .position(|r| r.typ == wal::ENTRY && pb::fields(&r.data).is_some_and(|f| pb::uint_of(&f, 3) > index))?;
    // It starts where the record before it ends.
    let start = first_above.checked_sub(1).map_or(0, |i| read.records[i].end);
    let mut out = seg.to_vec();
    out.get_mut(usize::try_from(start).ok()?..)?.fill(0);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files cut short anywhere near the branch are None, never a panic (found by fuzzing).
    #[test]
    fn cut_short_files_are_none() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/snapshot-3.5.30.db");
        let db = std::fs::read(path).unwrap();
        let off = key_branch(&db).expect("the test snapshot's key bucket is a branch");
        assert!(with_key_child(&db, None).is_some() && with_keys_swapped(&db).is_some());
        for cut in [off + 11, off + 20, off + 30, off + 40] {
            assert!(with_key_child(&db[..cut], None).is_none(), "cut at {cut}");
        }
        // A branch element whose key offset points far past the end.
        let mut far = db.clone();
        far[off + 16 + 16..off + 16 + 20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(with_keys_swapped(&far).is_none());
    }

    /// The forged HardState is the last one a reader finds, the chain still whole.
    #[test]
    fn a_hard_state_appended() {
        let own = 0x8e9e05c52164694d;
        let seg = wal::restore_segment(own, 0xcdf818194e3a8c32, &[wal::WalMember { id: own, json: "{}" }], true);
        let mut padded = seg.clone();
        padded.resize(seg.len() + 4096, 0);
        for input in [seg, padded] {
            let out = wal_with_commit(&input, 0).unwrap();
            assert!(out.len() >= input.len());
            let read = wal::read_segment(&out);
            assert!(read.torn_at.is_none() && read.crc_mismatch_at.is_none());
            let states: Vec<_> = read.records.iter().filter(|r| r.typ == wal::STATE).collect();
            assert_eq!(states.len(), 2);
            let f = pb::fields(&states[1].data).unwrap();
            assert_eq!((pb::uint_of(&f, 1), pb::uint_of(&f, 2), pb::uint_of(&f, 3)), (1, own, 0));
        }
        assert!(wal_with_commit(&[0u8; 64], 1).is_none(), "no HardState");
    }

    /// The cut WAL reads whole and ends below the cut.
    #[test]
    fn a_wal_cut_short() {
        let members: Vec<wal::WalMember> = (1..=3).map(|id| wal::WalMember { id, json: "{}" }).collect();
        let seg = wal::restore_segment(1, 7, &members, true);
        let out = wal_cut_after(&seg, 1).unwrap();
        assert_eq!(out.len(), seg.len());
        let read = wal::read_segment(&out);
        assert!(read.torn_at.is_none() && read.crc_mismatch_at.is_none());
        let indexes: Vec<u64> = read
            .records
            .iter()
            .filter(|r| r.typ == wal::ENTRY)
            .map(|r| pb::uint_of(&pb::fields(&r.data).unwrap(), 3))
            .collect();
        assert_eq!(indexes, [1]);
        assert!(wal_cut_after(&seg, 3).is_none(), "no entry above 3");
    }
}
