//! RFC 3339 / ISO 8601 UTC timestamps as stores write them (S3 `LastModified`
//! `2026-12-01T08:25:36.000Z`, GCS `updated` `2026-12-01T08:25:36.123456Z`) to milliseconds since
//! the epoch, without a date-time crate (one function is all the module needs).

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)` → ms since the epoch; `None` for anything else.
pub fn rfc3339_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u64> {
        let part = s.get(from..from + len)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut millis = 0u64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let ms_digits = frac.get(..digits.min(3))?;
        millis = ms_digits.parse::<u64>().ok()? * 10u64.pow(3 - ms_digits.len() as u32);
        rest = frac.get(digits..)?;
    }
    if !matches!(rest, "Z" | "z" | "+00:00" | "-00:00") {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Measured skews below this are the `Date` header's one-second resolution, not skew.
pub const SKEW_NOISE_MS: i64 = 1_500;

/// The answering server's clock minus this node's (ms), from its `Date` header; `Some(0)` below
/// the header's resolution, `None` without a readable `Date`.
pub fn clock_skew_ms(date: Option<&str>, now_ms: u64) -> Option<i64> {
    let date = http_date_ms(date?)?;
    let measured = i64::try_from(date)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(now_ms).unwrap_or(i64::MAX));
    Some(if measured.abs() < SKEW_NOISE_MS {
        0
    } else {
        measured
    })
}

/// A time of this node's clock on a clock `skew` ms ahead of it.
pub fn shift(local: u64, skew: i64) -> u64 {
    if skew >= 0 {
        local.saturating_add(skew.unsigned_abs())
    } else {
        local.saturating_sub(skew.unsigned_abs())
    }
}

/// The reverse of `shift`: a time of the other clock on this node's.
pub fn unshift(other: u64, skew: i64) -> u64 {
    shift(other, skew.saturating_neg())
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, the `Date` header every store sends) → ms
/// since the epoch; the obsolete RFC 850 and asctime forms are not sent by stores.
pub fn http_date_ms(s: &str) -> Option<u64> {
    let mut parts = s.trim().split(' ');
    let _weekday = parts.next()?.strip_suffix(',')?;
    let day: u64 = parts.next().filter(|d| d.len() == 2)?.parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as u64 + 1;
    let year: u64 = parts.next().filter(|y| y.len() == 4)?.parse().ok()?;
    let time = parts.next()?;
    if parts.next()? != "GMT" || parts.next().is_some() {
        return None;
    }
    rfc3339_ms(&format!("{year:04}-{month:02}-{day:02}T{time}Z"))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm); years
/// before 1970 are not timestamps a store writes.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

/// `YYYYMMDDTHHMMSSZ` (ISO 8601 basic format, UTC, whole seconds) of a time in ms since the
/// epoch: SigV4's `x-amz-date` and the history keys' timestamps (docs/history.md).
pub fn basic_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The reverse of `basic_utc`, strictly: exactly `YYYYMMDDTHHMMSSZ` naming a real instant (no
/// leap second, no 31 April), else `None`.
pub fn basic_utc_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<u64> {
        let part = s.get(from..from + len)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0, 4)?, num(4, 2)?, num(6, 2)?);
    let (hour, minute, second) = (num(9, 2)?, num(11, 2)?, num(13, 2)?);
    if year < 1970 || !(1..=12).contains(&month) || day == 0 || hour > 23 || minute > 59 {
        return None;
    }
    if second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    let ms = ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000;
    // 31 April and 29 February of a common year roll over: the round trip tells.
    (basic_utc(ms) == s).then_some(ms)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_date_header() {
        assert_eq!(
            http_date_ms("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000)
        );
        assert_eq!(
            http_date_ms("Tue, 01 Dec 2026 08:25:36 GMT"),
            Some(1_796_113_536_000)
        );
        for bad in [
            "",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
        ] {
            assert_eq!(http_date_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn basic_format_round_trips_and_refuses_non_dates() {
        assert_eq!(basic_utc(0), "19700101T000000Z");
        assert_eq!(basic_utc(1_796_113_536_999), "20261201T082536Z");
        for ms in [0, 951_868_799_000, 951_868_800_000, 1_796_113_536_000] {
            assert_eq!(basic_utc_ms(&basic_utc(ms)), Some(ms));
        }
        for bad in [
            "",
            "20261201T082536",
            "20261201 082536Z",
            "20261301T000000Z",
            "20260431T000000Z",
            "20250229T000000Z",
            "20261201T240000Z",
            "20261201T235960Z",
            "19691231T235959Z",
            "2026120lT000000Z",
            "+2026121T000000Z",
            "20261201T082536z",
        ] {
            assert_eq!(basic_utc_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_what_s3_and_gcs_write() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_ms("2026-12-01T08:25:36.000Z"),
            Some(1_796_113_536_000)
        );
        assert_eq!(
            rfc3339_ms("2026-12-01T08:25:36.123456Z"),
            Some(1_796_113_536_123)
        );
        assert_eq!(
            rfc3339_ms("2024-02-29T23:59:59.5Z"),
            Some(1_709_251_199_500)
        );
        assert_eq!(
            rfc3339_ms("2000-03-01T00:00:00+00:00"),
            Some(951_868_800_000)
        );
        for bad in [
            "",
            "2026-12-01",
            "2026-13-01T00:00:00Z",
            "2026-12-01T00:00:00",
            "2026-12-01T00:00:00.Z",
            "x026-12-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2026-12-01T00:00:00+02:00",
        ] {
            assert_eq!(rfc3339_ms(bad), None, "{bad}");
        }
    }
}
