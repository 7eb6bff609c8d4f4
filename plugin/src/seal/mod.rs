//! Sealed exports (docs/sealed-exports.md): opt-in Ed25519 signatures and AES-256-GCM encryption
//! of the exported object, as sans-IO state machines the engine and the native tool drive.
//!
//! * Export: the document is hashed (`digest`), then encrypted a slice per tick when an
//!   encryption key is set (`ExportSealer`: the object's bytes and their SHA-256 become the
//!   document the export uploads, so `config-sha256`, the checksum header and the "never upload
//!   identical content twice" rule all speak of the stored bytes), then signed when the PUT is
//!   built (`export_metadata`: a signature over the object key and the stored bytes' digest).
//! * Import: after the download and the size check, `Unsealer` hashes the stored bytes a slice
//!   per tick, checks `config-sha256`, the signature, then decrypts a slice per tick; only then
//!   is the document parsed, validated and rewritten.
//!
//! Key bytes never reach a log line, an error, metadata or the object: errors name key ids.

pub mod keys;
mod sha512;
pub mod sign;
pub mod stream;

use std::rc::Rc;

use crate::digest::Digester;
use crate::document::{hex, Document};
pub use crate::settings::SealSettings;
use keys::KeyEntry;
use stream::{Decryptor, Encryptor, Opened};

/// Object metadata (S3 `x-amz-meta-<name>`, GCS custom metadata `<name>`).
pub const META_SIGNATURE: &str = "config-signature";
pub const META_SIGNATURE_KEY: &str = "config-signature-key";
pub const META_ENCRYPTION_KEY: &str = "config-encryption-key";
/// Every metadata name a sealed export may carry.
pub const META_NAMES: [&str; 3] = [META_SIGNATURE, META_SIGNATURE_KEY, META_ENCRYPTION_KEY];

/// Plaintext bytes encrypted or decrypted per tick (docs/sealed-exports.md, "Cost"): AES-GCM in
/// software in the `.wasm` costs tens of milliseconds per MiB, so two 64 KiB segments a tick.
pub const SEAL_SLICE_BYTES: usize = 128 * 1024;
/// Stored bytes hashed per tick while unsealing (as `digest::SLICE_BYTES`).
pub const HASH_SLICE_BYTES: usize = crate::digest::SLICE_BYTES;

/// What a HEAD or GET answer's metadata says about sealing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SealMeta {
    pub signature: Option<String>,
    pub signature_key: Option<String>,
    pub encryption_key: Option<String>,
}

impl SealMeta {
    /// Reads the metadata by name (without the store's prefix).
    pub fn read(get: impl Fn(&str) -> Option<String>) -> SealMeta {
        SealMeta {
            signature: get(META_SIGNATURE),
            signature_key: get(META_SIGNATURE_KEY),
            encryption_key: get(META_ENCRYPTION_KEY),
        }
    }

    /// "signed (key k1), encrypted (key e1)", "not sealed": for `status` lines.
    pub fn describe(&self) -> String {
        let shown = |s: &Option<String>| {
            s.as_deref()
                .filter(|id| keys::valid_key_id(id))
                .unwrap_or("?")
                .to_string()
        };
        let mut parts = Vec::new();
        if self.signature.is_some() {
            parts.push(format!("signed (key {})", shown(&self.signature_key)));
        }
        if self.encryption_key.is_some() {
            parts.push(format!("encrypted (key {})", shown(&self.encryption_key)));
        }
        if parts.is_empty() {
            "not signed, not encrypted".into()
        } else {
            crate::text::join(&parts, ", ")
        }
    }
}

/// The metadata a sealed export adds to its PUT: the signature (with `export_signing_key`) and
/// the encryption key id (read from the object's own header). Empty when nothing is sealed.
pub fn export_metadata(
    settings: &SealSettings,
    object_key: &str,
    body: &[u8],
    sha256: &[u8; 32],
    applied_at: u64,
) -> Result<Vec<(&'static str, String)>, String> {
    let mut meta = Vec::new();
    if let Some(k) = &settings.signing_key {
        let sig = sign::sign(k, object_key, sha256, applied_at)
            .map_err(|e| format!("cannot sign the export: {e}"))?;
        meta.push((META_SIGNATURE, sig));
        meta.push((META_SIGNATURE_KEY, k.id.clone()));
    }
    if stream::is_sealed(body) {
        if let Ok(h) = stream::Header::parse(body) {
            meta.push((META_ENCRYPTION_KEY, h.key_id));
        }
    }
    Ok(meta)
}

/// The export side: turns hashed documents into encrypted ones, a slice per tick, when
/// `export_encryption_key` is set (a pass-through otherwise).
#[derive(Debug, Default)]
pub struct ExportSealer {
    key: Option<KeyEntry>,
    object_key: String,
    /// The encryption under way: the plaintext's digest, first-seen time and newest `updated_at`.
    running: Option<(Encryptor, [u8; 32], Times)>,
    /// The last document encrypted (its plaintext digest) and the result: an unchanged
    /// configuration applied again is not encrypted again.
    last: Option<([u8; 32], stream::Sealed)>,
}

impl ExportSealer {
    pub fn new(settings: &SealSettings, object_key: &str) -> ExportSealer {
        ExportSealer {
            key: settings.encryption_key.clone(),
            object_key: object_key.to_string(),
            running: None,
            last: None,
        }
    }

    /// Keeps the previous sealer's work when it encrypts with the same key for the same object.
    pub fn carry_over(&mut self, previous: ExportSealer) {
        if previous.key == self.key && previous.object_key == self.object_key {
            self.running = previous.running;
            self.last = previous.last;
        }
    }

    pub fn busy(&self) -> bool {
        self.running.is_some()
    }

    /// A hashed document: the document to export now (itself, or its encryption when it was
    /// quick or already done), or `None` while it is encrypted across ticks (`step`). A newer
    /// document replaces one still being encrypted.
    pub fn offer(&mut self, doc: Document) -> Option<Document> {
        let Some(key) = &self.key else {
            return Some(doc);
        };
        if let Some((_, plain, _)) = &self.running {
            if *plain == doc.sha256 {
                // The same document again (a filter configuration applied again): keep going.
                return None;
            }
        }
        self.running = None;
        if let Some((plain, sealed)) = &self.last {
            if *plain == doc.sha256 {
                return Some(sealed_doc(sealed, (doc.seen_at, doc.updated_at_ms)));
            }
        }
        let small = doc.body.len() <= SEAL_SLICE_BYTES;
        let enc = Encryptor::new(doc.body, &doc.sha256, &self.object_key, key);
        self.running = Some((enc, doc.sha256, (doc.seen_at, doc.updated_at_ms)));
        // A small document at once; a large one from the next tick on (this one hashed it).
        if small {
            self.step()
        } else {
            None
        }
    }

    /// Encrypts one more slice; the encrypted document once it is complete.
    pub fn step(&mut self) -> Option<Document> {
        let (enc, plain, seen_at) = self.running.as_mut()?;
        let sealed = enc.step(SEAL_SLICE_BYTES)?;
        let doc = sealed_doc(&sealed, *seen_at);
        self.last = Some((*plain, sealed));
        self.running = None;
        Some(doc)
    }
}

/// A plaintext document's first-seen time and newest `updated_at`, which its encryption keeps.
type Times = (u64, Option<u64>);

/// The encrypted document, with the plaintext's first-seen time and logical time.
fn sealed_doc(s: &stream::Sealed, (seen_at, updated_at_ms): Times) -> Document {
    Document {
        updated_at_ms,
        ..Document::with_digest(Rc::clone(&s.body), s.sha256, seen_at)
    }
}

/// Where an import's unsealing stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Unsealed {
    Working,
    /// The document to validate and apply (plaintext).
    Done(Vec<u8>),
    /// Why the object is refused; reads after "<object> is not applied: ".
    Failed(String),
}

#[derive(Debug)]
enum Phase {
    Digest(Digester),
    Decrypt(Box<Decryptor>),
    Finished,
}

/// The import side: hashes the downloaded bytes (a slice per step), checks `config-sha256` and
/// the signature, decrypts (a slice per step). Nothing is parsed before the signature verifies.
#[derive(Debug)]
pub struct Unsealer {
    verification_keys: Vec<KeyEntry>,
    decryption_keys: Vec<KeyEntry>,
    object_key: String,
    meta: SealMeta,
    applied_at: Option<u64>,
    config_sha256: Option<String>,
    phase: Phase,
    /// The key ids that verified and decrypted the object (for the "applied" line).
    pub verified_by: Option<String>,
    pub decrypted_with: Option<String>,
}

/// The parts of an object's metadata the unsealer checks.
#[derive(Clone, Debug, Default)]
pub struct ObjectMeta {
    pub seal: SealMeta,
    pub applied_at: Option<u64>,
    pub config_sha256: Option<String>,
}

/// How an import proceeds with a downloaded object.
#[derive(Debug)]
pub enum Start {
    /// Sealing is not configured on this importer and the object is not encrypted: the plain
    /// import path, with the bytes as downloaded.
    Plain(Vec<u8>),
    /// Hash, verify, decrypt: `Unsealer::step` until done.
    Unseal(Box<Unsealer>),
    /// Refused at once (reads after "<object> is not applied: ").
    Refused(String),
}

impl Unsealer {
    /// What to do with a downloaded object (its size already checked).
    pub fn start(
        settings: &SealSettings,
        object_key: &str,
        body: Vec<u8>,
        meta: ObjectMeta,
    ) -> Start {
        if settings.verification_keys.is_empty() && settings.decryption_keys.is_empty() {
            if stream::is_sealed(&body) {
                let id = stream::Header::parse(&body)
                    .map(|h| format!(" (key id {})", h.key_id))
                    .unwrap_or_default();
                return Start::Refused(format!(
                    "it is encrypted{id} and import_decryption_keys is not set"
                ));
            }
            return Start::Plain(body);
        }
        Start::Unseal(Box::new(Unsealer {
            verification_keys: settings.verification_keys.clone(),
            decryption_keys: settings.decryption_keys.clone(),
            object_key: object_key.to_string(),
            meta: meta.seal,
            applied_at: meta.applied_at,
            config_sha256: meta.config_sha256,
            phase: Phase::Digest(Digester::new(Rc::new(body))),
            verified_by: None,
            decrypted_with: None,
        }))
    }

    /// One slice of work: `budget` bytes decrypted, or 16 × `budget` (at least
    /// `HASH_SLICE_BYTES`) hashed: hashing is much cheaper than AES-GCM.
    pub fn step(&mut self, budget: usize) -> Unsealed {
        match std::mem::replace(&mut self.phase, Phase::Finished) {
            Phase::Finished => Unsealed::Failed("was already unsealed".into()),
            Phase::Digest(mut d) => match d.step(budget.saturating_mul(16).max(HASH_SLICE_BYTES)) {
                None => {
                    self.phase = Phase::Digest(d);
                    Unsealed::Working
                }
                Some(digest) => self.checked(Rc::clone(d.body()), &digest),
            },
            Phase::Decrypt(mut dec) => match dec.step(budget) {
                Opened::Working => {
                    self.phase = Phase::Decrypt(dec);
                    Unsealed::Working
                }
                Opened::Done(plain) => Unsealed::Done(plain),
                Opened::Failed(why) => Unsealed::Failed(format!("it {why}")),
            },
        }
    }

    /// The stored bytes are hashed: integrity, signature, then decryption or the bytes as they are.
    fn checked(&mut self, body: Rc<Vec<u8>>, digest: &[u8; 32]) -> Unsealed {
        if let Some(expected) = &self.config_sha256 {
            if !expected.trim().eq_ignore_ascii_case(&hex(digest)) {
                return Unsealed::Failed(
                    "its content does not match its config-sha256 metadata (corrupt or truncated)"
                        .into(),
                );
            }
        }
        if !self.verification_keys.is_empty() {
            let claimed = sign::Claimed {
                signature: self.meta.signature.as_deref(),
                key_id: self.meta.signature_key.as_deref(),
                applied_at: self.applied_at,
            };
            match sign::verify(&self.verification_keys, claimed, &self.object_key, digest) {
                Ok(id) => self.verified_by = Some(id),
                Err(why) => return Unsealed::Failed(why),
            }
        }
        let sealed = stream::is_sealed(&body);
        if self.decryption_keys.is_empty() {
            if sealed {
                return Unsealed::Failed(
                    "it is encrypted and import_decryption_keys is not set".into(),
                );
            }
            return Unsealed::Done(Rc::try_unwrap(body).unwrap_or_else(|b| b.as_ref().clone()));
        }
        if !sealed {
            return Unsealed::Failed(
                "it is not encrypted, and import_decryption_keys accepts only encrypted exports"
                    .into(),
            );
        }
        match Decryptor::new(body, &self.object_key, &self.decryption_keys) {
            Ok(dec) => {
                self.decrypted_with = Some(dec.key_id().to_string());
                self.phase = Phase::Decrypt(Box::new(dec));
                Unsealed::Working
            }
            Err(why) => Unsealed::Failed(format!("it {why}")),
        }
    }
}

/// Unseals a whole object at once (the native tool): the plaintext, or why it is refused.
pub fn unseal_all(
    settings: &SealSettings,
    object_key: &str,
    body: Vec<u8>,
    meta: ObjectMeta,
) -> Result<Vec<u8>, String> {
    match Unsealer::start(settings, object_key, body, meta) {
        Start::Refused(why) => Err(why),
        Start::Plain(body) => Ok(body),
        Start::Unseal(mut u) => loop {
            match u.step(usize::MAX) {
                Unsealed::Working => {}
                Unsealed::Done(plain) => return Ok(plain),
                Unsealed::Failed(why) => return Err(why),
            }
        },
    }
}

#[cfg(test)]
mod tests;
