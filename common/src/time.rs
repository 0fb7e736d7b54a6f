//! RFC 3339 UTC formatting without a calendar crate: the documents only need UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn split(secs: i64) -> (i64, u32, u32, i64, i64, i64) {
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    (y, mo, d, s / 3600, s % 3600 / 60, s % 60)
}

/// `2026-11-23T20:33:32Z` for seconds since the epoch (negative allowed).
pub fn rfc3339_secs(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = split(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `2026-11-23T20:33:32.123456789Z`, as CRI log lines and crictl print times.
pub fn rfc3339_nanos(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let (y, mo, da, h, mi, s) = split(d.as_secs() as i64);
    format!("{y:04}-{mo:02}-{da:02}T{h:02}:{mi:02}:{s:02}.{:09}Z", d.subsec_nanos())
}

/// `20261123T203332Z`: for directory and file names (sorts by time, no colons).
pub fn compact_utc(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let (y, mo, da, h, mi, s) = split(d.as_secs() as i64);
    format!("{y:04}{mo:02}{da:02}T{h:02}{mi:02}{s:02}Z")
}

/// Days since 1970-01-01 of a civil date (inverse of `civil_from_days`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch of a UTC RFC 3339 time as the documents carry (`...Z`, fraction ignored).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || !s.ends_with('Z')
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(i64::from(y), mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + se))
}

/// Seconds since the epoch of a `compact_utc` time (`20261123T203332Z`).
pub fn parse_compact_utc(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16
        || b[8] != b'T'
        || b[15] != b'Z'
        || !s[..8].bytes().chain(s[9..15].bytes()).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    parse_rfc3339(&format!("{}-{}-{}T{}:{}:{}Z", &s[0..4], &s[4..6], &s[6..8], &s[9..11], &s[11..13], &s[13..15]))
}

pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_secs(1_730_505_600), "2024-11-02T00:00:00Z");
        assert_eq!(rfc3339_secs(-86_400), "1969-12-31T00:00:00Z");
        let t = UNIX_EPOCH + Duration::new(1_795_466_012, 5);
        assert_eq!(rfc3339_nanos(t), "2026-11-23T20:33:32.000000005Z");
        assert_eq!(compact_utc(t), "20261123T203332Z");
        for secs in [0, 951_782_400, 1_795_466_012, -86_400] {
            assert_eq!(parse_rfc3339(&rfc3339_secs(secs)), Some(secs));
        }
        assert_eq!(parse_rfc3339("2026-11-23T20:33:32.000000005Z"), Some(1_795_466_012));
        assert_eq!(parse_rfc3339("2026-13-23T20:33:32Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_compact_utc("20261123T203332Z"), Some(1_795_466_012));
        assert_eq!(parse_compact_utc("20261123T2033Z"), None);
    }
}
