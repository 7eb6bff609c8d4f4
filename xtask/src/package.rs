//! `cargo xtask package`: the .wasm, its Kong meta.json and the two OCI layouts under one directory,
//! optionally pushed to a registry.

use crate::{
    digest::sha256_hex,
    image::{cncf_image, compat_image, ImageInfo},
    layout, meta,
    push::{Client, Reference},
    release_build, wasm_opt,
};
use anyhow::{Context, Result};
use oci_spec::image::Digest;
use std::{fs, path::PathBuf};

/// `created` when SOURCE_DATE_EPOCH is not set: the Unix epoch, so that builds are reproducible
/// without any setup (the same choice as ko and Bazel's rules_oci).
pub const DEFAULT_EPOCH: u64 = 0;
/// Tag suffix of the Istio / Envoy Gateway image when both are pushed to one repository.
pub const COMPAT_SUFFIX: &str = "-compat";
/// `<hex>  <name>` lines for the .wasm and both manifests.
pub const DIGESTS_FILE: &str = "digests.txt";

/// The tag of the compat image (layout and registry) for the release tag `tag`.
pub fn compat_tag(tag: &str) -> String {
    format!("{tag}{COMPAT_SUFFIX}")
}

/// `sha256:<hex>` → `<hex>`.
pub fn bare_hex(digest: &Digest) -> String {
    digest.digest().to_string()
}

pub struct Options {
    pub out: PathBuf,
    /// Package this module as it is instead of building one.
    pub wasm: Option<PathBuf>,
    /// Run the pinned `wasm-opt` on the module built (`wasm_opt.rs`); off only for a module
    /// that is not the shipped one (`--no-wasm-opt`).
    pub wasm_opt: bool,
    /// Tag of the CNCF layout (`org.opencontainers.image.ref.name`); the compat layout gets
    /// `<tag>-compat`, the tags `--push` gives them in a registry.
    pub tag: String,
    pub source: Option<String>,
    /// Push the CNCF image to this reference and the compat image to `<tag>-compat`.
    pub push: Option<Reference>,
}

pub struct Outcome {
    pub wasm_path: PathBuf,
    pub wasm_size: u64,
    /// The size cargo's build had before `wasm-opt`, when it ran.
    pub linked_size: Option<u64>,
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
    let (built, linked_size) = match &opts.wasm {
        Some(path) => (path.clone(), None),
        None if opts.wasm_opt => {
            let linked = release_build::build()?;
            let optimised = linked.with_extension("opt.wasm");
            wasm_opt::optimise(&linked, &optimised)?;
            (optimised, Some(fs::metadata(&linked)?.len()))
        }
        None => (release_build::build()?, None),
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
    // Each layout carries the tag it gets in a registry, so that copying a layout by its tag
    // (skopeo, oras, `cargo xtask push`) and the README's references agree.
    layout::write(&opts.out.join("oci").join("cncf"), &cncf, &opts.tag)?;
    layout::write(
        &opts.out.join("oci").join("compat"),
        &compat,
        &compat_tag(&opts.tag),
    )?;
    // `sha256sum` style, bare hex: the form Istio's and Envoy Gateway's `sha256` fields take (for an
    // OCI image they must equal the MANIFEST digest, not the module's); prefix `sha256:` for an
    // `@sha256:` reference. CI compares pulled digests against it.
    let outcome_digests = format!(
        "{}  {}\n{}  oci/cncf\n{}  oci/compat\n",
        sha256_hex(&wasm),
        release_build::ARTIFACT,
        bare_hex(cncf.manifest_digest()),
        bare_hex(compat.manifest_digest())
    );
    fs::write(opts.out.join(DIGESTS_FILE), outcome_digests)?;

    let mut pushed = Vec::new();
    if let Some(reference) = &opts.push {
        let compat_ref = reference.with_tag(&compat_tag(&reference.tag));
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
        linked_size,
        wasm_sha256: sha256_hex(&wasm),
        cncf_digest: cncf.manifest_digest().to_string(),
        compat_digest: compat.manifest_digest().to_string(),
        pushed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout;

    #[test]
    fn layouts_carry_their_registry_tags_and_digests_txt_has_bare_manifest_digests() {
        let tmp = tempfile::tempdir().unwrap();
        let wasm = tmp.path().join("m.wasm");
        fs::write(&wasm, b"\0asm\x01\0\0\0module").unwrap();
        let out = tmp.path().join("pkg");
        let o = run(&Options {
            out: out.clone(),
            wasm: Some(wasm),
            wasm_opt: true,
            tag: "1.2.3".into(),
            source: None,
            push: None,
        })
        .unwrap();
        let cncf = layout::read(&out.join("oci/cncf"), Some("1.2.3")).unwrap();
        let compat = layout::read(&out.join("oci/compat"), Some("1.2.3-compat")).unwrap();
        assert!(layout::read(&out.join("oci/compat"), Some("1.2.3")).is_err());
        assert_eq!(cncf.manifest_digest().to_string(), o.cncf_digest);
        assert_eq!(compat.manifest_digest().to_string(), o.compat_digest);
        let digests = fs::read_to_string(out.join(DIGESTS_FILE)).unwrap();
        let lines: Vec<(&str, &str)> = digests
            .lines()
            .map(|l| l.split_once("  ").unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                (o.wasm_sha256.as_str(), "config_bridge.wasm"),
                (o.cncf_digest.strip_prefix("sha256:").unwrap(), "oci/cncf"),
                (
                    o.compat_digest.strip_prefix("sha256:").unwrap(),
                    "oci/compat"
                ),
            ]
        );
        assert!(lines
            .iter()
            .all(|(hex, _)| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())));
    }
}
