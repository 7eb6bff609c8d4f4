//! OCI image layouts on disk (`oci-layout`, `index.json`, `blobs/sha256/<hex>`): writing an
//! [`Image`] under a tag, and reading one back (for the push) with every blob's digest checked.

use crate::{
    canonical_json,
    digest::{oci_digest, sha256_hex},
    image::{Blob, Image},
};
use anyhow::{bail, ensure, Context, Result};
use oci_spec::image::{ImageIndex, ImageIndexBuilder, ImageManifest, MediaType, OciLayoutBuilder};
use std::{collections::HashMap, fs, path::Path};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Write `image` as an OCI image layout in `dir`, tagged `tag`. An existing layout in `dir` is
/// replaced (stale blobs of an older build would otherwise linger); any other non-empty directory
/// is refused rather than deleted.
pub fn write(dir: &Path, image: &Image, tag: &str) -> Result<()> {
    if dir.exists() {
        let empty = fs::read_dir(dir)?.next().is_none();
        ensure!(
            empty || dir.join("oci-layout").is_file(),
            "{} exists and is not an OCI layout; refusing to overwrite it",
            dir.display()
        );
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let blob_dir = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blob_dir)?;
    for blob in image.blobs.iter().chain([&image.manifest]) {
        let hex = sha256_hex(&blob.bytes);
        fs::write(blob_dir.join(hex), &blob.bytes)?;
    }
    let layout = OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()?;
    fs::write(dir.join("oci-layout"), canonical_json::to_vec(&layout)?)?;
    let mut entry = image.manifest.descriptor.clone();
    entry.set_annotations(Some(HashMap::from([(
        REF_NAME.to_string(),
        tag.to_string(),
    )])));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![entry])
        .build()?;
    fs::write(dir.join("index.json"), canonical_json::to_vec(&index)?)?;
    Ok(())
}

/// Read the image tagged `tag` (or the only image when `tag` is None) back from a layout.
pub fn read(dir: &Path, tag: Option<&str>) -> Result<Image> {
    let index = ImageIndex::from_file(dir.join("index.json"))
        .with_context(|| format!("{} is not an OCI image layout", dir.display()))?;
    let entries = index.manifests();
    let entry = match tag {
        Some(tag) => entries
            .iter()
            .find(|d| {
                d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .map(String::as_str)
                    == Some(tag)
            })
            .with_context(|| format!("no image tagged {tag:?} in {}", dir.display()))?,
        None if entries.len() == 1 => &entries[0],
        None => bail!(
            "{} holds {} images; name a tag",
            dir.display(),
            entries.len()
        ),
    };
    let manifest = read_blob(dir, entry.media_type().clone(), entry.digest().as_ref())?;
    let parsed = ImageManifest::from_reader(&manifest.bytes[..])?;
    let mut blobs = Vec::new();
    for d in std::iter::once(parsed.config()).chain(parsed.layers()) {
        let blob = read_blob(dir, d.media_type().clone(), d.digest().as_ref())?;
        ensure!(
            blob.bytes.len() as u64 == d.size(),
            "blob {} has the wrong size",
            d.digest()
        );
        blobs.push(Blob {
            descriptor: d.clone(),
            bytes: blob.bytes,
        });
    }
    Ok(Image { manifest, blobs })
}

fn read_blob(dir: &Path, media_type: MediaType, digest: &str) -> Result<Blob> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("unsupported digest {digest}"))?;
    ensure!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "bad digest {digest}"
    );
    let bytes = fs::read(dir.join("blobs").join("sha256").join(hex))
        .with_context(|| format!("reading blob {digest}"))?;
    ensure!(
        oci_digest(&bytes)?.as_ref() == digest,
        "blob {digest} does not match its digest"
    );
    Blob::new(media_type, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{cncf_image, compat_image, ImageInfo};

    fn info() -> ImageInfo {
        ImageInfo {
            file_name: "config_bridge.wasm".into(),
            title: "config-bridge".into(),
            version: "0.0.1".into(),
            source: None,
            created_epoch: 42,
        }
    }

    fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(p) = stack.pop() {
            for e in fs::read_dir(&p).unwrap() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let rel = path.strip_prefix(dir).unwrap().display().to_string();
                    out.push((rel, fs::read(&path).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn two_layouts_from_the_same_bytes_are_identical_trees() {
        let tmp = tempfile::tempdir().unwrap();
        let wasm = b"\0asm\x01\0\0\0module-bytes".to_vec();
        for (name, build) in [
            ("cncf", cncf_image as fn(&[u8], &ImageInfo) -> Result<Image>),
            ("compat", compat_image),
        ] {
            let a = tmp.path().join(format!("{name}-a"));
            let b = tmp.path().join(format!("{name}-b"));
            write(&a, &build(&wasm, &info()).unwrap(), "v1").unwrap();
            write(&b, &build(&wasm, &info()).unwrap(), "v1").unwrap();
            let (ta, tb) = (tree(&a), tree(&b));
            assert_eq!(ta, tb);
            let names: Vec<&str> = ta.iter().map(|(n, _)| n.as_str()).collect();
            assert!(names.contains(&"oci-layout") && names.contains(&"index.json"));
            assert_eq!(
                names
                    .iter()
                    .filter(|n| n.starts_with("blobs/sha256/"))
                    .count(),
                3
            );
        }
    }

    #[test]
    fn read_returns_what_write_wrote_and_detects_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layout");
        let image = compat_image(b"\0asm\x01\0\0\0abc", &info()).unwrap();
        write(&dir, &image, "1.0").unwrap();
        let back = read(&dir, Some("1.0")).unwrap();
        assert_eq!(back.manifest.bytes, image.manifest.bytes);
        assert_eq!(back.blobs.len(), 2);
        for (x, y) in back.blobs.iter().zip(&image.blobs) {
            assert_eq!(x.bytes, y.bytes);
            assert_eq!(x.descriptor, y.descriptor);
        }
        assert!(read(&dir, Some("other")).is_err());
        let layer = sha256_hex(&image.blobs[1].bytes);
        fs::write(dir.join("blobs/sha256").join(layer), b"tampered").unwrap();
        let err = read(&dir, None).unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn refuses_to_replace_a_directory_that_is_not_a_layout() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("precious.txt"), b"keep").unwrap();
        let image = cncf_image(b"\0asm", &info()).unwrap();
        assert!(write(tmp.path(), &image, "t").is_err());
        assert!(tmp.path().join("precious.txt").exists());
    }
}
