//! The WAL (ETCD-DISK-FORMAT.md §6): record framing, the CRC-32C chain, the records a restore
//! writes, and a reader that checks the chain and reports a torn tail.

use super::pb::{self, Msg};

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
    let mut r = Read::default();
    let mut at = 0usize;
    while at + 8 <= b.len() {
        let field = u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        if field == 0 {
            break;
        }
        let len = (field & 0x00ff_ffff_ffff_ffff) as usize;
        let pad = if field >> 63 == 1 { ((field >> 56) & 7) as usize } else { 0 };
        let Some(rec) = b.get(at + 8..at + 8 + len) else {
            r.torn_at = Some(at as u64);
            return r;
        };
        let Some(f) = pb::fields(rec) else {
            r.torn_at = Some(at as u64);
            return r;
        };
        let typ = pb::uint_of(&f, 1);
        let crc = pb::uint_of(&f, 2) as u32;
        let data = pb::bytes_of(&f, 3).unwrap_or(&[]).to_vec();
        if typ == CRC {
            if r.crc != 0 && r.crc != crc && r.crc_mismatch_at.is_none() {
                r.crc_mismatch_at = Some(at as u64);
            }
            r.crc = crc;
        } else {
            r.crc = crc32c::crc32c_append(r.crc, &data);
            if r.crc != crc && r.crc_mismatch_at.is_none() {
                r.crc_mismatch_at = Some(at as u64);
            }
        }
        r.records.push(Record { typ, crc, data });
        at += 8 + len + pad;
    }
    r
}
