//! Wall-clock time as the core counts it (milliseconds since the Unix epoch), and how the tool
//! shows it: ages for people, RFC 3339 for machines.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `Last-Modified` (`Sun, 06 Nov 1994 08:49:37 GMT`) in milliseconds since the epoch.
pub fn http_date_ms(value: &str) -> Option<u64> {
    let t = httpdate::parse_http_date(value.trim()).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(d.as_millis()).ok()
}

/// `2h 05m`, `3d 04h`, `42 s`: an age for a person.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s} s"),
        120..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `2026-03-01T08:25:36.123Z`.
pub fn rfc3339(ms: u64) -> String {
    let days = i64::try_from(ms / 86_400_000).unwrap_or(0);
    let rest = ms % 86_400_000;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

/// `2026-03-01T08:25:36Z`: whole seconds (history times), in a form `--before` takes back.
pub fn utc_seconds(ms: u64) -> String {
    let full = rfc3339(ms - ms % 1000);
    full.replace(".000Z", "Z")
}

/// A point in time given on the command line, in ms since the epoch: RFC 3339
/// (`2026-12-05T14:00:00Z`, `2026-12-05T15:00:00+01:00`, fractions allowed), or UTC as
/// `2026-12-05 14:00` (seconds optional), or the history's own `20261205T140000Z`.
pub fn parse_time(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not a time: write RFC 3339 (2026-12-05T14:00:00Z) or UTC as \
             '2026-12-05 14:00'"
        )
    };
    let t = text.trim();
    let compact =
        t.len() == 16 && t.is_ascii() && t.as_bytes().get(8) == Some(&b'T') && t.ends_with('Z');
    let (date, rest) = if compact {
        // 20261205T140000Z
        let d = t.get(..8).ok_or_else(bad)?;
        let h = t.get(9..15).ok_or_else(bad)?;
        (
            format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..]),
            format!("{}:{}:{}Z", &h[..2], &h[2..4], &h[4..]),
        )
    } else {
        let (d, r) = t.split_at_checked(10).ok_or_else(bad)?;
        let r = match r.as_bytes().first() {
            Some(b'T' | b't') => r[1..].to_string(),
            Some(b' ') => {
                let r = r.trim_start();
                // `2026-12-05 14:00` is UTC; an RFC 3339 time after a space keeps its offset.
                if r.ends_with(['Z', 'z']) || r.contains(['+', '-']) {
                    r.to_string()
                } else {
                    format!("{r}Z")
                }
            }
            _ => return Err(bad()),
        };
        (d.to_string(), r)
    };
    let num = |s: &str| -> Result<i64, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<i64>().map_err(|_| bad())
    };
    let mut ymd = date.split('-');
    let (y, m, d) = match (ymd.next(), ymd.next(), ymd.next(), ymd.next()) {
        (Some(y), Some(m), Some(d), None) if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
            (num(y)?, num(m)?, num(d)?)
        }
        _ => return Err(bad()),
    };
    // The offset: `Z`, or `+hh:mm` / `-hh:mm`.
    let (clock, offset_min) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c.to_string(), 0)
    } else {
        let at = rest.rfind(['+', '-']).ok_or_else(bad)?;
        let (c, off) = rest.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':').ok_or_else(bad)?;
        if oh.len() != 2 || om.len() != 2 {
            return Err(bad());
        }
        (c.to_string(), sign * (num(oh)? * 60 + num(om)?))
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((hms, f)) => (hms.to_string(), f.to_string()),
        None => (clock, String::new()),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let (hh, mm, ss) = match parts.as_slice() {
        [h, m] if h.len() == 2 && m.len() == 2 && frac.is_empty() => (num(h)?, num(m)?, 0),
        [h, m, s] if h.len() == 2 && m.len() == 2 && s.len() == 2 => (num(h)?, num(m)?, num(s)?),
        _ => return Err(bad()),
    };
    let millis = if frac.is_empty() {
        0
    } else {
        num(&frac)?;
        format!("{:0<3}", frac.get(..3).unwrap_or(&frac))
            .parse::<i64>()
            .map_err(|_| bad())?
    };
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if !(1..=days_in_month).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return Err(bad());
    }
    let secs = days_from_civil(y, m as u32, d as u32) * 86_400 + hh * 3600 + mm * 60 + ss
        - offset_min * 60;
    u64::try_from(secs * 1000 + millis).map_err(|_| bad())
}

/// (year, month, day) to days since 1970-01-01, proleptic Gregorian (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
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

    #[test]
    fn formats_and_parses_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_733_012_345_678), "2024-12-01T00:19:05.678Z");
        assert_eq!(
            http_date_ms("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000)
        );
        assert_eq!(http_date_ms("yesterday"), None);
        assert_eq!(age(42_000), "42 s");
        assert_eq!(age(600_000), "10 min");
        assert_eq!(age(7_500_000), "2h 05m");
        assert_eq!(age(2 * 86_400_000 + 3_600_000), "2d 01h");
    }

    #[test]
    fn parses_command_line_times() {
        let t = 1_796_479_200_000; // 2026-12-05T14:00:00Z
        assert_eq!(rfc3339(t), "2026-12-05T14:00:00.000Z");
        for ok in [
            "2026-12-05T14:00:00Z",
            "2026-12-05t14:00:00z",
            "2026-12-05 14:00",
            "2026-12-05 14:00:00",
            "2026-12-05T15:00:00+01:00",
            "2026-12-05T09:30:00-04:30",
            "2026-12-05 14:00:00Z",
            "20261205T140000Z",
        ] {
            assert_eq!(parse_time(ok), Ok(t), "{ok}");
        }
        assert_eq!(parse_time("2026-12-05T14:00:00.25Z"), Ok(t + 250));
        assert_eq!(parse_time("2000-02-29 00:00"), Ok(951_782_400_000));
        assert_eq!(utc_seconds(t + 999), "2026-12-05T14:00:00Z");
        assert_eq!(parse_time(&utc_seconds(t)), Ok(t));
        for bad in [
            "",
            "yesterday",
            "2026-12-05",
            "2026-13-05 14:00",
            "2026-02-29 14:00",
            "2026-12-05 24:00",
            "2026-12-05 14:00+1",
            "2026-12-05T14:00Z0",
            "2026-12-5 14:00",
            "1969-12-31 23:00",
        ] {
            let e = parse_time(bad).expect_err(bad);
            assert!(e.contains("is not a time"), "{e}");
        }
        for ms in [0, 951_782_400_123, t, 4_102_444_800_000] {
            assert_eq!(parse_time(&rfc3339(ms)), Ok(ms));
        }
    }
}
