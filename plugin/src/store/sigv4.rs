//! SigV4 signing for S3 requests, written from AWS's specification ("Signature Version 4 signing
//! process", and S3's "Authenticating Requests (AWS Signature Version 4)").
//!
//! Hand-written rather than `aws-sigv4` on purpose: `aws-sigv4` (with the `http` crate and the
//! time formatting it pulls in) was 147 KB of a 476 KB module, and module size is start-up time in
//! every gateway worker (docs/host-behaviours.md). What S3 needs is small: single URI encoding, no
//! path normalisation, the payload hash precomputed. It is checked against AWS's published S3
//! examples (below), against the harness's independent verifier, and against s3s-fs and moto in CI.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::document::hex;
use crate::http_url::percent_encode;
use crate::settings::aws::AwsKeys;

/// 9999-12-31T23:59:59.999Z: the last instant a SigV4 date (`YYYYMMDD`) can express.
const MAX_SIGNABLE_MS: u64 = 253_402_300_799_999;

/// Signs with SigV4 for service `s3` with `keys` in `region`, at `now_ms` (the store's time:
/// the caller corrects this node's clock skew); returns the headers to add (`x-amz-date`,
/// `x-amz-content-sha256`, `x-amz-security-token`, `authorization`). Every header in `headers`
/// is signed, so it must be sent exactly as given. `url` is `scheme://authority/path?query` with
/// the path already percent-encoded (once) as it is sent.
pub fn sign_v4(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    payload_sha256_hex: &str,
    keys: &AwsKeys,
    region: &str,
    now_ms: u64,
) -> Result<Vec<(String, String)>, String> {
    if now_ms > MAX_SIGNABLE_MS {
        return Err("cannot sign the request: the host clock is past year 9999".to_string());
    }
    let (date, amz_date) = amz_dates(now_ms);
    let mut added = vec![
        ("x-amz-date".to_string(), amz_date.clone()),
        (
            "x-amz-content-sha256".to_string(),
            payload_sha256_hex.to_string(),
        ),
    ];
    if let Some(token) = &keys.session_token {
        added.push((
            "x-amz-security-token".to_string(),
            token.expose().to_string(),
        ));
    }
    let (canonical_request, signed_headers) =
        canonical_request(method, url, headers, &added, payload_sha256_hex)?;
    let scope = format!("{date}/{region}/s3/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()).into())
    );
    let key = signing_key(keys, &date, region);
    let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
    added.push((
        "authorization".to_string(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            keys.access_key_id.expose()
        ),
    ));
    Ok(added)
}

/// The canonical request and its signed-header list: every header (given and added),
/// lower-cased, trimmed, sorted; the path as sent; the query canonicalised.
fn canonical_request(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    added: &[(String, String)],
    payload_sha256_hex: &str,
) -> Result<(String, String), String> {
    let path_and_query = crate::text::split_once(url, "://")
        .and_then(|(_, rest)| rest.find('/').and_then(|i| rest.get(i..)))
        .unwrap_or("/");
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut all: Vec<(String, String)> = headers
        .iter()
        .chain(added.iter())
        .map(|(k, v)| (k.to_ascii_lowercase(), canonical_value(v)))
        .collect();
    crate::sort::sort(&mut all);
    if all.windows(2).any(|w| matches!(w, [a, b] if a.0 == b.0)) {
        return Err("cannot sign the request: a header is given twice".to_string());
    }
    let names = all.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>();
    let signed_headers = crate::text::join(&names, ";");
    let canonical_headers: String = all.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let canonical_request = format!(
        "{method}\n{path}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_sha256_hex}",
        canonical_query(query)
    );
    Ok((canonical_request, signed_headers))
}

/// The day's signing key: the secret HMAC-chained through date, region, service and terminator.
fn signing_key(keys: &AwsKeys, date: &str, region: &str) -> [u8; 32] {
    let mut key = hmac(
        format!("AWS4{}", keys.secret_access_key.expose()).as_bytes(),
        date.as_bytes(),
    );
    for part in [region, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    key
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}

/// A header value as SigV4 signs it for S3: spaces trimmed at both ends and inner runs of spaces
/// collapsed to one. Only spaces: S3 keeps tabs and other whitespace as they are (as `aws-sigv4`
/// does; `tests/sigv4_differential.rs`).
fn canonical_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.trim_matches(' ').chars() {
        if !(c == ' ' && out.ends_with(' ')) {
            out.push(c);
        }
    }
    out
}

/// The query with each name and value decoded (`+` as a space), then RFC 3986-encoded, sorted;
/// `k` becomes `k=`.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            // S3 reads a query as form data: a raw `+` is a space (the store itself always
            // sends `%2B` and `%20`).
            let decode = |x: &str| percent_decode(&x.replace('+', " "));
            (
                percent_encode(&decode(k), false),
                percent_encode(&decode(v), false),
            )
        })
        .collect();
    crate::sort::sort(&mut pairs);
    let pairs = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>();
    crate::text::join(&pairs, "&")
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex_at = |j: usize| b.get(j).and_then(|x| char::from(*x).to_digit(16));
        match (c, hex_at(i + 1), hex_at(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// (`YYYYMMDD`, `YYYYMMDDTHHMMSSZ`) of a time in ms since the epoch (UTC).
fn amz_dates(now_ms: u64) -> (String, String) {
    let time = super::timestamp::basic_utc(now_ms);
    let date = time.get(..8).unwrap_or_default().to_string();
    (date, time)
}

/// `YYYYMMDDTHHMMSSZ` of a time, for other modules' tests.
#[cfg(test)]
pub(crate) fn amz_dates_for_tests(now_ms: u64) -> String {
    amz_dates(now_ms).1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    /// 2013-05-24T00:00:00Z, the date of AWS's S3 examples.
    const EXAMPLE_MS: u64 = 1_369_353_600_000;

    fn example_keys() -> AwsKeys {
        AwsKeys {
            access_key_id: Secret::new("AKIAIOSFODNN7EXAMPLE"),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            session_token: None,
        }
    }

    fn signature(method: &str, url: &str, headers: &[(&str, &str)], payload: &str) -> String {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let added = sign_v4(
            method,
            url,
            &headers,
            payload,
            &example_keys(),
            "us-east-1",
            EXAMPLE_MS,
        )
        .expect("signed");
        let auth = &added.iter().find(|(k, _)| k == "authorization").unwrap().1;
        auth.split("Signature=").nth(1).unwrap().to_string()
    }

    /// AWS's published examples ("Signature Calculations for the Authorization Header").
    #[test]
    fn the_aws_s3_documentation_examples() {
        let host = ("host", "examplebucket.s3.amazonaws.com");
        assert_eq!(
            signature(
                "GET",
                "https://examplebucket.s3.amazonaws.com/test.txt",
                &[host, ("range", "bytes=0-9")],
                EMPTY
            ),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert_eq!(
            signature(
                "PUT",
                "https://examplebucket.s3.amazonaws.com/test%24file.text",
                &[
                    host,
                    ("date", "Fri, 24 May 2013 00:00:00 GMT"),
                    ("x-amz-storage-class", "REDUCED_REDUNDANCY")
                ],
                "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
            ),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
        assert_eq!(
            signature(
                "GET",
                "https://examplebucket.s3.amazonaws.com/?lifecycle",
                &[host],
                EMPTY
            ),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
        assert_eq!(
            signature(
                "GET",
                "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J",
                &[host],
                EMPTY
            ),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn dates_queries_and_limits() {
        assert_eq!(amz_dates(EXAMPLE_MS).1, "20130524T000000Z");
        assert_eq!(amz_dates(0).1, "19700101T000000Z");
        assert_eq!(amz_dates(951_868_800_000 - 1000).1, "20000229T235959Z");
        assert_eq!(amz_dates(MAX_SIGNABLE_MS).1, "99991231T235959Z");
        assert!(sign_v4(
            "GET",
            "http://h/",
            &[],
            EMPTY,
            &example_keys(),
            "us-east-1",
            MAX_SIGNABLE_MS + 1
        )
        .is_err());
        assert_eq!(canonical_query("b=2&a=1&c"), "a=1&b=2&c=");
        assert_eq!(
            canonical_query("prefix=a%2Fb%20c&x=%7E"),
            "prefix=a%2Fb%20c&x=~"
        );
        let dup = vec![
            ("X-A".to_string(), "1".to_string()),
            ("x-a".to_string(), "2".to_string()),
        ];
        assert!(sign_v4(
            "GET",
            "http://h/",
            &dup,
            EMPTY,
            &example_keys(),
            "us-east-1",
            0
        )
        .is_err());
    }
}
