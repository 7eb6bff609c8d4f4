//! JSON: the filter's large documents (tens of MB) are never decoded whole; small ones are read
//! into one tree of the crate's own.
//!
//! * `scan`: a resumable validator, a slice per tick, that records the top-level members (and
//!   one chosen member's members) on the way: large filter configurations and downloaded exports.
//! * `members`: walks text that is already valid (small configurations, Admin API answers) and
//!   splits an object into members by byte range, with `scan` for validation.
//! * `value`: the one tree ([`Value`]) for small documents read or written whole.

pub mod members;
// `scan` is its own crate (`plugin/json-scan`) so the shipping profile builds it for speed
// (Cargo.toml).
pub use json_scan as scan;
pub mod value;

/// `s` as a JSON string literal (quotes, backslashes and control characters escaped), for
/// messages: smaller in the module than `{s:?}`, `str`'s `Debug` (BENCHMARKS.md, "Issue 25,
/// lean5").
pub(crate) fn quoted(s: &str) -> String {
    let mut out = Vec::new();
    value::write_string(s, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// The escape whose letter is at `t[at]` (after the backslash): the character and the escape's
/// length after the backslash. `\u` surrogates must come in pairs (as serde_json requires).
/// The one decoder of escapes: the tree's strings and a Kong 3.4 string configuration's unescape.
pub(crate) fn escape(t: &[u8], at: usize) -> Option<(char, usize)> {
    let simple = match *t.get(at)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let hi = hex4(t, at + 1)?;
            if !(0xD800..0xE000).contains(&hi) {
                return Some((char::from_u32(hi)?, 5));
            }
            // A high surrogate, then `\u` and a low one.
            if hi >= 0xDC00 || t.get(at + 5..at + 7)? != b"\\u" {
                return None;
            }
            let lo = hex4(t, at + 7)?;
            if !(0xDC00..0xE000).contains(&lo) {
                return None;
            }
            let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
            return Some((char::from_u32(c)?, 11));
        }
        _ => return None,
    };
    Some((simple, 1))
}

fn hex4(t: &[u8], at: usize) -> Option<u32> {
    let digits = t.get(at..at + 4)?;
    digits
        .iter()
        .try_fold(0u32, |n, &d| Some(n * 16 + char::from(d).to_digit(16)?))
}

pub use value::{parse, to_text, to_vec, Map, Number, ToValue, Value};
