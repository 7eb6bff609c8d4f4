//! The two OCI images of the filter, built in memory from the .wasm bytes.
//!
//! * CNCF Wasm artifact (tag-group/wasm spec): config `application/vnd.wasm.config.v0+json`
//!   (`created`, `architecture: wasm`, `os: wasip1`, `layerDigests`), one `application/wasm` layer.
//! * "compat" image (Istio's `pkg/wasm` fetcher, Envoy Gateway): a standard OCI image config and one
//!   `application/vnd.oci.image.layer.v1.tar+gzip` layer holding `plugin.wasm`. Istio and Envoy
//!   Gateway reject the CNCF `application/wasm` layer, hence two images.
//!
//! Every byte depends only on the .wasm and `ImageInfo`, so the manifest digest is reproducible.

use crate::{canonical_json, digest::oci_digest, targz};
use anyhow::Result;
use oci_spec::image::{
    Arch, Descriptor, Digest, ImageConfigurationBuilder, ImageManifestBuilder, MediaType, Os,
    RootFsBuilder,
};
use serde::Serialize;
use std::collections::HashMap;

pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The file name Istio and Envoy Gateway look for inside the compat layer.
pub const COMPAT_FILE_NAME: &str = "plugin.wasm";
/// OS of the CNCF Wasm artifact config for a WASI preview 1 module.
pub const WASM_OS: &str = "wasip1";

/// What goes into configs and annotations besides the module itself.
#[derive(Clone, Debug)]
pub struct ImageInfo {
    /// File name of the module (`config_bridge.wasm`), the layer's title.
    pub file_name: String,
    /// Human name of the artifact (`config-bridge`).
    pub title: String,
    pub version: String,
    pub source: Option<String>,
    /// Seconds since the epoch written as `created` (SOURCE_DATE_EPOCH or a constant).
    pub created_epoch: u64,
}

/// A content-addressed blob with its descriptor.
#[derive(Clone, Debug)]
pub struct Blob {
    pub descriptor: Descriptor,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: MediaType, bytes: Vec<u8>) -> Result<Self> {
        let descriptor = Descriptor::new(media_type, bytes.len() as u64, oci_digest(&bytes)?);
        Ok(Blob { descriptor, bytes })
    }
}

/// An image manifest (serialised bytes) with the blobs it references: config first, then layers.
#[derive(Clone, Debug)]
pub struct Image {
    pub manifest: Blob,
    pub blobs: Vec<Blob>,
}

impl Image {
    pub fn manifest_digest(&self) -> &Digest {
        self.manifest.descriptor.digest()
    }
}

/// The CNCF Wasm artifact config (`application/vnd.wasm.config.v0+json`). oci-spec has no type for
/// it (its `ImageConfiguration` has no `layerDigests`), so it is a small serde struct over its types.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WasmConfig {
    created: String,
    architecture: Arch,
    os: Os,
    layer_digests: Vec<Digest>,
}

/// The CNCF Wasm artifact: one `application/wasm` layer.
pub fn cncf_image(wasm: &[u8], info: &ImageInfo) -> Result<Image> {
    let mut layer = Blob::new(
        MediaType::Other(WASM_LAYER_MEDIA_TYPE.into()),
        wasm.to_vec(),
    )?;
    layer.descriptor.set_annotations(Some(HashMap::from([(
        "org.opencontainers.image.title".to_string(),
        info.file_name.clone(),
    )])));
    let config = WasmConfig {
        created: rfc3339(info.created_epoch),
        architecture: Arch::Wasm,
        os: Os::Other(WASM_OS.into()),
        layer_digests: vec![layer.descriptor.digest().clone()],
    };
    let config = Blob::new(
        MediaType::Other(WASM_CONFIG_MEDIA_TYPE.into()),
        canonical_json::to_vec(&config)?,
    )?;
    assemble(config, vec![layer], info)
}

/// The Istio / Envoy Gateway image: one tar+gzip layer holding `plugin.wasm`.
pub fn compat_image(wasm: &[u8], info: &ImageInfo) -> Result<Image> {
    let tar = targz::tar_one_file(COMPAT_FILE_NAME, wasm, info.created_epoch)?;
    let diff_id = oci_digest(&tar)?;
    let layer = Blob::new(MediaType::ImageLayerGzip, targz::gzip(&tar)?)?;
    let config = ImageConfigurationBuilder::default()
        .created(rfc3339(info.created_epoch))
        .architecture(Arch::Wasm)
        .os(Os::Other(WASM_OS.into()))
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![diff_id.to_string()])
                .build()?,
        )
        .build()?;
    let config = Blob::new(MediaType::ImageConfig, canonical_json::to_vec(&config)?)?;
    assemble(config, vec![layer], info)
}

fn assemble(config: Blob, layers: Vec<Blob>, info: &ImageInfo) -> Result<Image> {
    let mut annotations = HashMap::from([
        (
            "org.opencontainers.image.title".to_string(),
            info.title.clone(),
        ),
        (
            "org.opencontainers.image.version".to_string(),
            info.version.clone(),
        ),
        (
            "org.opencontainers.image.created".to_string(),
            rfc3339(info.created_epoch),
        ),
    ]);
    if let Some(source) = &info.source {
        annotations.insert(
            "org.opencontainers.image.source".to_string(),
            source.clone(),
        );
    }
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config.descriptor.clone())
        .layers(
            layers
                .iter()
                .map(|l| l.descriptor.clone())
                .collect::<Vec<_>>(),
        )
        .annotations(annotations)
        .build()?;
    let manifest = Blob::new(MediaType::ImageManifest, canonical_json::to_vec(&manifest)?)?;
    let mut blobs = vec![config];
    blobs.extend(layers);
    Ok(Image { manifest, blobs })
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (UTC; civil-from-days, no date crate needed
/// for one fixed-format timestamp).
pub fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use oci_spec::image::ImageManifest;
    use serde_json::Value;
    use std::io::Read;

    fn info() -> ImageInfo {
        ImageInfo {
            file_name: "config_bridge.wasm".into(),
            title: "config-bridge".into(),
            version: "1.2.3".into(),
            source: Some("https://example.invalid/config-bridge".into()),
            created_epoch: 0,
        }
    }

    fn wasm() -> Vec<u8> {
        let mut w = b"\0asm\x01\0\0\0".to_vec();
        w.extend((0..10_000u32).map(|i| (i % 253) as u8));
        w
    }

    #[test]
    fn same_bytes_give_same_digests() {
        for build in [cncf_image, compat_image] {
            let a = build(&wasm(), &info()).unwrap();
            let b = build(&wasm(), &info()).unwrap();
            assert_eq!(a.manifest.bytes, b.manifest.bytes);
            assert_eq!(a.manifest_digest(), b.manifest_digest());
            let mut other = wasm();
            other.push(0);
            assert_ne!(
                build(&other, &info()).unwrap().manifest_digest(),
                a.manifest_digest()
            );
        }
    }

    #[test]
    fn cncf_config_and_layer_follow_the_wasm_artifact_spec() {
        let image = cncf_image(&wasm(), &info()).unwrap();
        let manifest = ImageManifest::from_reader(&image.manifest.bytes[..]).unwrap();
        assert_eq!(
            manifest.config().media_type().as_ref(),
            WASM_CONFIG_MEDIA_TYPE
        );
        assert_eq!(manifest.layers().len(), 1);
        let layer = &manifest.layers()[0];
        assert_eq!(layer.media_type().as_ref(), WASM_LAYER_MEDIA_TYPE);
        assert_eq!(
            image.blobs[1].bytes,
            wasm(),
            "the layer is the module itself"
        );
        let config: Value = serde_json::from_slice(&image.blobs[0].bytes).unwrap();
        assert_eq!(config["architecture"], "wasm");
        assert_eq!(config["os"], "wasip1");
        assert_eq!(config["created"], "1970-01-01T00:00:00Z");
        assert_eq!(
            config["layerDigests"],
            serde_json::json!([layer.digest().to_string()])
        );
        assert_eq!(
            manifest.config().digest(),
            image.blobs[0].descriptor.digest()
        );
    }

    #[test]
    fn compat_layer_is_targz_with_exactly_plugin_wasm() {
        let image = compat_image(&wasm(), &info()).unwrap();
        let manifest = ImageManifest::from_reader(&image.manifest.bytes[..]).unwrap();
        assert_eq!(manifest.config().media_type(), &MediaType::ImageConfig);
        assert_eq!(manifest.layers().len(), 1);
        assert_eq!(
            manifest.layers()[0].media_type(),
            &MediaType::ImageLayerGzip
        );
        let mut tar = Vec::new();
        GzDecoder::new(&image.blobs[1].bytes[..])
            .read_to_end(&mut tar)
            .unwrap();
        let mut names = Vec::new();
        for entry in tar::Archive::new(&tar[..]).entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut body = Vec::new();
            entry.read_to_end(&mut body).unwrap();
            names.push(entry.path().unwrap().display().to_string());
            assert_eq!(body, wasm());
        }
        assert_eq!(names, vec![COMPAT_FILE_NAME]);
        let config: Value = serde_json::from_slice(&image.blobs[0].bytes).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"],
            serde_json::json!([oci_digest(&tar).unwrap().to_string()])
        );
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
