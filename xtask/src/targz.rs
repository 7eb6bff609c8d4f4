//! Deterministic tar+gzip holding one file, for the Istio / Envoy Gateway "compat" image layer.
//!
//! Same bytes in, same bytes out: ustar headers with mtime 0 (or the given epoch), uid/gid 0, no
//! user/group names, mode 0644; gzip header with no file name and mtime 0, fixed level 9.

use anyhow::Result;
use flate2::{write::GzEncoder, Compression, GzBuilder};
use std::io::Write;

/// A tar archive holding exactly one regular file `name` with `contents`.
pub fn tar_one_file(name: &str, contents: &[u8], mtime: u64) -> Result<Vec<u8>> {
    let mut header = tar::Header::new_ustar();
    header.set_path(name)?;
    header.set_size(contents.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    builder.append(&header, contents)?;
    Ok(builder.into_inner()?)
}

/// gzip `data` with an empty header (no name, mtime 0) so the output depends on `data` only.
pub fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut enc: GzEncoder<Vec<u8>> = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::new(9));
    enc.write_all(data)?;
    Ok(enc.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    #[test]
    fn tar_and_gzip_are_byte_for_byte_repeatable() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let a = gzip(&tar_one_file("plugin.wasm", &data, 0).unwrap()).unwrap();
        let b = gzip(&tar_one_file("plugin.wasm", &data, 0).unwrap()).unwrap();
        assert_eq!(a, b);
        // gzip header: magic, CM=8, FLG without FNAME (0x08), MTIME = 0.
        assert_eq!(&a[..3], &[0x1f, 0x8b, 0x08]);
        assert_eq!(a[3] & 0x08, 0, "no file name in the gzip header");
        assert_eq!(&a[4..8], &[0, 0, 0, 0], "gzip mtime is zero");
    }

    #[test]
    fn archive_holds_exactly_the_file_with_fixed_metadata() {
        let data = b"\0asm\x01\0\0\0".to_vec();
        let tgz = gzip(&tar_one_file("plugin.wasm", &data, 1_700_000_000).unwrap()).unwrap();
        let mut archive = tar::Archive::new(GzDecoder::new(&tgz[..]));
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let h = entry.header().clone();
            let mut body = Vec::new();
            entry.read_to_end(&mut body).unwrap();
            seen.push((entry.path().unwrap().display().to_string(), body));
            assert_eq!(h.mode().unwrap(), 0o644);
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            assert_eq!(h.mtime().unwrap(), 1_700_000_000);
            assert_eq!(h.entry_type(), tar::EntryType::Regular);
        }
        assert_eq!(seen, vec![("plugin.wasm".to_string(), data)]);
    }

    #[test]
    fn different_contents_give_different_archives() {
        let a = gzip(&tar_one_file("plugin.wasm", b"one", 0).unwrap()).unwrap();
        let b = gzip(&tar_one_file("plugin.wasm", b"two", 0).unwrap()).unwrap();
        assert_ne!(a, b);
    }
}
