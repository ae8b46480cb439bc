//! Times as the APIs write them (RFC 3339), read and written by hand: the only forms skyform needs
//! are `2026-11-25T01:24:21Z` and `…[.fraction](Z|±hh:mm)`, and the date algorithms (Howard
//! Hinnant's `days_from_civil`/`civil_from_days`) are a dozen lines, less than a date crate's
//! build.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch now.
pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `t` as RFC 3339 in UTC with second precision, e.g. `2026-11-25T01:24:21Z`.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Seconds since the epoch of an RFC 3339 time with any offset (`2026-12-01T21:40:00.123+02:00`,
/// `…Z`); fractional seconds are ignored. `None` for anything else, and for fields out of their
/// RFC 3339 ranges (a year of more than four digits: the arithmetic below cannot overflow).
pub fn rfc3339_secs(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    if !(0..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let mut t = time.get(..8)?.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    if !(0..=23).contains(&hh) || !(0..=59).contains(&mm) || !(0..=60).contains(&ss) {
        return None;
    }
    let offset = match time.rfind(['+', '-']) {
        Some(i) if time.len() - i == 6 => {
            let (h, m) = (time.get(i + 1..i + 3)?.parse::<i64>().ok()?, time.get(i + 4..)?.parse::<i64>().ok()?);
            if !(0..=23).contains(&h) || !(0..=59).contains(&m) {
                return None;
            }
            let sign = if time.as_bytes()[i] == b'-' { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => 0,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss - offset)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn writes_known_instants() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // 2000-02-29 (leap day in a century leap year) 12:34:56.
        assert_eq!(rfc3339_utc(UNIX_EPOCH + Duration::from_secs(951_827_696)), "2000-02-29T12:34:56Z");
        assert_eq!(rfc3339_utc(UNIX_EPOCH + Duration::from_secs(1_795_566_261)), "2026-11-25T00:24:21Z");
    }

    #[test]
    fn reads_utc_and_offsets() {
        assert_eq!(rfc3339_secs("1970-01-02T00:00:01Z"), Some(86_401));
        assert_eq!(rfc3339_secs("2024-03-01T00:00:00.123Z"), Some(1_709_251_200));
        assert_eq!(rfc3339_secs("1970-01-01T01:00:00Z"), Some(3600));
        assert_eq!(rfc3339_secs("1970-01-01T03:00:00.123456789+02:00"), Some(3600));
        assert_eq!(rfc3339_secs("1970-01-01T00:00:00-01:00"), Some(3600));
        assert_eq!(rfc3339_secs("garbage"), None);
        assert_eq!(rfc3339_secs("2024-13-01T00:00:00Z"), None);
        // Found by tests/fuzz_answers.rs (`times`): a year this long overflowed the day count.
        assert_eq!(rfc3339_secs("99999999999999999-01-01T00:00:00Z"), None);
        assert_eq!(rfc3339_secs("2026-12-01T25:00:00Z"), None);
        assert_eq!(rfc3339_secs("2026-12-01T10:00:00+24:00"), None);
        assert_eq!(rfc3339_secs("9999-12-31T23:59:60-23:59"), Some(253_402_387_140));
        let now = SystemTime::now();
        assert_eq!(rfc3339_secs(&rfc3339_utc(now)), Some(now_secs()));
    }
}
