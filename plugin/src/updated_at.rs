//! The newest `updated_at` of a declarative configuration: Kong's own logical time of a config
//! (the entities' last change, stamped by the database or the control plane), one of the facts
//! that decide which of two configs is newer without node clocks (docs/election.md, "Which config
//! is newer").
//!
//! The export finds it in the redaction's pass over the document (`redact::Rewriter`, which reads
//! every key anyway: one pass, not two; for the filter's own large `config`, the configuration's
//! validation scan noted where the members are: `redact::KeyIndex`). Here: reading the number, and a byte scan for the member
//! `"updated_at": <number>` at any depth for small texts (a filter chain the rewriter parsed, tests,
//! the benchmark's native step). A member is a key: its opening quote follows `{` or `,` (after
//! whitespace), so the same letters inside a string value are never taken for one. Kong writes integer seconds (`typedefs.auto_timestamp_s`) and, for
//! targets, seconds with milliseconds; the result is in milliseconds.

/// The member's name.
pub const KEY: &str = "updated_at";
const NEEDLE: &[u8] = b"\"updated_at\"";
/// The longest `: <number>` read after the key (whitespace and digits).
const TAIL_MAX: usize = 64;
/// Later than this (ms since the epoch, year 9999) is no timestamp.
const MAX_MS: u64 = 253_402_300_799_000;

/// The newest `updated_at` member of a whole text (ms since the epoch), if any.
pub fn newest_updated_at_ms(body: &[u8]) -> Option<u64> {
    let mut newest = None;
    let mut pos = 0;
    while let Some(at) = body
        .get(pos..)
        .and_then(|rest| rest.iter().position(|&c| c == b'"'))
    {
        let quote = pos + at;
        pos = quote + 1;
        if body.get(quote..quote + NEEDLE.len()) != Some(NEEDLE) || !opens_member(body, quote) {
            continue;
        }
        pos = quote + NEEDLE.len();
        newest = newest.max(number_after_colon(body, pos));
    }
    newest
}

/// The quote at `at` opens an object member: `{` or `,` before it, whitespace aside.
fn opens_member(body: &[u8], at: usize) -> bool {
    let before = body.get(..at).unwrap_or_default();
    matches!(
        before.iter().rev().find(|c| !c.is_ascii_whitespace()),
        Some(b'{') | Some(b',')
    )
}

/// `: <number>` from `at` (whitespace allowed), as milliseconds; `None` for anything else
/// (`null`, a string, a negative or absurd number).
fn number_after_colon(body: &[u8], at: usize) -> Option<u64> {
    let tail = body.get(at..body.len().min(at.saturating_add(TAIL_MAX)))?;
    let mut i = tail.iter().position(|c| !c.is_ascii_whitespace())?;
    if tail.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    i += tail
        .get(i..)?
        .iter()
        .position(|c| !c.is_ascii_whitespace())?;
    number_ms(tail, i)
}

/// The number that starts at `t[at]` as milliseconds; `None` for anything else (`null`, a
/// string, a negative or absurd number).
pub fn number_ms(t: &[u8], at: usize) -> Option<u64> {
    let digits = t.get(at..t.len().min(at.saturating_add(TAIL_MAX)))?;
    let len = digits
        .iter()
        .position(|c| !(c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-')))
        .unwrap_or(digits.len());
    let text = std::str::from_utf8(digits.get(..len)?).ok()?;
    let ms = crate::decimal::parse(text)?.milli()?;
    (ms <= MAX_MS).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_member_anywhere_in_seconds_or_with_milliseconds() {
        let doc = br#"{"_format_version":"3.0","services":[{"id":"s","updated_at":1700000000,"routes":[{"updated_at" : 1700000100}]}],
            "targets":[{"updated_at":1700000050.123}],"consumers":[{"updated_at":null},{"updated_at":"1800000000"}]}"#;
        assert_eq!(newest_updated_at_ms(doc), Some(1_700_000_100_000));
        let targets = br#"{"targets":[{"updated_at":1700000200.125}]}"#;
        assert_eq!(newest_updated_at_ms(targets), Some(1_700_000_200_125));
    }

    #[test]
    fn the_letters_in_a_string_value_or_an_escaped_key_are_no_member() {
        for doc in [
            &br#"{"tags":["\"updated_at\": 1900000000"]}"#[..],
            br#"{"name":"updated_at","x":1}"#,
            br#"{"a\"updated_at": 1900000000}"#,
            br#"{"services":[]}"#,
            br#"{"updated_at":-5}"#,
            br#"{"updated_at":1e300}"#,
        ] {
            assert_eq!(
                newest_updated_at_ms(doc),
                None,
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
    }

    #[test]
    fn a_number_is_read_where_it_starts() {
        let t = b"[1700000000.5, null, -1, 99999999999999999]";
        assert_eq!(number_ms(t, 1), Some(1_700_000_000_500));
        assert_eq!(number_ms(t, 15), None);
        assert_eq!(number_ms(t, 21), None);
        assert_eq!(number_ms(t, 25), None, "later than year 9999");
        assert_eq!(number_ms(t, 99), None);
    }
}
