//! The size-optimised release build of the filter (`--profile wasm-release`, wasm32-wasip1).

use anyhow::{ensure, Context, Result};
use std::{path::PathBuf, process::Command};

pub const PACKAGE: &str = "config-bridge";
pub const TARGET: &str = "wasm32-wasip1";
pub const PROFILE: &str = "wasm-release";
pub const ARTIFACT: &str = "config_bridge.wasm";

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> String {
    // Set by cargo when xtask runs through `cargo xtask`: the same toolchain builds the filter.
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// The target directory cargo uses (honours CARGO_TARGET_DIR and `build.target-dir`).
pub fn target_dir() -> Result<PathBuf> {
    let out = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(workspace_root())
        .output()
        .context("running cargo metadata")?;
    ensure!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let dir = meta["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    Ok(PathBuf::from(dir))
}

/// Build the filter and return the path of the .wasm.
pub fn build() -> Result<PathBuf> {
    let status = Command::new(cargo())
        .args([
            "build",
            "--locked",
            "-p",
            PACKAGE,
            "--target",
            TARGET,
            "--profile",
            PROFILE,
        ])
        .current_dir(workspace_root())
        .status()
        .context("running cargo build")?;
    ensure!(status.success(), "cargo build of {PACKAGE} failed");
    let wasm = target_dir()?.join(TARGET).join(PROFILE).join(ARTIFACT);
    ensure!(wasm.is_file(), "{} was not produced", wasm.display());
    Ok(wasm)
}
