//! Body integrity as S3 checks it: `x-amz-content-sha256`, `Content-MD5`, `x-amz-checksum-*`,
//! and the `aws-chunked` framing that `STREAMING-UNSIGNED-PAYLOAD-TRAILER` uses.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// An integrity failure: `(status, code, message)`.
pub type Rejection = (u16, &'static str, String);

/// A decoded body and its trailing headers.
pub type Decoded = (Vec<u8>, Vec<(String, String)>);

pub const STREAMING_UNSIGNED_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";

/// The checksum algorithms S3 accepts in `x-amz-checksum-<alg>`.
pub const CHECKSUM_ALGORITHMS: [&str; 5] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

/// The body as the object will store it, after undoing `aws-chunked` framing; also returns the
/// trailing headers (checksums sent after the body).
pub fn decode_body(content_sha256: &str, body: &[u8]) -> Result<Decoded, Rejection> {
    match content_sha256 {
        "UNSIGNED-PAYLOAD" => Ok((body.to_vec(), Vec::new())),
        STREAMING_UNSIGNED_TRAILER => decode_aws_chunked(body),
        s if s.starts_with("STREAMING-") => Err((
            501,
            "NotImplemented",
            format!("This mock does not implement {s} (signed aws-chunked payloads)."),
        )),
        s if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            let actual = hex::encode(Sha256::digest(body));
            if actual.eq_ignore_ascii_case(s) {
                Ok((body.to_vec(), Vec::new()))
            } else {
                Err((
                    400,
                    "XAmzContentSHA256Mismatch",
                    "The provided 'x-amz-content-sha256' header does not match what was computed."
                        .into(),
                ))
            }
        }
        _ => Err((
            400,
            "InvalidArgument",
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER \
             or a valid sha256 value."
                .into(),
        )),
    }
}

/// `hex-size\r\ndata\r\n ... 0\r\nname:value\r\n\r\n`
fn decode_aws_chunked(body: &[u8]) -> Result<Decoded, Rejection> {
    let bad = || -> Rejection {
        (
            400,
            "IncompleteBody",
            "The request body is not valid aws-chunked encoding.".into(),
        )
    };
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = find_crlf(rest).ok_or_else(bad)?;
        let size_line = std::str::from_utf8(&rest[..line_end]).map_err(|_| bad())?;
        // Unsigned chunks carry no `;chunk-signature=` extension, but tolerate one.
        let size_hex = size_line.split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_hex.trim(), 16).map_err(|_| bad())?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            break;
        }
        if rest.len() < size + 2 || &rest[size..size + 2] != b"\r\n" {
            return Err(bad());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
    let mut trailers = Vec::new();
    let text = std::str::from_utf8(rest).map_err(|_| bad())?;
    for line in text.split("\r\n") {
        if line.is_empty() {
            continue;
        }
        let (k, v) = line.split_once(':').ok_or_else(bad)?;
        trailers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok((out, trailers))
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// Checks `Content-MD5` and every `x-amz-checksum-*` among `headers` against `body`.
pub fn check_digests(headers: &[(String, String)], body: &[u8]) -> Result<(), Rejection> {
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if name == "content-md5" {
            let sent = B64.decode(value.trim()).map_err(|_| {
                (
                    400,
                    "InvalidDigest",
                    "The Content-MD5 you specified was invalid.".to_string(),
                )
            })?;
            if sent.len() != 16 {
                return Err((
                    400,
                    "InvalidDigest",
                    "The Content-MD5 you specified was invalid.".into(),
                ));
            }
            if sent != Md5::digest(body).as_slice() {
                return Err((
                    400,
                    "BadDigest",
                    "The Content-MD5 you specified did not match what we received.".into(),
                ));
            }
        } else if let Some(alg) = name.strip_prefix("x-amz-checksum-") {
            if alg == "type" || alg == "mode" || alg == "algorithm" {
                continue;
            }
            let Some(actual) = checksum(alg, body) else {
                return Err((
                    400,
                    "InvalidRequest",
                    format!("Unsupported checksum algorithm: {alg}"),
                ));
            };
            if value.trim() != actual {
                return Err((
                    400,
                    "BadDigest",
                    format!(
                        "The {} you specified did not match the calculated checksum.",
                        alg.to_ascii_uppercase()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The base64 checksum S3 would compute for `alg`.
pub fn checksum(alg: &str, body: &[u8]) -> Option<String> {
    let raw: Vec<u8> = match alg {
        "crc32" => crc32fast::hash(body).to_be_bytes().to_vec(),
        "crc32c" => crc32c::crc32c(body).to_be_bytes().to_vec(),
        "crc64nvme" => crc64nvme(body).to_be_bytes().to_vec(),
        "sha1" => Sha1::digest(body).to_vec(),
        "sha256" => Sha256::digest(body).to_vec(),
        _ => return None,
    };
    Some(B64.encode(raw))
}

/// CRC-64/NVME (reflected, poly 0x9a6c9329ac4bc9b5, init and xorout all ones); bitwise because
/// no maintained small crate offers it and bodies here are small.
pub fn crc64nvme(data: &[u8]) -> u64 {
    const POLY: u64 = 0x9a6c_9329_ac4b_c9b5;
    let mut crc = u64::MAX;
    for &b in data {
        crc ^= b as u64;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The quoted MD5 ETag of a single-part upload.
pub fn etag(body: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Md5::digest(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_their_catalogue_check_values() {
        assert_eq!(crc64nvme(b"123456789"), 0xae8b_1486_0a79_9888);
        assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn aws_chunked_bodies_decode_with_their_trailers() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
        let (data, trailers) = decode_body(STREAMING_UNSIGNED_TRAILER, body).unwrap();
        assert_eq!(data, b"hello world");
        assert_eq!(
            trailers,
            vec![("x-amz-checksum-crc32".to_string(), "DUoRhQ==".to_string())]
        );
        assert_eq!(checksum("crc32", b"hello world").unwrap(), "DUoRhQ==");
        assert!(check_digests(&trailers, &data).is_ok());
        assert_eq!(
            check_digests(&trailers, b"hello").unwrap_err().1,
            "BadDigest"
        );
        assert_eq!(
            decode_body(STREAMING_UNSIGNED_TRAILER, b"5\r\nhel")
                .unwrap_err()
                .1,
            "IncompleteBody"
        );
    }

    #[test]
    fn content_md5_is_checked() {
        let good = vec![("content-md5".to_string(), B64.encode(Md5::digest(b"abc")))];
        assert!(check_digests(&good, b"abc").is_ok());
        assert_eq!(check_digests(&good, b"abd").unwrap_err().1, "BadDigest");
        let junk = vec![("content-md5".to_string(), "!!".to_string())];
        assert_eq!(check_digests(&junk, b"abc").unwrap_err().1, "InvalidDigest");
    }
}
