//! Post-link size optimisation of the shipped module with binaryen's `wasm-opt` (`-Oz` and more)
//! (BENCHMARKS.md, "Module size": about 15 % smaller, and every worker compiles less).
//!
//! Only packaging runs it (`cargo xtask package`); the demo and the tests build the module with
//! cargo alone, so the README's first command needs nothing but rustup. The binaryen version is
//! pinned: the same input and the same `wasm-opt` give the same bytes (CI packages twice and
//! compares), another version may not. `.ci/setup.d/binaryen.sh` installs it.

use anyhow::{bail, ensure, Context, Result};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The binaryen release the shipped module is optimised with (Debian bookworm's `binaryen`).
pub const PINNED_VERSION: u32 = 108;

/// `-Oz` and the WebAssembly features rustc's wasm32-wasip1 target emits (the module carries no
/// `target_features` section for wasm-opt to read; a feature missing here fails validation
/// loudly, it is never silently lowered).
///
/// `--low-memory-unused` (−2 KB): a constant added to a pointer may become the load's or store's
/// offset. That differs only when the addition wraps past 4 GiB into the first 1 KiB, which
/// Rust's pointer arithmetic never does (there the folded access traps instead of reading low
/// memory). `--converge` was measured too: −0.2 KB for twice the time, not used.
///
/// The passes run in the order given (BENCHMARKS.md, "Issue 25, lean7": −6.2 KB together, no
/// callback slower in the export, callbacks and sealed-export benchmarks): functions that differ
/// only in constants merged first (`--merge-similar-functions`, which `-Oz` does not run), `-Oz`,
/// then the control flow rebuilt (`--flatten --rereloop`) and shrunk again by two `-Oz`.
pub const FLAGS: &[&str] = &[
    "--merge-similar-functions",
    "-Oz",
    "--flatten",
    "--rereloop",
    "-Oz",
    "-Oz",
    "--low-memory-unused",
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-nontrapping-float-to-int",
    "--enable-mutable-globals",
];

/// The `wasm-opt` to run: `$WASM_OPT`, else the one on `PATH`.
pub fn program() -> PathBuf {
    std::env::var_os("WASM_OPT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("wasm-opt"))
}

/// The release number in `wasm-opt --version`'s output (`wasm-opt version 108`,
/// `wasm-opt version 116 (version_116)`).
pub fn parse_version(output: &str) -> Option<u32> {
    let rest = output.split("version").nth(1)?;
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Checks that `program` is the pinned binaryen release.
pub fn check_version(program: &Path) -> Result<()> {
    let out = Command::new(program)
        .arg("--version")
        .output()
        .with_context(|| {
            format!(
                "running {} (binaryen {PINNED_VERSION}: bash .ci/setup.d/binaryen.sh, or \
                 `cargo xtask package --no-wasm-opt` for a module that is not the shipped one)",
                program.display()
            )
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    match parse_version(&text) {
        Some(v) if v == PINNED_VERSION => Ok(()),
        Some(v) => bail!(
            "{} is binaryen {v}; the shipped module is optimised with binaryen {PINNED_VERSION} \
             (another version gives other bytes; set WASM_OPT to the pinned one)",
            program.display()
        ),
        None => bail!(
            "{} --version printed no version: {}",
            program.display(),
            text.trim()
        ),
    }
}

/// Optimises `input` into `output` with the pinned `wasm-opt` and [`FLAGS`].
pub fn optimise(input: &Path, output: &Path) -> Result<()> {
    let program = program();
    check_version(&program)?;
    let out = Command::new(&program)
        .args(FLAGS)
        .arg(input)
        .arg("-o")
        .arg(output)
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        // A validation failure prints the whole offending function for every error: the first
        // lines say what it is.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let head: Vec<&str> = stderr.lines().take(12).collect();
        bail!(
            "wasm-opt failed on {}:\n{}",
            input.display(),
            head.join("\n")
        );
    }
    let bytes = std::fs::read(output).with_context(|| format!("reading {}", output.display()))?;
    ensure!(
        bytes.starts_with(b"\0asm"),
        "wasm-opt wrote no module to {}",
        output.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_both_output_forms() {
        assert_eq!(parse_version("wasm-opt version 108\n"), Some(108));
        assert_eq!(
            parse_version("wasm-opt version 116 (version_116)\n"),
            Some(116)
        );
        assert_eq!(parse_version("wasm-opt\n"), None);
    }
}
