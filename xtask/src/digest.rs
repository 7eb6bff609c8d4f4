//! sha256 content addresses as OCI writes them (`sha256:<hex>`).

use anyhow::Result;
use oci_spec::image::{Digest, Sha256Digest};
use sha2::{Digest as _, Sha256};
use std::str::FromStr;

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The OCI digest (`sha256:...`) of `bytes`.
pub fn oci_digest(bytes: &[u8]) -> Result<Digest> {
    Ok(Sha256Digest::from_str(&sha256_hex(bytes))?.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input_is_the_well_known_one() {
        assert_eq!(
            oci_digest(b"").unwrap().to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
