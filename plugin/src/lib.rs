//! config-bridge: placeholder, replaced by the real filter.
