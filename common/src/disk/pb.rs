//! The little protobuf wire format the WAL, `.snap` files and etcd's values need: varints,
//! tags, length-delimited fields. Written in field-number order like gogoproto does.

/// A message being built.
#[derive(Default)]
pub struct Msg(pub Vec<u8>);

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Msg {
    /// A varint field, written even when 0 (gogoproto's non-nullable scalars).
    pub fn uint(mut self, field: u32, v: u64) -> Msg {
        varint(&mut self.0, u64::from(field) << 3);
        varint(&mut self.0, v);
        self
    }

    pub fn bytes(mut self, field: u32, v: &[u8]) -> Msg {
        varint(&mut self.0, (u64::from(field) << 3) | 2);
        varint(&mut self.0, v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// One decoded field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed64(u64),
    Fixed32(u32),
}

fn read_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// The fields of a message in order, or None when it does not parse.
pub fn fields(b: &[u8]) -> Option<Vec<(u32, Field<'_>)>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let key = read_varint(b, &mut at)?;
        // Field numbers stop at 2^29 - 1 (and 0 is none): anything else is not protobuf.
        let num = u32::try_from(key >> 3).ok().filter(|n| (1..1 << 29).contains(n))?;
        let wire = key & 7;
        let f = match wire {
            0 => Field::Varint(read_varint(b, &mut at)?),
            1 => {
                let v = u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?);
                at += 8;
                Field::Fixed64(v)
            }
            2 => {
                let len = read_varint(b, &mut at)? as usize;
                let v = b.get(at..at.checked_add(len)?)?;
                at += len;
                Field::Bytes(v)
            }
            5 => {
                let v = u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?);
                at += 4;
                Field::Fixed32(v)
            }
            _ => return None,
        };
        out.push((num, f));
    }
    Some(out)
}

/// The last varint value of a field (proto's "last one wins"), 0 when absent.
pub fn uint_of(fields: &[(u32, Field<'_>)], num: u32) -> u64 {
    fields
        .iter()
        .rev()
        .find_map(|(n, f)| if let (true, Field::Varint(v)) = (*n == num, f) { Some(*v) } else { None })
        .unwrap_or(0)
}

pub fn bytes_of<'a>(fields: &[(u32, Field<'a>)], num: u32) -> Option<&'a [u8]> {
    fields.iter().rev().find_map(|(n, f)| if let (true, Field::Bytes(v)) = (*n == num, f) { Some(*v) } else { None })
}

/// Every varint value of a repeated (unpacked) field.
pub fn uints_of(fields: &[(u32, Field<'_>)], num: u32) -> Vec<u64> {
    fields
        .iter()
        .filter_map(|(n, f)| if let (true, Field::Varint(v)) = (*n == num, f) { Some(*v) } else { None })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Field numbers outside 1..2^29 are refused, not truncated (found by fuzzing: 2^32 + 1 read as 1).
    #[test]
    fn field_numbers_out_of_range_are_refused() {
        // The varint of a key with wire type 0, taken from an encoded uint field.
        let key = |num: u64| Msg::default().uint(1, num << 3).into_bytes()[1..].to_vec();
        for num in [0u64, 1 << 29, (1 << 32) + 1] {
            let mut b = key(num);
            b.push(7);
            assert_eq!(fields(&b), None, "field {num}");
        }
        let mut ok = key((1 << 29) - 1);
        ok.push(7);
        assert_eq!(fields(&ok).map(|f| f[0].0), Some((1 << 29) - 1));
    }

    #[test]
    fn round_trip() {
        let m = Msg::default().uint(1, 4).uint(2, 0).bytes(3, b"ab").uint(4, 300).into_bytes();
        assert_eq!(m, [0x08, 4, 0x10, 0, 0x1a, 2, b'a', b'b', 0x20, 0xac, 0x02]);
        let f = fields(&m).unwrap();
        assert_eq!(uint_of(&f, 1), 4);
        assert_eq!(uint_of(&f, 4), 300);
        assert_eq!(bytes_of(&f, 3), Some(&b"ab"[..]));
        assert_eq!(fields(&[0x1a, 5, 1]), None, "length past the end");
    }
}
