//! Helpers shared by the integration tests.

use std::sync::OnceLock;

use host_harness::PluginModule;

/// The probe guest (`tests/guests/probe`), built for wasm32-wasip1 and compiled once per test
/// binary.
pub fn probe() -> PluginModule {
    static MODULE: OnceLock<PluginModule> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let path = host_harness::wasm_build::build("abi-probe", "abi_probe", "wasm-release")
                .expect("build the probe guest");
            PluginModule::load(path).expect("load the probe guest")
        })
        .clone()
}
