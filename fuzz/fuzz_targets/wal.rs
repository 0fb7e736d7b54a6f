//! The WAL segment reader and the protobuf field decoder, on arbitrary bytes.
//!
//! Invariants checked besides "no panic, no hang, no unbounded allocation":
//! - the records read plus the torn/CRC-mismatch offsets lie within the input, whatever the chain
//!   start;
//! - `read_segment` over a slice and `scan_segment` over a reader that hands out the same bytes in
//!   odd-sized pieces find the same records, chain CRC, torn tail and mismatch;
//! - `pb::fields` of any message made only of varints and byte strings reads back unchanged after
//!   being written again with `pb::Msg`;
//! - a segment written by `wal::Writer` (records and chain start derived from the input) reads
//!   back record for record with no mismatch and no torn tail, also behind zero padding; cut short,
//!   it reads back as a prefix of its records with no mismatch, torn when cut inside a record
//!   (its length field included, unless only zero bytes of it are left).
#![no_main]

use common::disk::pb::{self, Field, Msg};
use common::disk::wal::{self, Read, Record};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// A reader handing out the data in pieces of the given sizes, in turn (short reads, like a pipe).
struct Pieces<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    turn: usize,
}

impl std::io::Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self.sizes.get(self.turn % self.sizes.len().max(1)).map_or(1, |s| usize::from(*s % 64) + 1);
        self.turn += 1;
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn same(a: &Read, b: &Read) {
    assert_eq!((a.crc, a.torn_at, a.crc_mismatch_at), (b.crc, b.torn_at, b.crc_mismatch_at));
}

/// Decodes a message and what its byte fields hold, a few levels down (entries hold conf changes,
/// snapshots hold conf states).
fn decode(b: &[u8], depth: u32) {
    let Some(fields) = pb::fields(b) else { return };
    let _ = (pb::uint_of(&fields, 1), pb::bytes_of(&fields, 3), pb::uints_of(&fields, 1));
    // Varints and byte strings written again read back the same.
    if fields.iter().all(|(_, f)| matches!(f, Field::Varint(_) | Field::Bytes(_))) {
        let mut m = Msg::default();
        for (num, f) in &fields {
            m = match f {
                Field::Varint(v) => m.uint(*num, *v),
                Field::Bytes(v) => m.bytes(*num, v),
                _ => unreachable!(),
            };
        }
        let again = m.into_bytes();
        assert_eq!(pb::fields(&again).as_deref(), Some(fields.as_slice()), "fields do not round-trip");
    }
    if depth > 0 {
        for (_, f) in &fields {
            if let Field::Bytes(inner) = f {
                decode(inner, depth - 1);
            }
        }
    }
}

/// Reads the input three ways: over the slice, over a reader handing out odd-sized pieces (both
/// must agree), and with a chain start taken from the input.
fn check_read(data: &[u8]) {
    let len = data.len() as u64;
    let read = wal::read_segment(data);
    let records = &read.records;
    // Every record took its 8-byte length field plus its bytes.
    let used: u64 = records.iter().map(|r| 8 + r.data.len() as u64).sum();
    assert!(used <= len, "{} records of {used} bytes from {len} bytes", records.len());
    if let Some(t) = read.torn_at {
        // A record (or a length field cut short) starts there.
        assert!(t < len, "torn at {t} of {len}");
    }
    if let Some(m) = read.crc_mismatch_at {
        assert!(m + 8 <= len, "crc mismatch at {m} of {len}");
        assert!(read.torn_at.is_none_or(|t| m < t));
    }
    let sizes = data.get(data.len().saturating_sub(16)..).unwrap_or(&[]);
    let mut again: Vec<Record> = Vec::new();
    let piecewise = wal::scan_segment(Pieces { data, sizes, turn: 0 }, 0, |r| again.push(r.clone()));
    same(&read, &piecewise);
    assert!(piecewise.records.is_empty(), "scan_segment keeps no records");
    assert_eq!(*records, again, "the same bytes in pieces read differently");
    for r in records {
        decode(&r.data, 3);
    }
    // Another chain start: other CRC verdicts (and so other torn-write verdicts), same bounds.
    let prev_crc = data.get(..4).map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
    let chained = wal::scan_segment(data, prev_crc, |_| {});
    assert!(chained.torn_at.is_none_or(|t| t < len));
    assert!(chained.crc_mismatch_at.is_none_or(|m| m + 8 <= len));
}

/// A segment written with the writer, from records derived from the input.
fn round_trip(u: &mut Unstructured) -> Result<()> {
    let prev: u32 = u.arbitrary()?;
    let mut w = wal::Writer::new(prev);
    let mut want = vec![(wal::CRC, prev, Vec::new())];
    let mut crc = prev;
    for _ in 0..u.int_in_range(0..=8)? {
        let mut typ: u64 = u.arbitrary()?;
        if typ == wal::CRC {
            // A CRC record restarts the chain: the writer only writes one, first.
            typ = wal::ENTRY;
        }
        let data: Vec<u8> = u.arbitrary()?;
        w.record(typ, &data);
        crc = crc32c::crc32c_append(crc, &data);
        want.push((typ, crc, data));
    }
    let buf = w.buf;
    let mut got: Vec<(u64, u32, Vec<u8>)> = Vec::new();
    let read = wal::scan_segment(buf.as_slice(), prev, |r| got.push((r.typ, r.crc, r.data.clone())));
    assert_eq!((read.torn_at, read.crc_mismatch_at), (None, None), "a written segment reads back damaged");
    assert_eq!(got, want);
    assert_eq!(read.crc, crc);
    // Behind the preallocated zeros, the same.
    let mut padded = buf.clone();
    padded.resize(buf.len() + usize::from(u.arbitrary::<u8>()?), 0);
    let r = wal::read_segment(&padded);
    assert_eq!((r.torn_at, r.crc_mismatch_at, r.records.len()), (None, None, want.len()));
    // Cut short: a prefix of the records, never a CRC mismatch.
    let cut = u.int_in_range(0..=buf.len())?;
    let r = wal::read_segment(&buf[..cut]);
    assert_eq!(r.crc_mismatch_at, None, "a cut segment reads as a CRC mismatch");
    assert!(r.records.len() <= want.len());
    for (a, b) in r.records.iter().zip(&want) {
        assert_eq!((a.typ, a.crc, &a.data), (b.0, b.1, &b.2));
    }
    // A cut inside a record, its 8-byte length field included, is a torn tail (as etcd's
    // decoder says: io.ErrUnexpectedEOF), unless all that is left of the length field is zeros
    // (read as the zero tail).
    let mut at = 0;
    let mut in_body = false;
    while at < buf.len() {
        let field = u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
        let frame = 8 + (field & 0x00ff_ffff_ffff_ffff) as usize + ((field >> 56) & 7) as usize;
        let zero_tail = cut < at + 8 && buf[at..cut.max(at)].iter().all(|&b| b == 0);
        if cut > at && cut < at + frame && !zero_tail {
            in_body = true;
        }
        at += frame;
    }
    if in_body {
        assert!(r.torn_at.is_some(), "a cut inside a record is not reported as torn");
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    check_read(data);
    let _ = round_trip(&mut Unstructured::new(data));
});
