//! Sealed-export settings (docs/sealed-exports.md): an exporter's signing and encryption keys,
//! an importer's verification and decryption keys (lists, for rotation). Keys are given as
//! `<key id>:<base64 of 32 bytes>`; errors name the setting and never quote a key.

use crate::json::Value;

use super::lookup::Lookup;
use super::{err, Fail};
use crate::seal::keys::{parse_list, KeyEntry};

/// Opt-in signing and encryption of exports, and what an importer requires.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SealSettings {
    /// `export_signing_key`: an Ed25519 secret seed; exports carry a signature.
    pub signing_key: Option<KeyEntry>,
    /// `import_verification_keys`: Ed25519 public keys; with any, an import refuses objects that
    /// are not signed by one of them.
    pub verification_keys: Vec<KeyEntry>,
    /// `export_encryption_key`: an AES-256 key; exports are encrypted.
    pub encryption_key: Option<KeyEntry>,
    /// `import_decryption_keys`: AES-256 keys; with any, an import accepts only objects
    /// encrypted with one of them.
    pub decryption_keys: Vec<KeyEntry>,
}

impl SealSettings {
    /// Whether exports are signed or encrypted, or imports require it.
    pub fn any(&self) -> bool {
        self.signing_key.is_some()
            || self.encryption_key.is_some()
            || !self.verification_keys.is_empty()
            || !self.decryption_keys.is_empty()
    }
}

pub(crate) fn parse_seal(l: &Lookup<'_>) -> Result<SealSettings, Fail> {
    let one = |name: &str, env: &str| -> Result<Option<KeyEntry>, Fail> {
        match l.string(name, &[env])? {
            None => Ok(None),
            Some((text, field)) => KeyEntry::parse(&text).map(Some).or_else(|r| err(field, r)),
        }
    };
    let list = |name: &str, env: &str| -> Result<Vec<KeyEntry>, Fail> {
        let Some(raw) = l.get(name, &[env]) else {
            return Ok(Vec::new());
        };
        let items: Vec<String> = match raw.value {
            Value::String(s) if s.trim().is_empty() => return Ok(Vec::new()),
            Value::String(s) => vec![s],
            Value::Array(a) => {
                let mut items = Vec::new();
                for v in a {
                    match v {
                        Value::String(s) => items.push(s),
                        _ => return err(raw.field, "expected a string or an array of strings"),
                    }
                }
                items
            }
            _ => return err(raw.field, "expected a string or an array of strings"),
        };
        parse_list(items.iter().map(String::as_str)).or_else(|r| err(raw.field, r))
    };
    let signing_key = one("export_signing_key", "CONFIG_BRIDGE_EXPORT_SIGNING_KEY")?;
    let verification_keys = list(
        "import_verification_keys",
        "CONFIG_BRIDGE_IMPORT_VERIFICATION_KEYS",
    )?;
    for k in &verification_keys {
        if ed25519_dalek::VerifyingKey::from_bytes(k.bytes()).is_err() {
            return err(
                "import_verification_keys",
                format!("key {} is not an Ed25519 public key", k.id),
            );
        }
    }
    let encryption_key = one(
        "export_encryption_key",
        "CONFIG_BRIDGE_EXPORT_ENCRYPTION_KEY",
    )?;
    let decryption_keys = list(
        "import_decryption_keys",
        "CONFIG_BRIDGE_IMPORT_DECRYPTION_KEYS",
    )?;
    Ok(SealSettings {
        signing_key,
        verification_keys,
        encryption_key,
        decryption_keys,
    })
}
