//! JSON without building trees: the filter's documents reach tens of MB and are never decoded
//! whole.
//!
//! * `scan`: a resumable validator, a slice per tick, that records the top-level members (and
//!   one chosen member's members) on the way: large filter configurations and downloaded exports.
//! * `members`: walks text that is already valid (small configurations, Admin API answers) and
//!   splits an object into members by byte range, with serde_json for validation and unescaping.

pub mod members;
// Its own crate (`plugin/json-scan`) so the shipping profile builds it for speed (Cargo.toml).
pub use json_scan as scan;

/// A `Value` as compact JSON text. Used instead of `Value`'s `Display` (`to_string()`), which
/// builds serde_json's serializer twice more (compact and pretty, through a `fmt::Write`
/// adapter): ~5 KB of the module (BENCHMARKS.md, "Issue 25"). Serialising a `Value` cannot fail
/// (its keys are strings); an empty string would be the answer if it did.
pub(crate) fn to_text(v: &serde_json::Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
