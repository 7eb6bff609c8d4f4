//! config-bridge: a proxy-wasm filter that exports the gateway's declarative configuration to
//! object storage (SPEC §2–§3), once per node.
//!
//! Everything except `shell` is plain Rust, unit-tested natively; `shell` is the proxy-wasm glue.

pub mod backoff;
pub mod config;
pub mod config_report;
pub mod debounce;
pub mod engine;
pub mod header_map;
pub mod http_url;
pub mod node_lock;
pub mod object_store;
pub mod s3;
pub mod source;
pub mod storage;

#[cfg(target_arch = "wasm32")]
mod shell;
