//! JSON without building trees: the filter's documents reach tens of MB and are never decoded
//! whole.
//!
//! * `scan`: a resumable validator, a slice per tick, that records the top-level members (and
//!   one chosen member's members) on the way: large filter configurations and downloaded exports.
//! * `members`: walks text that is already valid (small configurations, Admin API answers) and
//!   splits an object into members by byte range, with serde_json for validation and unescaping.

pub mod members;
pub mod scan;
