//! config-bridge: a proxy-wasm filter that exports the gateway's declarative configuration to
//! object storage, once per node (docs/architecture.md).
//!
//! Everything except `shell` is plain Rust, unit-tested natively: the sans-IO core (`engine`, its
//! sub-machines and the modules they use) takes events and time and returns requests and effects;
//! `shell` is the proxy-wasm glue (wasm32 only).

// No panics outside tests: the lints are in plugin/Cargo.toml's `[lints]`.

pub mod backoff;
pub mod config_report;
pub mod debounce;
pub mod decimal;
pub mod digest;
pub mod document;
pub mod document_check;
pub mod engine;
pub mod flat_form;
pub mod header_map;
pub mod history;
pub mod host_memory;
pub mod host_tick;
pub mod http;
pub mod http_url;
pub mod json;
pub mod node_lock;
pub mod redact;
pub mod rs256;
pub mod seal;
pub mod secret;
pub mod settings;
pub mod sort;

pub mod store;
pub mod text;
pub mod updated_at;
pub mod vec_map;

#[cfg(target_arch = "wasm32")]
mod shell;
