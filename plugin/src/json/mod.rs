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

pub use value::{parse, to_text, to_vec, Map, Number, ToValue, Value};
