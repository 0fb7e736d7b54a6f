//! The WAL (ETCD-DISK-FORMAT.md §6): record framing, the CRC-32C chain, the records a restore
//! writes, and a reader that checks the chain and reports a torn tail.

use super::pb::{self, Msg};
use std::io::Read as _;

pub const SEGMENT_BYTES: u64 = 64_000_000;
pub const METADATA: u64 = 1;
pub const ENTRY: u64 = 2;
pub const STATE: u64 = 3;
pub const CRC: u64 = 4;
pub const SNAPSHOT: u64 = 5;

/// A member as the restore's conf-change entries carry it.
pub struct WalMember<'a> {
    pub id: u64,
    /// Its JSON, `{"id":…,"peerURLs":[…],"name":"…"}`.
    pub json: &'a str,
}

/// Appends records with the running CRC.
pub struct Writer {
    pub buf: Vec<u8>,
    crc: u32,
}

impl Writer {
    /// A segment whose chain starts at `prev_crc` (0 for the first segment).
    pub fn new(prev_crc: u32) -> Writer {
        let mut w = Writer { buf: Vec::new(), crc: prev_crc };
        let rec = Msg::default().uint(1, CRC).uint(2, u64::from(prev_crc)).into_bytes();
        w.frame(&rec);
        w
    }

    /// Records that continue a chain whose last CRC is `crc`, in the same segment (no CRC record).
    pub fn continuing(crc: u32) -> Writer {
        Writer { buf: Vec::new(), crc }
    }

    fn frame(&mut self, rec: &[u8]) {
        let len = rec.len() as u64;
        let pad = (8 - len % 8) % 8;
        let field = if pad > 0 { len | ((0x80 | pad) << 56) } else { len };
        self.buf.extend_from_slice(&field.to_le_bytes());
        self.buf.extend_from_slice(rec);
        self.buf.extend(std::iter::repeat_n(0u8, pad as usize));
    }

    pub fn record(&mut self, typ: u64, data: &[u8]) {
        self.crc = crc32c::crc32c_append(self.crc, data);
        let rec = Msg::default().uint(1, typ).uint(2, u64::from(self.crc)).bytes(3, data).into_bytes();
        self.frame(&rec);
    }
}

pub fn conf_state(voters: &[u64]) -> Vec<u8> {
    let mut m = Msg::default();
    for v in voters {
        m = m.uint(1, *v);
    }
    m.uint(5, 0).into_bytes()
}

/// The first WAL segment of a restored member (§6.5): members ascending by ID, term 1.
pub fn restore_segment(own_id: u64, cluster_id: u64, members: &[WalMember], with_conf_state: bool) -> Vec<u8> {
    let n = members.len() as u64;
    let mut w = Writer::new(0);
    w.record(METADATA, &Msg::default().uint(1, own_id).uint(2, cluster_id).into_bytes());
    w.record(SNAPSHOT, &Msg::default().uint(1, 0).uint(2, 0).into_bytes());
    for (i, m) in members.iter().enumerate() {
        let cc = Msg::default().uint(1, 0).uint(2, 0).uint(3, m.id).bytes(4, m.json.as_bytes()).into_bytes();
        let entry = Msg::default().uint(1, 1).uint(2, 1).uint(3, i as u64 + 1).bytes(4, &cc).into_bytes();
        w.record(ENTRY, &entry);
    }
    let vote = members.iter().map(|m| m.id).min().unwrap_or(0);
    w.record(STATE, &Msg::default().uint(1, 1).uint(2, vote).uint(3, n).into_bytes());
    let mut snap = Msg::default().uint(1, n).uint(2, 1);
    if with_conf_state {
        let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
        snap = snap.bytes(3, &conf_state(&ids));
    }
    w.record(SNAPSHOT, &snap.into_bytes());
    w.buf
}

/// One record as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub typ: u64,
    pub crc: u32,
    pub data: Vec<u8>,
    /// Where its frame ends in the segment (the next record's offset).
    pub end: u64,
}

/// What reading a segment found.
#[derive(Debug, Default)]
pub struct Read {
    pub records: Vec<Record>,
    /// The chain's last CRC.
    pub crc: u32,
    /// Bytes after the last good record that are not zero: a torn or damaged tail.
    pub torn_at: Option<u64>,
    /// A record whose CRC does not follow the chain (offset).
    pub crc_mismatch_at: Option<u64>,
}

/// Reads records until the zero tail (or the end), checking the CRC chain.
pub fn read_segment(b: &[u8]) -> Read {
    let mut records = Vec::new();
    let mut out = scan_segment(b, 0, |r| records.push(r.clone()));
    out.records = records;
    out
}

/// [`read_segment`] from a reader, handing each record to `each` instead of keeping it: memory
/// holds one record, not the 64 MB segment. The result's `records` is empty. `prev_crc` is the
/// previous segment's last CRC (0 for the first), which this segment's CRC record must carry.
pub fn scan_segment(mut r: impl std::io::Read, prev_crc: u32, mut each: impl FnMut(&Record)) -> Read {
    let mut out = Read { crc: prev_crc, ..Read::default() };
    let mut at = 0u64;
    let mut rec = Vec::new();
    loop {
        let mut len_field = [0u8; 8];
        match read_full(&mut r, &mut len_field) {
            8 => {}
            // The end, or the zero tail cut at a length field.
            n if len_field[..n].iter().all(|&b| b == 0) => break,
            // The file ends inside a length field: a write cut short (etcd: ErrUnexpectedEOF).
            _ => {
                out.torn_at = Some(at);
                return out;
            }
        }
        let field = u64::from_le_bytes(len_field);
        if field == 0 {
            break;
        }
        let len = (field & 0x00ff_ffff_ffff_ffff) as usize;
        let pad = if field >> 63 == 1 { ((field >> 56) & 7) as usize } else { 0 };
        // A length no segment can hold is a torn or damaged tail, not an allocation to make.
        if len as u64 > SEGMENT_BYTES * 2 {
            out.torn_at = Some(at);
            return out;
        }
        // Grown with the bytes that are really there: a length field is only a claim.
        rec.clear();
        let want = (len + pad) as u64;
        if (&mut r).take(want).read_to_end(&mut rec).is_err() || (rec.len() as u64) < want {
            out.torn_at = Some(at);
            return out;
        }
        let Some(f) = pb::fields(&rec[..len]) else {
            if torn_write(&rec, at + 8) {
                out.torn_at = Some(at);
            } else if out.crc_mismatch_at.is_none() {
                out.crc_mismatch_at = Some(at);
            }
            return out;
        };
        let typ = pb::uint_of(&f, 1);
        let crc = pb::uint_of(&f, 2) as u32;
        let data = pb::bytes_of(&f, 3).unwrap_or(&[]).to_vec();
        if typ == CRC {
            if out.crc != 0 && out.crc != crc && out.crc_mismatch_at.is_none() {
                out.crc_mismatch_at = Some(at);
            }
            out.crc = crc;
        } else {
            let chained = crc32c::crc32c_append(out.crc, &data);
            if chained != crc && torn_write(&rec, at + 8) {
                // The sectors of a write cut short by a crash read back as zeros: the end of the
                // log (etcd repairs it at start), not damage.
                out.torn_at = Some(at);
                return out;
            }
            out.crc = chained;
            if out.crc != crc && out.crc_mismatch_at.is_none() {
                out.crc_mismatch_at = Some(at);
            }
        }
        at += (8 + len + pad) as u64;
        each(&Record { typ, crc, data, end: at });
    }
    out
}

/// Reads until `buf` is full or the input ends (errors count as the end); how many bytes came.
fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    n
}

/// etcd's test for a torn write (wal/decoder.go `isTornEntry`): some part of the record between
/// two 512-byte sector boundaries of the file is all zeros. `file_off` is where `rec` starts.
fn torn_write(rec: &[u8], file_off: u64) -> bool {
    let (mut off, mut rest) = (file_off, rec);
    while !rest.is_empty() {
        let n = ((512 - off % 512) as usize).min(rest.len());
        if rest[..n].iter().all(|&b| b == 0) {
            return true;
        }
        (off, rest) = (off + n as u64, &rest[n..]);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment() -> Vec<u8> {
        let members = [WalMember { id: 1, json: "{\"id\":1}" }, WalMember { id: 2, json: "{\"id\":2}" }];
        restore_segment(1, 99, &members, true)
    }

    #[test]
    fn reads_back_what_it_writes() {
        let mut b = segment();
        b.resize(b.len() + 4096, 0);
        let r = read_segment(&b);
        assert_eq!(
            r.records.iter().map(|r| r.typ).collect::<Vec<_>>(),
            [CRC, METADATA, SNAPSHOT, ENTRY, ENTRY, STATE, SNAPSHOT]
        );
        assert_eq!((r.torn_at, r.crc_mismatch_at), (None, None));
    }

    #[test]
    fn the_chain_runs_across_segments() {
        let first = read_segment(&segment());
        let mut next = Writer::new(first.crc);
        next.record(STATE, &Msg::default().uint(1, 1).uint(2, 0).uint(3, 2).into_bytes());
        let ok = scan_segment(next.buf.as_slice(), first.crc, |_| {});
        assert_eq!(ok.crc_mismatch_at, None);
        let mut wrong = Writer::new(first.crc ^ 1);
        wrong.record(STATE, &Msg::default().uint(1, 1).uint(2, 0).uint(3, 2).into_bytes());
        let bad = scan_segment(wrong.buf.as_slice(), first.crc, |_| {});
        assert_eq!(bad.crc_mismatch_at, Some(0), "a segment that does not continue the previous one");
    }

    #[test]
    fn torn_tail_and_bad_crc_are_reported() {
        let b = segment();
        let torn = read_segment(&b[..b.len() - 20]);
        assert!(torn.torn_at.is_some());
        assert_eq!(torn.records.len(), 6, "the whole records before the tear");
        // A flipped byte inside the metadata record's data: its CRC no longer follows the chain.
        let mut bad = b.clone();
        let data = [0x1a, 0x04, 0x08, 0x01, 0x10, 99];
        let at = bad.windows(6).position(|w| w == data).expect("metadata data") + 5;
        bad[at] ^= 0x01;
        let r = read_segment(&bad);
        assert_eq!(r.crc_mismatch_at, Some(16), "the metadata record follows the 16-byte crc record");
        assert_eq!(r.torn_at, None);
    }

    /// Found by fuzzing: a length field is only a claim (16 bytes claiming 128 MB allocated it),
    /// and a file that ends inside a length field is torn, not a clean end.
    #[test]
    fn short_reads_are_torn_tails() {
        let mut claim = ((128u64 << 20) | (0x80 | 1) << 56).to_le_bytes().to_vec();
        claim.extend([1u8; 8]);
        let r = read_segment(&claim);
        assert_eq!((r.torn_at, r.records.len()), (Some(0), 0));
        let b = segment();
        let whole = read_segment(&b);
        assert_eq!(whole.torn_at, None, "a clean end at a record boundary");
        let mut cut = b.clone();
        cut.extend([24, 0, 0]);
        let r = read_segment(&cut);
        assert_eq!(r.torn_at, Some(b.len() as u64), "three bytes of the next length field");
        assert_eq!(r.records.len(), whole.records.len());
        let mut zeros = b.clone();
        zeros.extend([0, 0, 0]);
        assert_eq!(read_segment(&zeros).torn_at, None, "the zero tail, cut short");
    }

    #[test]
    fn zeroed_sectors_of_the_last_record_are_a_torn_tail() {
        // A 2000-byte entry last: its sectors after the first boundary never reached the disk.
        let mut w = Writer::new(0);
        w.record(METADATA, &Msg::default().uint(1, 1).uint(2, 99).into_bytes());
        let at = w.buf.len();
        w.record(ENTRY, &Msg::default().uint(1, 1).uint(2, 1).bytes(4, &[7u8; 2000]).into_bytes());
        let mut b = w.buf.clone();
        let boundary = (at / 512 + 1) * 512;
        b[boundary..].fill(0);
        b.resize(b.len() + 4096, 0);
        let r = read_segment(&b);
        assert_eq!((r.torn_at, r.crc_mismatch_at), (Some(at as u64), None));
        assert_eq!(r.records.len(), 2, "the records before the torn one");
        // The same entry with one byte changed and no zero sector: damage, not a torn write.
        let mut bad = w.buf.clone();
        bad[boundary + 10] ^= 0x01;
        let r = read_segment(&bad);
        assert_eq!((r.torn_at, r.crc_mismatch_at), (None, Some(at as u64)));
        assert!(!torn_write(&[1, 0, 2], 510), "zeros, but no whole chunk of them");
        assert!(torn_write(&[1, 1, 0, 0], 510), "the chunk after the boundary is zeros");
    }
}
