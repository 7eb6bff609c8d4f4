//! Ed25519 signatures of exported objects (docs/sealed-exports.md, "Signatures").
//!
//! The signed message is a short text naming the object: its storage key, the SHA-256 of its
//! stored bytes (the ciphertext when it is encrypted), its `config-applied-at` and the signing
//! key's id. Signing a digest keeps the work per object constant (the digest is computed in
//! slices anyway), and the key in the message means an object cannot be replayed under another
//! key (another gateway version, another prefix).

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::hazmat::{raw_sign, raw_verify, ExpandedSecretKey};
use ed25519_dalek::{Signature, VerifyingKey};

use super::sha512::Sha512;

use super::keys::KeyEntry;
use crate::document::{base64, hex};

/// The first line of every signed message (its version).
pub const MESSAGE_V1: &str = "config-bridge export signature v1";

/// The canonical message: five lines, each ending with `\n`:
/// `config-bridge export signature v1`, `key: <object key>`, `sha256: <64 lowercase hex>`,
/// `applied-at: <decimal ms>`, `signing-key: <key id>`. A key with a control character (a line
/// break would make two messages alike) cannot be signed.
pub fn message(
    object_key: &str,
    sha256: &[u8; 32],
    applied_at: u64,
    key_id: &str,
) -> Result<String, String> {
    if object_key.chars().any(char::is_control) {
        return Err("the object key holds a control character".into());
    }
    Ok(format!(
        "{MESSAGE_V1}\nkey: {object_key}\nsha256: {}\napplied-at: {applied_at}\nsigning-key: {key_id}\n",
        hex(sha256)
    ))
}

/// The signature (base64 of 64 bytes) of an object, with `key`'s Ed25519 secret seed.
pub fn sign(
    key: &KeyEntry,
    object_key: &str,
    sha256: &[u8; 32],
    applied_at: u64,
) -> Result<String, String> {
    let msg = message(object_key, sha256, applied_at, &key.id)?;
    let expanded = expand(key);
    let public = VerifyingKey::from(&expanded);
    let sig = raw_sign::<Sha512>(&expanded, msg.as_bytes(), &public);
    Ok(base64(&sig.to_bytes()))
}

/// RFC 8032 §5.1.5: the secret scalar and nonce prefix from the seed's SHA-512 (what
/// `SigningKey::from_bytes` does with sha2's SHA-512; `sha512.rs` says why not that one).
fn expand(key: &KeyEntry) -> ExpandedSecretKey {
    ExpandedSecretKey::from_bytes(&Sha512::digest(key.bytes()))
}

/// The public key of an Ed25519 secret seed (what importers are given).
pub fn public_key(key: &KeyEntry) -> [u8; 32] {
    VerifyingKey::from(&expand(key)).to_bytes()
}

/// `VerifyingKey::verify_strict` with `sha512.rs`: a signature whose R or whose public key is of
/// small order is refused, then the ordinary check (which also refuses a non-canonical s).
fn verify_strict(public: &VerifyingKey, msg: &[u8], sig: &Signature) -> bool {
    let r = CompressedEdwardsY(*sig.r_bytes()).decompress();
    match r {
        Some(r) if !r.is_small_order() && !public.is_weak() => {
            raw_verify::<Sha512>(public, msg, sig).is_ok()
        }
        _ => false,
    }
}

/// What an object's metadata says about its signature.
#[derive(Clone, Copy, Debug)]
pub struct Claimed<'a> {
    pub signature: Option<&'a str>,
    pub key_id: Option<&'a str>,
    pub applied_at: Option<u64>,
}

/// Checks an object's signature against the trusted public keys; the id of the key that
/// verified it. Errors read after "<object> is not applied: " and never quote the signature.
pub fn verify(
    keys: &[KeyEntry],
    claimed: Claimed<'_>,
    object_key: &str,
    sha256: &[u8; 32],
) -> Result<String, String> {
    let (Some(sig), Some(key_id)) = (claimed.signature, claimed.key_id) else {
        return Err("it is not signed (no config-signature metadata) and import_verification_keys requires a signature".into());
    };
    let Some(key) = keys.iter().find(|k| k.id == key_id) else {
        let shown = if super::keys::valid_key_id(key_id) {
            key_id
        } else {
            "(invalid)"
        };
        return Err(format!(
            "it is signed with key id {shown}, which is not among import_verification_keys"
        ));
    };
    let bad = || {
        format!(
            "its signature does not verify under key {} (tampered, moved from another key, or signed by someone else)",
            key.id
        )
    };
    let applied_at = claimed.applied_at.ok_or_else(bad)?;
    let sig = crate::rs256::key::base64_decode(sig.trim())
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(bad)?;
    let public = VerifyingKey::from_bytes(key.bytes()).map_err(|_| bad())?;
    let msg = message(object_key, sha256, applied_at, &key.id)?;
    if !verify_strict(&public, msg.as_bytes(), &sig) {
        return Err(bad());
    }
    Ok(key.id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::sha256;

    fn seed(n: u8) -> KeyEntry {
        KeyEntry::new(&format!("sig-{n}"), [n; 32]).unwrap()
    }

    fn public(k: &KeyEntry) -> KeyEntry {
        KeyEntry::new(&k.id, public_key(k)).unwrap()
    }

    /// RFC 8032 §7.1, test 1 (empty message): the seed, its public key and the signature.
    #[test]
    fn ed25519_known_answer() {
        let seed: [u8; 32] =
            hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let k = KeyEntry::new("rfc", seed).unwrap();
        assert_eq!(
            hex(&public_key(&k)),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let expanded = expand(&k);
        let sig = raw_sign::<Sha512>(&expanded, b"", &VerifyingKey::from(&expanded)).to_bytes();
        let want = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
        let got: String = sig.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, want);
    }

    /// The signatures and public keys of `sha512.rs` are ed25519-dalek's own (sha2's SHA-512).
    #[test]
    fn signing_agrees_with_ed25519_dalek() {
        use ed25519_dalek::{Signer, SigningKey, Verifier};
        for n in [0u8, 1, 7, 200, 255] {
            let k = seed(n);
            let dalek = SigningKey::from_bytes(k.bytes());
            assert_eq!(public_key(&k), dalek.verifying_key().to_bytes());
            let digest = sha256(&[n]);
            let msg = message("p/3.9/config.json", &digest, 42, &k.id).unwrap();
            let ours = sign(&k, "p/3.9/config.json", &digest, 42).unwrap();
            assert_eq!(ours, base64(&dalek.sign(msg.as_bytes()).to_bytes()));
            let sig = Signature::from_bytes(&dalek.sign(msg.as_bytes()).to_bytes());
            assert!(dalek.verifying_key().verify(msg.as_bytes(), &sig).is_ok());
            assert!(verify_strict(&dalek.verifying_key(), msg.as_bytes(), &sig));
        }
    }

    /// The identity as public key and as R, with s = 0, passes the ordinary equation for any
    /// message; the strict check refuses it, as `VerifyingKey::verify_strict` does.
    #[test]
    fn small_order_points_are_refused() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let public = VerifyingKey::from_bytes(&identity).unwrap();
        let mut raw = [0u8; 64];
        raw[0] = 1;
        let sig = Signature::from_bytes(&raw);
        assert!(raw_verify::<Sha512>(&public, b"any", &sig).is_ok());
        assert!(public.verify_strict(b"any", &sig).is_err());
        assert!(!verify_strict(&public, b"any", &sig));
    }

    /// The canonical message, byte for byte (docs/sealed-exports.md quotes it).
    #[test]
    fn the_signed_message_is_canonical() {
        let m = message("p/3.9/config.json", &sha256(b"{}"), 1700000000123, "k1").unwrap();
        assert_eq!(
            m,
            "config-bridge export signature v1\nkey: p/3.9/config.json\nsha256: 44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\napplied-at: 1700000000123\nsigning-key: k1\n"
        );
        assert!(message("p/\n/config.json", &[0; 32], 1, "k1").is_err());
    }

    #[test]
    fn signatures_verify_only_for_the_same_object_key_digest_time_and_key() {
        let (k1, k2) = (seed(1), seed(2));
        let trusted = vec![public(&k2), public(&k1)];
        let digest = sha256(b"object");
        let key = "p/3.9/config.json";
        let sig = sign(&k1, key, &digest, 42).unwrap();
        let c = Claimed {
            signature: Some(&sig),
            key_id: Some("sig-1"),
            applied_at: Some(42),
        };
        assert_eq!(verify(&trusted, c, key, &digest).unwrap(), "sig-1");
        // Another object key (replayed under another version), another digest, another time.
        let moved = verify(&trusted, c, "p/3.8/config.json", &digest).unwrap_err();
        assert!(moved.contains("does not verify under key sig-1"), "{moved}");
        assert!(verify(&trusted, c, key, &sha256(b"other")).is_err());
        let later = Claimed {
            applied_at: Some(43),
            ..c
        };
        assert!(verify(&trusted, later, key, &digest).is_err());
        // The other trusted key's id on this signature.
        let swapped = Claimed {
            key_id: Some("sig-2"),
            ..c
        };
        assert!(verify(&trusted, swapped, key, &digest).is_err());
        // An unknown key id, unsigned, a flipped signature byte, junk.
        let unknown = Claimed {
            key_id: Some("sig-9"),
            ..c
        };
        let e = verify(&trusted, unknown, key, &digest).unwrap_err();
        assert!(e.contains("key id sig-9, which is not among"), "{e}");
        let unsigned = Claimed {
            signature: None,
            key_id: None,
            applied_at: Some(42),
        };
        assert!(verify(&trusted, unsigned, key, &digest)
            .unwrap_err()
            .contains("not signed"));
        let mut raw = crate::rs256::key::base64_decode(&sig).unwrap();
        raw[10] ^= 1;
        let flipped = base64(&raw);
        let f = Claimed {
            signature: Some(&flipped),
            ..c
        };
        assert!(verify(&trusted, f, key, &digest).is_err());
        let junk = Claimed {
            signature: Some("***"),
            ..c
        };
        assert!(verify(&trusted, junk, key, &digest).is_err());
        // A signature by a key that is not trusted, under a trusted key's id.
        let forged = sign(&KeyEntry::new("sig-1", [9; 32]).unwrap(), key, &digest, 42).unwrap();
        let fc = Claimed {
            signature: Some(&forged),
            ..c
        };
        assert!(verify(&trusted, fc, key, &digest).is_err());
        // Error lines never quote the signature.
        assert!(!moved.contains(&sig));
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
