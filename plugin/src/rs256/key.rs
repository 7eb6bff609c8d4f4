//! An RSA private key from a PEM block (PKCS#8 `PRIVATE KEY`, what Google issues, or PKCS#1
//! `RSA PRIVATE KEY`) for the GCS service-account JWT (docs/gcs.md).
//!
//! The DER is read here, by hand, instead of through the `pkcs1`/`pkcs8`/`der` crates: the key is
//! a fixed shape (a SEQUENCE of INTEGERs, optionally wrapped in PKCS#8's PrivateKeyInfo) and
//! those crates added ~60 KB to the `.wasm` (docs/gcs.md). The parts are checked against each
//! other in `sign.rs` (`SigningKeyParts::new`). Errors never quote the key.

/// rsaEncryption, 1.2.840.113549.1.1.1, as a DER OBJECT IDENTIFIER.
const RSA_ENCRYPTION_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;

/// The key of the first PEM block of `pem`, or why there is none (never quoting it).
pub fn private_key_from_pem(pem: &str) -> Result<(KeyComponents, Vec<u8>), String> {
    let (label, der) = pem_decode(pem).ok_or("is not a PEM private key")?;
    let pkcs1 = match label.as_str() {
        "PRIVATE KEY" => pkcs8_inner(&der)?,
        "RSA PRIVATE KEY" => der.as_slice(),
        "EC PRIVATE KEY" => return Err("is not an RSA key (RS256 needs one)".into()),
        _ => return Err("is not a PEM private key (PKCS#8 or PKCS#1)".into()),
    };
    let key = pkcs1_private_key(pkcs1).ok_or("is not a valid RSA private key")??;
    Ok((key, der))
}

/// PrivateKeyInfo ::= SEQUENCE { version INTEGER, algorithm SEQUENCE { OID, params }, privateKey
/// OCTET STRING } → the PKCS#1 RSAPrivateKey inside.
fn pkcs8_inner(der: &[u8]) -> Result<&[u8], String> {
    let invalid = || "is not a valid RSA private key".to_string();
    let mut outer = Reader::new(Reader::new(der).take(SEQUENCE).ok_or_else(invalid)?);
    outer.take(INTEGER).ok_or_else(invalid)?;
    let algorithm = outer.take(SEQUENCE).ok_or_else(invalid)?;
    if !algorithm.starts_with(RSA_ENCRYPTION_OID) {
        return Err("is not an RSA key (RS256 needs one)".into());
    }
    outer.take(OCTET_STRING).ok_or_else(invalid)
}

/// The integers of a two-prime RSA private key, big-endian without leading zero bytes. `d` is
/// not kept: the signature uses the CRT values (`dp`, `dq`, `qinv`).
pub struct KeyComponents {
    pub n: Vec<u8>,
    pub e: Vec<u8>,
    pub p: Vec<u8>,
    pub q: Vec<u8>,
    pub dp: Vec<u8>,
    pub dq: Vec<u8>,
    pub qinv: Vec<u8>,
}

/// RSAPrivateKey ::= SEQUENCE { version, n, e, d, p, q, dP, dQ, qInv } (two primes only).
/// `None`: not that shape; `Some(Err)`: not a key this filter signs with.
fn pkcs1_private_key(der: &[u8]) -> Option<Result<KeyComponents, String>> {
    let mut r = Reader::new(Reader::new(der).take(SEQUENCE)?);
    if !unsigned(r.take(INTEGER)?).is_empty() {
        // Version 1 is multi-prime (RFC 8017 A.1.2): not what Google issues.
        return Some(Err("is a multi-prime RSA key (unsupported)".into()));
    }
    let mut int = || Some(unsigned(r.take(INTEGER)?).to_vec());
    let (n, e, _d) = (int()?, int()?, int()?);
    let (p, q, dp, dq, qinv) = (int()?, int()?, int()?, int()?, int()?);
    let bits = n.len().checked_mul(8)?;
    if !(2048..=8192).contains(&bits) {
        return Some(Err(
            "is an RSA key of an unsupported size (2048 to 8192 bits)".into(),
        ));
    }
    Some(Ok(KeyComponents {
        n,
        e,
        p,
        q,
        dp,
        dq,
        qinv,
    }))
}

/// A DER INTEGER's content as an unsigned big-endian number (leading zero bytes dropped).
fn unsigned(mut bytes: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

/// Reads DER tag-length-value items one after another.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    /// The content of the next item if its tag is `tag`.
    fn take(&mut self, tag: u8) -> Option<&'a [u8]> {
        let (&t, rest) = self.rest.split_first()?;
        if t != tag {
            return None;
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let (len_bytes, after) = rest.split_at_checked(n)?;
            rest = after;
            len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        let (content, after) = rest.split_at_checked(len)?;
        self.rest = after;
        Some(content)
    }
}

/// The first PEM block: (label, DER bytes).
fn pem_decode(pem: &str) -> Option<(String, Vec<u8>)> {
    let begin = crate::text::find(pem, "-----BEGIN ")?;
    let rest = pem.get(begin + 11..)?;
    let label_end = crate::text::find(rest, "-----")?;
    let label = rest.get(..label_end)?.to_string();
    let body = rest.get(label_end + 5..)?;
    let end = crate::text::find(body, "-----END ")?;
    let b64 = body.get(..end)?;
    Some((label, base64_decode(b64)?))
}

/// Standard base64 (padding optional, whitespace ignored).
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_short_long_and_truncated() {
        let mut r = Reader::new(&[0x02, 0x01, 0x05, 0x04, 0x81, 0x02, 0xaa, 0xbb]);
        assert_eq!(r.take(INTEGER), Some(&[0x05][..]));
        assert_eq!(r.take(OCTET_STRING), Some(&[0xaa, 0xbb][..]));
        assert_eq!(r.take(INTEGER), None);
        assert_eq!(Reader::new(&[0x02, 0x05, 0x01]).take(INTEGER), None);
        assert_eq!(
            Reader::new(&[0x02, 0x85, 1, 1, 1, 1, 1]).take(INTEGER),
            None
        );
        assert_eq!(Reader::new(&[0x30, 0x01, 0x00]).take(INTEGER), None);
    }

    #[test]
    fn leading_zero_bytes_are_not_part_of_the_number() {
        assert_eq!(unsigned(&[0, 0, 0x80, 1]), &[0x80, 1]);
        assert_eq!(unsigned(&[0]), &[0u8; 0]);
    }

    #[test]
    fn wrong_shapes_are_refused_without_quoting_the_key() {
        let pem = |label: &str, body: &str| {
            format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
        };
        let err = |r: Result<(KeyComponents, Vec<u8>), String>| r.err().unwrap_or_default();
        assert_eq!(
            err(private_key_from_pem("nothing")),
            "is not a PEM private key"
        );
        assert_eq!(
            err(private_key_from_pem(&pem("EC PRIVATE KEY", "AAAA"))),
            "is not an RSA key (RS256 needs one)"
        );
        // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.2.840.10045.2.1 (EC) }, OCTET STRING {} }
        let ec_pkcs8 = [
            0x30, 0x10, 0x02, 0x01, 0x00, 0x30, 0x09, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
            0x02, 0x01, 0x04, 0x00,
        ];
        let b64 = crate::document::base64(&ec_pkcs8);
        assert_eq!(
            err(private_key_from_pem(&pem("PRIVATE KEY", &b64))),
            "is not an RSA key (RS256 needs one)"
        );
        assert_eq!(
            err(private_key_from_pem(&pem("PRIVATE KEY", "MAA="))),
            "is not a valid RSA private key"
        );
        assert_eq!(
            err(private_key_from_pem(&pem("CERTIFICATE", "MAA="))),
            "is not a PEM private key (PKCS#8 or PKCS#1)"
        );
    }
}
