//! Keys of sealed exports as settings give them: `<key id>:<base64 of 32 bytes>`, one key or a
//! list (comma- or whitespace-separated, or a JSON array of such strings). Key ids name keys in
//! object metadata and log lines; key bytes never leave this module's types (their `Debug` prints
//! the id only).

use std::fmt;

/// The longest key id (it travels in object metadata and in the encrypted object's header).
pub const MAX_KEY_ID: usize = 64;

/// Whether `id` is a valid key id: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A 32-byte key with its id: an AES-256 key, an Ed25519 secret seed or an Ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub id: String,
    bytes: [u8; 32],
}

impl KeyEntry {
    pub fn new(id: &str, bytes: [u8; 32]) -> Result<KeyEntry, String> {
        if !valid_key_id(id) {
            return Err(format!(
                "a key id must be 1 to {MAX_KEY_ID} of A-Z a-z 0-9 . _ -"
            ));
        }
        Ok(KeyEntry {
            id: id.to_string(),
            bytes,
        })
    }

    /// `<key id>:<base64 of 32 bytes>`. The error never quotes the key material.
    pub fn parse(text: &str) -> Result<KeyEntry, String> {
        let Some((id, b64)) = text.trim().split_once(':') else {
            return Err("expected <key id>:<base64 of 32 bytes>".into());
        };
        let bytes = crate::rs256::key::base64_decode(b64.trim())
            .ok_or_else(|| "the key is not valid base64".to_string())?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "the key must be 32 bytes (44 base64 characters)".to_string())?;
        KeyEntry::new(id.trim(), bytes)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyEntry({}: ***)", self.id)
    }
}

/// A list of keys; ids must be unique.
pub fn parse_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Vec<KeyEntry>, String> {
    let mut keys: Vec<KeyEntry> = Vec::new();
    for item in items
        .into_iter()
        .flat_map(|s| s.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|s| !s.is_empty())
    {
        let k = KeyEntry::parse(item)?;
        if keys.iter().any(|e| e.id == k.id) {
            return Err(format!("key id {} appears twice", k.id));
        }
        keys.push(k);
    }
    if keys.is_empty() {
        return Err("holds no key".into());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::base64;
    use crate::rs256::key::base64_decode as decode_base64;

    #[test]
    fn base64_round_trips_and_refuses_junk() {
        for n in 0..70usize {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 5) as u8).collect();
            let enc = base64(&data);
            assert_eq!(decode_base64(&enc), Some(data.clone()), "{enc}");
            assert_eq!(decode_base64(enc.trim_end_matches('=')), Some(data));
        }
        assert_eq!(decode_base64("Zm9v!"), None);
    }

    #[test]
    fn entries_and_lists_parse_and_never_quote_keys() {
        let key = base64(&[7u8; 32]);
        let k = KeyEntry::parse(&format!("k-2026.a:{key}")).unwrap();
        assert_eq!(k.id, "k-2026.a");
        assert_eq!(k.bytes(), &[7u8; 32]);
        assert!(!format!("{k:?}").contains(&key));
        for bad in [
            key.clone(),
            format!("bad id:{key}"),
            format!(":{key}"),
            format!("{}:{key}", "x".repeat(65)),
            format!("k:{}", base64(&[1u8; 31])),
            "k:not base64!".to_string(),
        ] {
            let e = KeyEntry::parse(&bad).unwrap_err();
            assert!(!e.contains(&key), "{e}");
        }
        let list = parse_list([format!("a:{key}, b:{key}\nc:{key}").as_str()]).unwrap();
        let ids: Vec<&str> = list.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert!(parse_list([format!("a:{key},a:{key}").as_str()])
            .unwrap_err()
            .contains("twice"));
        assert!(parse_list([" , "]).is_err());
    }
}
