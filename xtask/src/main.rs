//! `cargo xtask package` / `cargo xtask push`: see `xtask/src/package.rs`.

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use xtask::{layout, package, push::Client, push::Reference, release_build};

#[derive(Parser)]
#[command(
    name = "xtask",
    about = "Release build and OCI packaging of config-bridge"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the release .wasm and write it, config_bridge.meta.json and two OCI image layouts
    /// (oci/cncf: CNCF Wasm artifact; oci/compat: Istio / Envoy Gateway) under --out.
    Package {
        /// Output directory [default: <cargo target dir>/package]
        #[arg(long)]
        out: Option<PathBuf>,
        /// Package this .wasm as it is instead of building the filter.
        #[arg(long)]
        wasm: Option<PathBuf>,
        /// Skip binaryen's `wasm-opt` after the build (the result is not the shipped module).
        #[arg(long, conflicts_with = "wasm")]
        no_wasm_opt: bool,
        /// Tag of the CNCF layout; the compat layout gets TAG-compat [default: the crate version]
        #[arg(long)]
        tag: Option<String>,
        /// org.opencontainers.image.source annotation (the repository URL).
        #[arg(long)]
        source: Option<String>,
        /// Push the CNCF image to REGISTRY/REPO:TAG and the compat image to REGISTRY/REPO:TAG-compat
        /// (plain http for localhost/127.0.0.1; credentials from OCI_REGISTRY_USERNAME/PASSWORD).
        #[arg(long, value_name = "REGISTRY/REPO:TAG")]
        push: Option<String>,
    },
    /// Push one OCI image layout (e.g. target/package/oci/compat) to REGISTRY/REPO:TAG.
    Push {
        layout: PathBuf,
        #[arg(value_name = "REGISTRY/REPO:TAG")]
        reference: String,
        /// Which tag of the layout to push [default: its only image]
        #[arg(long)]
        tag: Option<String>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Package {
            out,
            wasm,
            no_wasm_opt,
            tag,
            source,
            push,
        } => {
            let out = match out {
                Some(out) => out,
                None => release_build::target_dir()?.join("package"),
            };
            let opts = package::Options {
                out: out.clone(),
                wasm,
                wasm_opt: !no_wasm_opt,
                tag: tag.unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string()),
                source,
                push: push.as_deref().map(Reference::parse).transpose()?,
            };
            let o = package::run(&opts)?;
            let optimised = o
                .linked_size
                .map(|n| format!(", wasm-opt from {n}"))
                .unwrap_or_default();
            println!(
                "wasm      {} ({} bytes{optimised}, sha256:{})",
                o.wasm_path.display(),
                o.wasm_size,
                o.wasm_sha256
            );
            println!("meta      {}", out.join(xtask::meta::FILE_NAME).display());
            println!(
                "oci/cncf   manifest {}  (oci:{}:{})",
                o.cncf_digest,
                out.join("oci/cncf").display(),
                opts.tag
            );
            println!(
                "oci/compat manifest {}  (oci:{}:{})",
                o.compat_digest,
                out.join("oci/compat").display(),
                package::compat_tag(&opts.tag)
            );
            println!(
                "digests   {} (bare hex: Istio's / Envoy Gateway's sha256 = the oci/compat line)",
                out.join(package::DIGESTS_FILE).display()
            );
            for (r, digest) in &o.pushed {
                println!("pushed    {r}@{digest}");
            }
        }
        Command::Push {
            layout: dir,
            reference,
            tag,
        } => {
            let reference = Reference::parse(&reference)?;
            let image = layout::read(&dir, tag.as_deref())?;
            let digest = Client::new(&reference).push(&image)?;
            println!("pushed    {reference}@{digest}");
        }
    }
    Ok(())
}
