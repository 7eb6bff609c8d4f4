//! A declarative configuration as the core handles it: its bytes (shared, never copied), their
//! SHA-256 (computed once: the content hash, the checksum header and the signature's payload hash
//! all reuse it), and the minimum checks every Kong declarative configuration passes.

use std::rc::Rc;

use crate::json::Value;
use sha2::{Digest, Sha256};

use crate::json::members::{check_json, first_byte, json_syntax_reason, object_members};

/// A configuration as the engine sees it. The body is shared (with the filter configuration and
/// the upload request), never copied; it is hashed once, here, and the digest reused for the
/// content hash, the checksum header and the signature's payload hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    pub body: Rc<Vec<u8>>,
    pub sha256: [u8; 32],
    pub sha256_hex: String,
    /// Host time (ms) when this worker first saw this content.
    pub seen_at: u64,
    /// The newest `updated_at` of the config's entities (ms; `crate::updated_at`), when it has
    /// any: Kong's logical time of the config, carried in the export's metadata.
    pub updated_at_ms: Option<u64>,
}

impl Document {
    pub fn new(body: Rc<Vec<u8>>, now: u64) -> Document {
        let sha256 = sha256(&body);
        Document::with_digest(body, sha256, now)
    }

    /// A document whose digest was computed in slices (`digest::Digester`).
    pub fn with_digest(body: Rc<Vec<u8>>, sha256: [u8; 32], now: u64) -> Document {
        Document {
            sha256_hex: hex(&sha256),
            sha256,
            body,
            seen_at: now,
            updated_at_ms: None,
        }
    }
}

/// The minimum a Kong declarative configuration has (the importer checks the same): a JSON object
/// with a non-empty string `_format_version`. Checked on the JSON text without building a tree
/// (`json::scan`); only `_format_version` is decoded. The reason reads after "the document" /
/// "the answer".
pub fn validate_declarative_json(text: &[u8]) -> Result<(), String> {
    if first_byte(text) != Some(b'{') {
        return Err("is not a JSON object".to_string());
    }
    check_json(text).map_err(|e| format!("is {}", json_syntax_reason(&e)))?;
    check_format_version(text)
}

/// `_format_version` of a valid JSON object text (the last occurrence wins, as in a map).
pub(crate) fn check_format_version(text: &[u8]) -> Result<(), String> {
    let members = object_members(text).ok_or_else(|| "is not a JSON object".to_string())?;
    match members
        .iter()
        .rev()
        .find(|(k, _, _)| k == "_format_version")
    {
        Some((_, start, end)) => match text.get(*start..*end).map(crate::json::parse) {
            Some(Ok(Value::String(s))) if !s.is_empty() => Ok(()),
            _ => Err("_format_version must be a non-empty string such as \"3.0\"".to_string()),
        },
        None => Err("is not a Kong declarative configuration (no _format_version)".to_string()),
    }
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&sha256(data))
}

pub fn hex(digest: &[u8; 32]) -> String {
    let mut s = String::with_capacity(64);
    for &b in digest {
        s.push(hex_digit(b >> 4));
        s.push(hex_digit(b & 15));
    }
    s
}

/// Standard base64 with padding (RFC 4648), for the `x-amz-checksum-sha256` header.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextet = |n: u32| char::from(ALPHABET.get((n & 63) as usize).copied().unwrap_or(b'='));
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sextet(n >> 18));
        out.push(sextet(n >> 12));
        out.push(if chunk.len() > 1 { sextet(n >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(n) } else { '=' });
    }
    out
}

/// The lowercase hex digit of a nibble (`n` < 16).
fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n), 16).unwrap_or('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_rfc_4648() {
        for (input, want) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foobar", "Zm9vYmFy"),
            (&[0xff, 0xfe, 0xfd][..], "//79"),
        ] {
            assert_eq!(base64(input), want);
        }
    }

    #[test]
    fn documents_hash_their_content() {
        let a = Document::new(Rc::new(b"{}".to_vec()), 1);
        let b = Document::new(Rc::new(b"{}".to_vec()), 2);
        assert_eq!(a.sha256_hex, b.sha256_hex);
        assert_eq!(
            a.sha256_hex,
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }
}
