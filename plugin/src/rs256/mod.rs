//! RS256 (RSASSA-PKCS1-v1_5 with SHA-256) for the GCS service-account JWT (docs/gcs.md): the key
//! read from PEM (`key`), the signature computed in slices a host can run one per tick (`sign`).
//! A leaf the settings (which parse the key) and the GCS token flow (which signs) both use.

pub mod key;
pub mod sign;

use std::fmt;
use std::rc::Rc;

use crate::secret::Secret;
use sign::{SignJob, SigningKeyParts};

/// An RSA private key ready to sign (parsed once, at configuration time). Compared by its DER
/// bytes; `Debug` never shows them.
#[derive(Clone)]
pub struct RsaSigner {
    der: Secret,
    key: Rc<SigningKeyParts>,
}

impl PartialEq for RsaSigner {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}
impl Eq for RsaSigner {}

impl fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RsaSigner(***)")
    }
}

impl RsaSigner {
    /// A PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`, what Google issues) or PKCS#1 (`BEGIN RSA
    /// PRIVATE KEY`). The error never quotes the key.
    pub fn from_pem(pem: &str) -> Result<RsaSigner, String> {
        let (key, der) = key::private_key_from_pem(pem)?;
        let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
        let key = SigningKeyParts::new(&key).ok_or("is not a valid RSA private key")?;
        Ok(RsaSigner {
            der: Secret::new(hex),
            key: Rc::new(key),
        })
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 (deterministic; the host's randomness only blinds the
    /// private-key operation), as slices to run one per tick (`rs256/sign.rs`).
    pub fn start(&self, message: &[u8]) -> Result<SignJob, String> {
        SignJob::new(Rc::clone(&self.key), message)
    }
}
