//! A value that must never be logged (keys, tokens, signatures): a leaf module every layer may
//! use, so the settings, the stores and the sources share one type without depending on each
//! other (docs/security.md).

use std::fmt;

/// A value that must never be logged; `Debug` prints `***`, and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
