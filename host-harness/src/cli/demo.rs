//! `host-harness demo`: the README's story ([`story`]). The real config-bridge `.wasm` runs in
//! simulated Kong nodes (ngx_wasm_module profile, 2 workers each): a database-backed node exports
//! its own configuration through the Kong Admin source (election on, debounced changes, a 503
//! retried), dies, and a new fallback node imports the backup through its Admin API. `demo fallback`: only
//! the import part ([`fallback`]).

/// The import part of the story alone.
pub mod fallback;
/// The whole story.
pub mod story;

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};

use crate::{HostProfile, PluginModule};

/// Which demo to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Only the import: a CP exports once, goes down; an empty fallback node imports the export.
    Fallback,
}

/// `host-harness demo [fallback]`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Without one: the whole story (export, election, debounce, retry, CP down, import).
    /// `fallback`: the import part alone.
    #[arg(value_enum)]
    pub scenario: Option<Scenario>,
    /// Use this .wasm instead of building the filter.
    #[arg(long)]
    pub wasm: Option<PathBuf>,
    /// Host profile: ngx_wasm_module (Kong), kong_legacy, envoy, hostile.
    #[arg(long, default_value = "ngx_wasm_module")]
    pub profile: String,
}

/// Runs a demo and prints its timeline; the exit code is 0 when the story went as told.
pub fn run(args: DemoArgs) -> Result<i32> {
    let Some(profile) = HostProfile::by_name(&args.profile) else {
        bail!("unknown profile {:?}", args.profile);
    };
    let wasm = match args.wasm {
        Some(p) => p,
        None => {
            println!("building the filter (cargo build --target wasm32-wasip1 --profile wasm-release)...");
            crate::wasm_build::config_bridge()?
        }
    };
    let module = PluginModule::load(&wasm)?;
    match args.scenario {
        Some(Scenario::Fallback) => fallback::run(&wasm, &module, profile),
        None => story::run(&wasm, &module, profile),
    }
}
