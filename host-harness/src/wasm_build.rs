//! Builds a workspace crate for `wasm32-wasip1` so tests and benchmarks run on the real `.wasm`
//! with no manual step. The build uses its own target directory (`target/wasm`), so it never
//! waits on the cargo lock of the `cargo test` that called it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The profile the filter ships with (size-optimised, see the workspace Cargo.toml).
pub const SHIP_PROFILE: &str = "wasm-release";

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Builds `package` of this repository's workspace (a cdylib whose library is `lib_name`) with
/// `profile` and returns the path of the `.wasm`. Cargo's own up-to-date check makes repeated
/// calls cheap. For a filter of your own, [`build_in`].
pub fn build(package: &str, lib_name: &str, profile: &str) -> Result<PathBuf> {
    build_in(&workspace_root(), package, lib_name, profile)
}

/// Builds `package` of the Cargo workspace at (or above) `dir` for `wasm32-wasip1` with
/// `profile` (`"release"`, `"dev"`, or a custom one) into `<dir>/target/wasm` (or
/// `$HARNESS_WASM_TARGET_DIR`), and returns the path of `<lib_name>.wasm`. From a test of your
/// filter's crate: `build_in(Path::new(env!("CARGO_MANIFEST_DIR")), "my-filter", "my_filter",
/// "release")` — see the crate's README.
pub fn build_in(dir: &Path, package: &str, lib_name: &str, profile: &str) -> Result<PathBuf> {
    let root = dir.to_path_buf();
    let target_dir = std::env::var_os("HARNESS_WASM_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("wasm"));
    ensure_wasm_target();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--target",
            "wasm32-wasip1",
            "--profile",
            profile,
            "-p",
            package,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the host build (coverage, sanitizers) must not leak into the wasm build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .with_context(|| format!("running cargo to build {package} for wasm32-wasip1"))?;
    if !output.status.success() {
        bail!(
            "building {package} for wasm32-wasip1 failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let dir = if profile == "dev" { "debug" } else { profile };
    let wasm = target_dir
        .join("wasm32-wasip1")
        .join(dir)
        .join(format!("{lib_name}.wasm"));
    if !wasm.exists() {
        bail!("cargo succeeded but {} is missing", wasm.display());
    }
    Ok(wasm)
}

/// The filter as it ships: `config-bridge` in the `wasm-release` profile.
pub fn config_bridge() -> Result<PathBuf> {
    build("config-bridge", "config_bridge", SHIP_PROFILE)
}

/// Installs the `wasm32-wasip1` standard library through rustup when it is missing, so the
/// README's first command works on a fresh machine. Failures are left to cargo's own error.
fn ensure_wasm_target() {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = sysroot
        .map(|root| root.join("lib/rustlib/wasm32-wasip1").exists())
        .unwrap_or(true);
    if !installed {
        eprintln!("installing the wasm32-wasip1 target (rustup target add wasm32-wasip1)");
        let _ = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip1"])
            .status();
    }
}
