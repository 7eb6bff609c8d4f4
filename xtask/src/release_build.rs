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

/// Where the shipped module is built: its own target directory, because the path remapping
/// below is a `RUSTFLAGS` change, and sharing the tests' directory would rebuild every wasm
/// dependency each time one or the other builds.
fn package_target_dir() -> Result<PathBuf> {
    Ok(target_dir()?.join("package-build"))
}

/// `--remap-path-prefix` for the dependencies' sources: their paths end up in the module (panic
/// locations), and without this they name this machine's `CARGO_HOME` (`/root/.cargo/registry/
/// src/index.crates.io-…/aes-0.9.4/…`). Remapped, each becomes `/deps/aes-0.9.4/…`: the same
/// bytes whoever builds it, and ~0.9 KB smaller (BENCHMARKS.md, "Issue 25, this session's
/// merges"). The workspace's own paths are already relative; the standard library's
/// (`/rustc/<commit>/…`) are fixed by the toolchain.
fn remap_flags() -> Vec<String> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(cargo_home) = cargo_home else {
        return Vec::new();
    };
    let mut flags = Vec::new();
    // One directory per registry (`index.crates.io-<hash>`): each maps to `/deps`.
    if let Ok(entries) = std::fs::read_dir(cargo_home.join("registry").join("src")) {
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for dir in dirs {
            flags.push(format!("--remap-path-prefix={}=/deps", dir.display()));
        }
    }
    flags.push(format!(
        "--remap-path-prefix={}=/git",
        cargo_home.join("git").join("checkouts").display()
    ));
    flags
}

/// The `RUSTFLAGS` of the shipped build: the caller's own (if any) and the remapping.
fn rustflags() -> String {
    let mut flags: Vec<String> = std::env::var("RUSTFLAGS")
        .ok()
        .filter(|f| !f.trim().is_empty())
        .into_iter()
        .collect();
    flags.extend(remap_flags());
    flags.join(" ")
}

/// Build the filter and return the path of the .wasm.
pub fn build() -> Result<PathBuf> {
    let target = package_target_dir()?;
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
        .env("CARGO_TARGET_DIR", &target)
        .env("RUSTFLAGS", rustflags())
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .current_dir(workspace_root())
        .status()
        .context("running cargo build")?;
    ensure!(status.success(), "cargo build of {PACKAGE} failed");
    let wasm = target.join(TARGET).join(PROFILE).join(ARTIFACT);
    ensure!(wasm.is_file(), "{} was not produced", wasm.display());
    Ok(wasm)
}
