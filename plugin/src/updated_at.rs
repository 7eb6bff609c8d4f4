//! The newest `updated_at` of a declarative configuration: Kong's own logical time of a config
//! (the entities' last change, stamped by the database or the control plane), one of the facts
//! that decide which of two configs is newer without node clocks (docs/election.md, "Which config
//! is newer").
//!
//! A byte scan for the member `"updated_at": <number>` at any depth, a slice at a time (no tree is
//! built; a 50 MB document is scanned across ticks like its hash). A member is a key: its opening
//! quote follows `{` or `,` (after whitespace), so the same letters inside a string value are
//! never taken for one. Kong writes integer seconds (`typedefs.auto_timestamp_s`) and, for
//! targets, seconds with milliseconds; the result is in milliseconds.

const NEEDLE: &[u8] = b"\"updated_at\"";
/// The longest `: <number>` read after the key (whitespace and digits), past a slice's end.
const TAIL_MAX: usize = 64;
/// Later than this (ms since the epoch, year 9999) is no timestamp.
const MAX_MS: u64 = 253_402_300_799_000;

/// The scan of one document.
#[derive(Clone, Debug, Default)]
pub struct UpdatedAt {
    pos: usize,
    newest_ms: Option<u64>,
}

impl UpdatedAt {
    pub fn new() -> UpdatedAt {
        UpdatedAt::default()
    }

    /// Scans about `budget` more bytes of `body` (the same body every call); `true` once the
    /// whole body is scanned.
    pub fn step(&mut self, body: &[u8], budget: usize) -> bool {
        let end = self.pos.saturating_add(budget.max(1)).min(body.len());
        while self.pos < end {
            let Some(rest) = body.get(self.pos..end) else {
                break;
            };
            let Some(at) = find(rest, b'"') else {
                self.pos = end;
                break;
            };
            let quote = self.pos + at;
            self.pos = quote + 1;
            if body.get(quote..quote + NEEDLE.len()) != Some(NEEDLE) || !opens_member(body, quote) {
                continue;
            }
            let after = quote + NEEDLE.len();
            if let Some(ms) = number_after_colon(body, after) {
                self.newest_ms = Some(self.newest_ms.map_or(ms, |n| n.max(ms)));
            }
            self.pos = after;
        }
        self.pos >= body.len()
    }

    /// The newest `updated_at` seen (ms since the epoch), if any.
    pub fn newest_ms(&self) -> Option<u64> {
        self.newest_ms
    }
}

/// The newest `updated_at` of a whole document at once (small documents).
pub fn newest_updated_at_ms(body: &[u8]) -> Option<u64> {
    let mut scan = UpdatedAt::new();
    scan.step(body, body.len());
    scan.newest_ms()
}

fn find(hay: &[u8], b: u8) -> Option<usize> {
    hay.iter().position(|&c| c == b)
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
    let digits = tail.get(i..)?;
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
    fn every_slice_size_gives_the_whole_scan() {
        let mut doc = String::from("{\"services\":[");
        for i in 0..300 {
            doc.push_str(&format!(
                "{{\"name\":\"updated_at-{i}\",\"updated_at\":  {},\"tags\":[\"updated_at\"]}},",
                1_700_000_000 + (i * 7919) % 1000
            ));
        }
        doc.push_str("{}]}");
        let whole = newest_updated_at_ms(doc.as_bytes());
        let newest = (0..300).map(|i| 1_700_000_000 + (i * 7919) % 1000).max();
        assert_eq!(whole, newest.map(|s| s * 1000));
        for budget in [1, 2, 7, 13, 64, 1000] {
            let mut scan = UpdatedAt::new();
            let mut steps = 0;
            while !scan.step(doc.as_bytes(), budget) {
                steps += 1;
                assert!(steps < doc.len() + 1, "stuck");
            }
            assert_eq!(scan.newest_ms(), whole, "budget {budget}");
        }
    }
}
