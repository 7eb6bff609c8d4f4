//! Helpers shared by the integration tests.

use std::sync::OnceLock;

use host_harness::{PluginModule, World};

/// A guest under `tests/guests/`, built for wasm32-wasip1 once per test binary.
#[allow(dead_code)] // test binaries that build no guest (they share `assert_no_traps`)
fn guest(cell: &OnceLock<PluginModule>, package: &str, lib: &str, profile: &str) -> PluginModule {
    cell.get_or_init(|| {
        let path = host_harness::wasm_build::build(package, lib, profile)
            .unwrap_or_else(|e| panic!("build the {package} guest: {e:#}"));
        PluginModule::load(path).unwrap_or_else(|e| panic!("load the {package} guest: {e:#}"))
    })
    .clone()
}

/// The probe guest (`tests/guests/probe`).
#[allow(dead_code)] // each test binary uses its own guests
pub(crate) fn probe() -> PluginModule {
    static MODULE: OnceLock<PluginModule> = OnceLock::new();
    guest(&MODULE, "abi-probe", "abi_probe", "wasm-release")
}

/// The HTTP fidelity guest (`tests/guests/h-http`), built with symbols (release, not stripped)
/// so trap reports can name its frames.
#[allow(dead_code)]
pub(crate) fn h_http() -> PluginModule {
    static MODULE: OnceLock<PluginModule> = OnceLock::new();
    guest(&MODULE, "h-http", "h_http", "release")
}

/// The differential suite's script guest (`tests/guests/script`): its configuration says which
/// hostcalls to make in which callback, and it logs each with its result.
#[allow(dead_code)]
pub(crate) fn script() -> PluginModule {
    static MODULE: OnceLock<PluginModule> = OnceLock::new();
    guest(&MODULE, "script-guest", "script_guest", "wasm-release")
}

/// Fails the test when a guest trapped in `world`, naming the profile and every trap.
#[allow(dead_code)] // not every test binary checks traps with it
pub(crate) fn assert_no_traps(world: &World) {
    let traps: Vec<String> = world.traps().iter().map(|t| t.summary()).collect();
    assert!(traps.is_empty(), "{}: {traps:?}", world.profile().name);
}
