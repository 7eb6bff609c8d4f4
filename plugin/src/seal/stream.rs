//! The encrypted object format (docs/sealed-exports.md, "Encrypted object format"): a header,
//! then the plaintext in fixed-size segments, each sealed with AES-256-GCM under a key derived
//! for this object (HKDF-SHA256 from the encryption key, a salt, the header and the object key)
//! and a nonce made of a 7-byte prefix, the segment counter and a last-segment flag (the STREAM
//! construction): a reordered, dropped, duplicated or appended segment, a truncated object, a
//! changed header or an object moved to another key fails authentication.
//!
//! ```text
//! offset      size  field
//! 0           6     magic "CBSEAL"
//! 6           1     format version, 0x01
//! 7           1     L, the key id's length (1..=64)
//! 8           L     key id (A-Z a-z 0-9 . _ -)
//! 8+L         4     S, plaintext bytes per segment, big-endian (4096..=16777216)
//! 12+L        32    salt
//! 44+L        ...   segments: AES-256-GCM ciphertext of S plaintext bytes + 16-byte tag; the
//!                   last holds 0..=S bytes (0 only for an empty plaintext) + its tag
//! ```
//!
//! The salt is synthetic: HMAC-SHA256 under a key derived from the encryption key, over the
//! object key and the plaintext's SHA-256. The same document under the same key and object key
//! always gives the same bytes (so an unchanged configuration is never uploaded twice, and
//! several exporters agree), and different documents get unrelated salts, keys and nonces; no
//! randomness from the host is needed (WASI's is not cryptographic on every host).
//!
//! Both directions are state machines that process a budget of bytes per `step`, so a large
//! document is sealed or opened across host ticks like `digest::Digester` hashes it.

use std::rc::Rc;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Tag};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::keys::{KeyEntry, MAX_KEY_ID};

pub const MAGIC: &[u8; 6] = b"CBSEAL";
pub const VERSION: u8 = 1;
/// Plaintext bytes per segment written by the filter and the native tool.
pub const DEFAULT_SEGMENT: u32 = 64 * 1024;
const MIN_SEGMENT: u32 = 4096;
const MAX_SEGMENT: u32 = 16 * 1024 * 1024;
const TAG: usize = 16;
const SALT: usize = 32;
const PREFIX: usize = 7;
const INFO_V1: &[u8] = b"config-bridge seal v1\0";
const SALT_KEY_V1: &[u8] = b"config-bridge seal v1 synthetic salt";

/// Whether `data` starts like an encrypted export.
pub fn is_sealed(data: &[u8]) -> bool {
    data.starts_with(MAGIC)
}

/// What an encrypted object's header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub key_id: String,
    pub segment: u32,
    pub salt: [u8; SALT],
    /// The header's length in bytes (where the first segment starts).
    pub len: usize,
}

impl Header {
    fn bytes(key_id: &str, segment: u32, salt: &[u8; SALT]) -> Vec<u8> {
        let mut h = Vec::with_capacity(44 + key_id.len());
        h.extend_from_slice(MAGIC);
        h.push(VERSION);
        h.push(key_id.len() as u8);
        h.extend_from_slice(key_id.as_bytes());
        h.extend_from_slice(&segment.to_be_bytes());
        h.extend_from_slice(salt);
        h
    }

    /// Reads the header of an encrypted object; the error reads after "it ".
    pub fn parse(data: &[u8]) -> Result<Header, String> {
        if !is_sealed(data) {
            return Err("is not an encrypted export (no CBSEAL header)".into());
        }
        let bad = || "has a malformed encryption header".to_string();
        if data.get(6) != Some(&VERSION) {
            return Err("is encrypted in an unknown format version".into());
        }
        let l = usize::from(*data.get(7).ok_or_else(bad)?);
        if l == 0 || l > MAX_KEY_ID {
            return Err(bad());
        }
        let id = data.get(8..8 + l).ok_or_else(bad)?;
        let key_id = std::str::from_utf8(id).map_err(|_| bad())?;
        if !super::keys::valid_key_id(key_id) {
            return Err(bad());
        }
        let seg: [u8; 4] = data
            .get(8 + l..12 + l)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(bad)?;
        let segment = u32::from_be_bytes(seg);
        if !(MIN_SEGMENT..=MAX_SEGMENT).contains(&segment) {
            return Err(bad());
        }
        let salt: [u8; SALT] = data
            .get(12 + l..12 + l + SALT)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(bad)?;
        Ok(Header {
            key_id: key_id.to_string(),
            segment,
            salt,
            len: 12 + l + SALT,
        })
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes keys of any length.
        Err(_) => return [0; 32],
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The synthetic salt of a document under `key` at `object_key`.
fn synthetic_salt(key: &KeyEntry, object_key: &str, plain_sha256: &[u8; 32]) -> [u8; SALT] {
    let salt_key = hmac(key.bytes(), &[SALT_KEY_V1]);
    let len = (object_key.len() as u64).to_be_bytes();
    hmac(&salt_key, &[&len, object_key.as_bytes(), plain_sha256])
}

/// HKDF-SHA256 (RFC 5869) of the object's segment key and nonce prefix: salt = the header's
/// salt, IKM = the encryption key, info = "config-bridge seal v1\0" || header || u64 BE length of
/// the object key || object key; 39 bytes of output: the AES-256 key, then the nonce prefix.
fn derive(
    key: &[u8; 32],
    header: &[u8],
    salt: &[u8; SALT],
    object_key: &str,
) -> (Aes256Gcm, [u8; PREFIX]) {
    let prk = hmac(salt, &[key]);
    let len = (object_key.len() as u64).to_be_bytes();
    let info: [&[u8]; 4] = [INFO_V1, header, &len, object_key.as_bytes()];
    let mut t1_parts: Vec<&[u8]> = info.to_vec();
    t1_parts.push(&[1]);
    let t1 = hmac(&prk, &t1_parts);
    let mut t2_parts: Vec<&[u8]> = vec![&t1];
    t2_parts.extend_from_slice(&info);
    t2_parts.push(&[2]);
    let t2 = hmac(&prk, &t2_parts);
    let mut prefix = [0u8; PREFIX];
    prefix.copy_from_slice(t2.get(..PREFIX).unwrap_or(&[0; PREFIX]));
    let cipher = Aes256Gcm::new(&t1.into());
    (cipher, prefix)
}

fn nonce(
    prefix: &[u8; PREFIX],
    counter: u32,
    last: bool,
) -> aes_gcm::Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[..PREFIX].copy_from_slice(prefix);
    n[PREFIX..PREFIX + 4].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n.into()
}

/// The number of segments of a plaintext of `len` bytes (an empty one has one, empty).
fn segments_for(len: usize, segment: usize) -> usize {
    len.div_ceil(segment).max(1)
}

/// Progress only: never key material.
macro_rules! progress_debug {
    ($t:ident, $input:ident) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let (pos, len) = (self.pos, self.$input.len());
                write!(f, "{}({pos} of {len} bytes)", stringify!($t))
            }
        }
    };
}
progress_debug!(Encryptor, plain);
progress_debug!(Decryptor, sealed);

/// A finished encryption: the object's bytes and their SHA-256.
#[derive(Clone, Debug)]
pub struct Sealed {
    pub body: Rc<Vec<u8>>,
    pub sha256: [u8; 32],
    pub key_id: String,
}

/// Encrypts a shared plaintext a budget of bytes per step, hashing what it writes.
pub struct Encryptor {
    plain: Rc<Vec<u8>>,
    pos: usize,
    counter: u32,
    segments: usize,
    segment: usize,
    cipher: Aes256Gcm,
    prefix: [u8; PREFIX],
    out: Vec<u8>,
    hasher: Sha256,
    key_id: String,
    done: Option<Sealed>,
}

impl Encryptor {
    /// `plain_sha256`: the plaintext's digest (already computed for the export).
    pub fn new(
        plain: Rc<Vec<u8>>,
        plain_sha256: &[u8; 32],
        object_key: &str,
        key: &KeyEntry,
    ) -> Encryptor {
        Encryptor::with_segment(plain, plain_sha256, object_key, key, DEFAULT_SEGMENT)
    }

    pub fn with_segment(
        plain: Rc<Vec<u8>>,
        plain_sha256: &[u8; 32],
        object_key: &str,
        key: &KeyEntry,
        segment: u32,
    ) -> Encryptor {
        let segment = segment.clamp(MIN_SEGMENT, MAX_SEGMENT);
        let salt = synthetic_salt(key, object_key, plain_sha256);
        let header = Header::bytes(&key.id, segment, &salt);
        let (cipher, prefix) = derive(key.bytes(), &header, &salt, object_key);
        let seg = segment as usize;
        let segments = segments_for(plain.len(), seg);
        let mut out = Vec::with_capacity(header.len() + plain.len() + segments * TAG);
        out.extend_from_slice(&header);
        let mut hasher = Sha256::new();
        hasher.update(&header);
        Encryptor {
            plain,
            pos: 0,
            counter: 0,
            segments,
            segment: seg,
            cipher,
            prefix,
            out,
            hasher,
            key_id: key.id.clone(),
            done: None,
        }
    }

    /// Encrypts whole segments until at least `budget` plaintext bytes (at least one segment)
    /// are done; `Some` once the object is complete (again at every later step).
    pub fn step(&mut self, budget: usize) -> Option<Sealed> {
        let mut spent = 0usize;
        while self.done.is_none() && (spent < budget.max(1)) {
            let i = self.counter as usize;
            let last = i + 1 >= self.segments;
            let end = self.pos.saturating_add(self.segment).min(self.plain.len());
            let chunk = self.plain.get(self.pos..end).unwrap_or_default();
            let start = self.out.len();
            self.out.extend_from_slice(chunk);
            let n = nonce(&self.prefix, self.counter, last);
            let written = self.out.get_mut(start..).unwrap_or_default();
            // Encryption cannot fail below GCM's 64 GiB per message limit (segments are ≤ 16 MiB).
            let tag = self
                .cipher
                .encrypt_inout_detached(&n, &[], written.into())
                .unwrap_or_default();
            self.out.extend_from_slice(&tag);
            if let Some(seg) = self.out.get(start..) {
                self.hasher.update(seg);
            }
            spent += chunk.len().max(1);
            self.pos = end;
            self.counter = self.counter.saturating_add(1);
            if last {
                let body = Rc::new(std::mem::take(&mut self.out));
                let sha256 = std::mem::take(&mut self.hasher).finalize().into();
                self.done = Some(Sealed {
                    body,
                    sha256,
                    key_id: self.key_id.clone(),
                });
            }
        }
        self.done.clone()
    }

    /// Plaintext bytes encrypted so far.
    pub fn position(&self) -> usize {
        self.pos
    }
}

/// Where a decryption stands after a step.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    Working,
    /// The plaintext (handed out once).
    Done(Vec<u8>),
    /// The reason reads after "it " (never quotes key material).
    Failed(String),
}

/// Decrypts an encrypted object a budget of bytes per step.
pub struct Decryptor {
    sealed: Rc<Vec<u8>>,
    pos: usize,
    counter: u32,
    segments: usize,
    segment: usize,
    cipher: Aes256Gcm,
    prefix: [u8; PREFIX],
    out: Vec<u8>,
    key_id: String,
    finished: bool,
}

impl Decryptor {
    /// Reads the header and picks the key it names among `keys`; the error reads after "it ".
    pub fn new(
        sealed: Rc<Vec<u8>>,
        object_key: &str,
        keys: &[KeyEntry],
    ) -> Result<Decryptor, String> {
        let header = Header::parse(&sealed)?;
        let key = keys.iter().find(|k| k.id == header.key_id).ok_or_else(|| {
            format!(
                "is encrypted with key id {}, which is not among import_decryption_keys",
                header.key_id
            )
        })?;
        let head = sealed.get(..header.len).unwrap_or_default();
        let (cipher, prefix) = derive(key.bytes(), head, &header.salt, object_key);
        let seg = header.segment as usize;
        let rest = sealed.len().saturating_sub(header.len);
        let full = seg + TAG;
        let (k, rem) = (rest / full, rest % full);
        let segments = match rem {
            0 if k > 0 => k,
            r if r >= TAG => k + 1,
            _ => return Err("is truncated (not a whole number of encrypted segments)".into()),
        };
        if u32::try_from(segments).is_err() {
            return Err("has too many segments".into());
        }
        let plain = rest.saturating_sub(segments.saturating_mul(TAG));
        Ok(Decryptor {
            pos: header.len,
            counter: 0,
            segments,
            segment: seg,
            cipher,
            prefix,
            out: Vec::with_capacity(plain),
            key_id: header.key_id,
            sealed,
            finished: false,
        })
    }

    /// The id of the key the object is encrypted with.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Decrypts whole segments until at least `budget` bytes (at least one segment) are done.
    pub fn step(&mut self, budget: usize) -> Opened {
        if self.finished {
            return Opened::Failed("was already decrypted".into());
        }
        let mut spent = 0usize;
        while spent < budget.max(1) {
            let i = self.counter as usize;
            let last = i + 1 >= self.segments;
            let len = if last {
                self.sealed.len().saturating_sub(self.pos)
            } else {
                self.segment + TAG
            };
            let end = self.pos.saturating_add(len);
            let Some(seg) = self.sealed.get(self.pos..end) else {
                return self.fail("is truncated".into());
            };
            let (ct, tag) = seg.split_at(seg.len().saturating_sub(TAG));
            let start = self.out.len();
            self.out.extend_from_slice(ct);
            let n = nonce(&self.prefix, self.counter, last);
            let Ok(tag) = Tag::try_from(tag) else {
                return self.fail("is truncated".into());
            };
            let buf = self.out.get_mut(start..).unwrap_or_default();
            if self
                .cipher
                .decrypt_inout_detached(&n, &[], buf.into(), &tag)
                .is_err()
            {
                let why = format!(
                    "does not decrypt: segment {} of {} fails authentication under key {} (wrong key, tampered, truncated, reordered, or moved from another object key)",
                    i + 1,
                    self.segments,
                    self.key_id
                );
                return self.fail(why);
            }
            spent += len;
            self.pos = end;
            self.counter = self.counter.saturating_add(1);
            if last {
                self.finished = true;
                return Opened::Done(std::mem::take(&mut self.out));
            }
        }
        Opened::Working
    }

    fn fail(&mut self, why: String) -> Opened {
        self.finished = true;
        self.out = Vec::new();
        Opened::Failed(why)
    }
}

/// Decrypts a whole object at once (the native tool, tests).
pub fn open_all(
    sealed: Rc<Vec<u8>>,
    object_key: &str,
    keys: &[KeyEntry],
) -> Result<Vec<u8>, String> {
    let mut d = Decryptor::new(sealed, object_key, keys)?;
    match d.step(usize::MAX) {
        Opened::Done(v) => Ok(v),
        Opened::Failed(e) => Err(e),
        Opened::Working => Err("did not finish decrypting".into()),
    }
}

/// Encrypts a whole document at once (the native tool, tests).
pub fn seal_all(plain: Rc<Vec<u8>>, object_key: &str, key: &KeyEntry) -> Sealed {
    let digest = crate::document::sha256(&plain);
    let mut e = Encryptor::new(plain, &digest, object_key, key);
    loop {
        if let Some(s) = e.step(usize::MAX) {
            return s;
        }
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
