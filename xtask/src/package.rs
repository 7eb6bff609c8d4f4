//! `cargo xtask package`: the .wasm, its Kong meta.json and the two OCI layouts under one directory,
//! optionally pushed to a registry.

use crate::{
    digest::sha256_hex,
    image::{cncf_image, compat_image, ImageInfo},
    layout, meta,
    push::{Client, Reference},
    release_build,
};
use anyhow::{Context, Result};
use std::{fs, path::PathBuf};

/// `created` when SOURCE_DATE_EPOCH is not set: the Unix epoch, so that builds are reproducible
/// without any setup (the same choice as ko and Bazel's rules_oci).
pub const DEFAULT_EPOCH: u64 = 0;
/// Tag suffix of the Istio / Envoy Gateway image when both are pushed to one repository.
pub const COMPAT_SUFFIX: &str = "-compat";

pub struct Options {
    pub out: PathBuf,
    /// Package this module instead of building one.
    pub wasm: Option<PathBuf>,
    /// Tag inside both layouts (`org.opencontainers.image.ref.name`).
    pub tag: String,
    pub source: Option<String>,
    /// Push the CNCF image to this reference and the compat image to `<tag>-compat`.
    pub push: Option<Reference>,
}

pub struct Outcome {
    pub wasm_path: PathBuf,
    pub wasm_size: u64,
    pub wasm_sha256: String,
    pub cncf_digest: String,
    pub compat_digest: String,
    pub pushed: Vec<(Reference, String)>,
}

pub fn source_date_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .context("SOURCE_DATE_EPOCH is not a number of seconds"),
        _ => Ok(DEFAULT_EPOCH),
    }
}

pub fn run(opts: &Options) -> Result<Outcome> {
    let built = match &opts.wasm {
        Some(path) => path.clone(),
        None => release_build::build()?,
    };
    let wasm = fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    anyhow::ensure!(
        wasm.starts_with(b"\0asm"),
        "{} is not a WebAssembly module",
        built.display()
    );
    let info = ImageInfo {
        file_name: release_build::ARTIFACT.to_string(),
        title: release_build::PACKAGE.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        source: opts.source.clone(),
        created_epoch: source_date_epoch()?,
    };
    fs::create_dir_all(&opts.out)?;
    let wasm_path = opts.out.join(release_build::ARTIFACT);
    fs::write(&wasm_path, &wasm)?;
    meta::write(&opts.out)?;

    let cncf = cncf_image(&wasm, &info)?;
    let compat = compat_image(&wasm, &info)?;
    layout::write(&opts.out.join("oci").join("cncf"), &cncf, &opts.tag)?;
    layout::write(&opts.out.join("oci").join("compat"), &compat, &opts.tag)?;
    let outcome_digests = format!(
        "{}  {}\n{}  oci/cncf\n{}  oci/compat\n",
        sha256_hex(&wasm),
        release_build::ARTIFACT,
        cncf.manifest_digest(),
        compat.manifest_digest()
    );
    // Machine-readable summary for scripts (CI compares pulled digests against it).
    fs::write(opts.out.join("digests.txt"), outcome_digests)?;

    let mut pushed = Vec::new();
    if let Some(reference) = &opts.push {
        let compat_ref = reference.with_tag(&format!("{}{COMPAT_SUFFIX}", reference.tag));
        for (r, image) in [(reference.clone(), &cncf), (compat_ref, &compat)] {
            let digest = Client::new(&r)
                .push(image)
                .with_context(|| format!("pushing {r}"))?;
            pushed.push((r, digest));
        }
    }
    Ok(Outcome {
        wasm_path,
        wasm_size: wasm.len() as u64,
        wasm_sha256: sha256_hex(&wasm),
        cncf_digest: cncf.manifest_digest().to_string(),
        compat_digest: compat.manifest_digest().to_string(),
        pushed,
    })
}
