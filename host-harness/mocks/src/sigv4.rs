//! Server-side AWS Signature Version 4 verification (header authentication), written from the
//! spec and independent of the filter's signer (`plugin/src/store/sigv4.rs`): a bug shared by
//! both would otherwise go unnoticed.
//!
//! `verify` parses `Authorization`, checks the scope, the date and the clock skew, rebuilds the
//! canonical request from what was received and compares signatures in constant time. What it
//! does not do is S3-specific: checking `x-amz-content-sha256` against the body is the caller's
//! job (`Verified::payload_hash` says what was claimed).

use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// S3's allowed clock difference.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// How the canonical URI is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathRule {
    /// S3: the received path is decoded and encoded once (RFC 3986 unreserved kept), no
    /// normalisation (`//a/./b` stays as it is).
    S3,
    /// Every other service: the received path is normalised (when `normalize`) and then encoded
    /// again (double encoding).
    Generic { normalize: bool },
}

/// What the verifier needs to know about the service.
#[derive(Clone, Debug)]
pub struct VerifyRules {
    pub region: String,
    pub service: String,
    pub path: PathRule,
    /// The server's clock.
    pub now: SystemTime,
    pub max_skew: Duration,
    /// S3 requires `x-amz-content-sha256` on header-signed requests.
    pub require_content_sha256: bool,
    /// S3 requires every `x-amz-*` header sent to be signed.
    pub require_amz_headers_signed: bool,
}

impl VerifyRules {
    /// S3's rules.
    pub fn s3(region: &str, now: SystemTime) -> Self {
        VerifyRules {
            region: region.to_string(),
            service: "s3".to_string(),
            path: PathRule::S3,
            now,
            max_skew: MAX_SKEW,
            require_content_sha256: true,
            require_amz_headers_signed: true,
        }
    }

    /// The AWS SigV4 test suite's generic service rules.
    pub fn generic(region: &str, service: &str, normalize: bool, now: SystemTime) -> Self {
        VerifyRules {
            region: region.to_string(),
            service: service.to_string(),
            path: PathRule::Generic { normalize },
            now,
            max_skew: MAX_SKEW,
            require_content_sha256: false,
            require_amz_headers_signed: false,
        }
    }
}

/// The secret side of a credential, as the verifier looks it up by access key.
#[derive(Clone)]
pub struct SecretKey {
    pub secret_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach a log line.
        f.write_str("SecretKey(..)")
    }
}

/// The parsed `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    pub access_key: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// A successful verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub access_key: String,
    /// The payload hash that was signed: the `x-amz-content-sha256` value, or the body's hash
    /// when the header is absent.
    pub payload_hash: String,
}

/// Why a request is rejected, with the S3 error it maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SigError {
    /// No `Authorization` header at all.
    Missing,
    /// Not `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
    Malformed(String),
    /// Another algorithm (e.g. SigV2 `AWS AKID:sig`).
    UnsupportedAlgorithm,
    UnknownAccessKey,
    /// Scope region differs from the server's.
    WrongRegion {
        got: String,
    },
    WrongService {
        got: String,
    },
    /// Scope date differs from the request date, or the terminator is not `aws4_request`.
    BadScope(String),
    MissingDate,
    BadDate,
    TooSkewed,
    MissingContentSha256,
    HostNotSigned,
    HeadersNotSigned(Vec<String>),
    InvalidToken,
    SignatureDoesNotMatch {
        string_to_sign: String,
        canonical_request: String,
    },
}

impl SigError {
    /// `(status, S3 error code, message)`.
    pub fn s3_error(&self) -> (u16, &'static str, String) {
        match self {
            SigError::Missing => (403, "AccessDenied", "Access Denied".into()),
            SigError::Malformed(why) => (
                400,
                "AuthorizationHeaderMalformed",
                format!("The authorization header is malformed; {why}"),
            ),
            SigError::UnsupportedAlgorithm => (
                400,
                "InvalidArgument",
                "Unsupported Authorization Type".into(),
            ),
            SigError::UnknownAccessKey => (
                403,
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.".into(),
            ),
            SigError::WrongRegion { got } => (
                400,
                "AuthorizationHeaderMalformed",
                format!("The authorization header is malformed; the region '{got}' is wrong"),
            ),
            SigError::WrongService { got } => (
                400,
                "AuthorizationHeaderMalformed",
                format!("The authorization header is malformed; incorrect service '{got}'"),
            ),
            SigError::BadScope(why) => (
                400,
                "AuthorizationHeaderMalformed",
                format!("The authorization header is malformed; {why}"),
            ),
            SigError::MissingDate => (
                403,
                "AccessDenied",
                "AWS authentication requires a valid Date or x-amz-date header".into(),
            ),
            SigError::BadDate => (
                403,
                "AccessDenied",
                "AWS authentication requires a valid Date or x-amz-date header".into(),
            ),
            SigError::TooSkewed => (
                403,
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.".into(),
            ),
            SigError::MissingContentSha256 => (
                400,
                "InvalidRequest",
                "Missing required header for this request: x-amz-content-sha256".into(),
            ),
            SigError::HostNotSigned => (
                400,
                "AuthorizationHeaderMalformed",
                "The authorization header is malformed; host must be signed".into(),
            ),
            SigError::HeadersNotSigned(_) => (
                403,
                "AccessDenied",
                "There were headers present in the request which were not signed".into(),
            ),
            SigError::InvalidToken => (
                400,
                "InvalidToken",
                "The provided token is malformed or otherwise invalid.".into(),
            ),
            SigError::SignatureDoesNotMatch { .. } => (
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. \
                 Check your key and signing method."
                    .into(),
            ),
        }
    }
}

/// Parses `AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/service/aws4_request,
/// SignedHeaders=host;x-amz-date, Signature=hex` (spaces after commas optional).
pub fn parse_authorization(value: &str) -> Result<Authorization, SigError> {
    let value = value.trim();
    let rest = match value.split_once(' ') {
        Some((alg, rest)) if alg == ALGORITHM => rest,
        _ => {
            return if value.starts_with("AWS4-") {
                Err(SigError::Malformed(format!(
                    "unsupported algorithm, expected {ALGORITHM}"
                )))
            } else {
                Err(SigError::UnsupportedAlgorithm)
            }
        }
    };
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        let Some((k, v)) = part.split_once('=') else {
            return Err(SigError::Malformed(format!("bad component '{part}'")));
        };
        match k {
            "Credential" => credential = Some(v.to_string()),
            "SignedHeaders" => signed = Some(v.to_string()),
            "Signature" => signature = Some(v.to_string()),
            _ => return Err(SigError::Malformed(format!("unknown component '{k}'"))),
        }
    }
    let credential = credential.ok_or_else(|| SigError::Malformed("missing Credential".into()))?;
    let signed = signed.ok_or_else(|| SigError::Malformed("missing SignedHeaders".into()))?;
    let signature = signature.ok_or_else(|| SigError::Malformed("missing Signature".into()))?;
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() != 5 || parts.iter().any(|p| p.is_empty()) {
        return Err(SigError::Malformed(
            "Credential must be AK/date/region/service/aws4_request".into(),
        ));
    }
    if parts[4] != "aws4_request" {
        return Err(SigError::BadScope(format!(
            "incorrect terminal '{}'",
            parts[4]
        )));
    }
    let signed_headers: Vec<String> = signed.split(';').map(str::to_string).collect();
    if signed_headers
        .iter()
        .any(|h| h.is_empty() || *h != h.to_ascii_lowercase())
    {
        return Err(SigError::Malformed("bad SignedHeaders".into()));
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SigError::Malformed("bad Signature".into()));
    }
    Ok(Authorization {
        access_key: parts[0].to_string(),
        date: parts[1].to_string(),
        region: parts[2].to_string(),
        service: parts[3].to_string(),
        signed_headers,
        signature: signature.to_ascii_lowercase(),
    })
}

/// Verifies a header-signed request. `lookup` finds the secret for an access key.
pub fn verify<F>(
    req: &crate::http::HttpRequest,
    rules: &VerifyRules,
    lookup: F,
) -> Result<Verified, SigError>
where
    F: Fn(&str) -> Option<SecretKey>,
{
    let header = req.header("authorization").ok_or(SigError::Missing)?;
    let auth = parse_authorization(header)?;
    let secret = lookup(&auth.access_key).ok_or(SigError::UnknownAccessKey)?;

    // The request time: x-amz-date, else Date.
    let amz_date = match req.header("x-amz-date") {
        Some(d) => d.trim().to_string(),
        None => {
            let d = req.header("date").ok_or(SigError::MissingDate)?;
            let t = httpdate::parse_http_date(d.trim()).map_err(|_| SigError::BadDate)?;
            format_amz_date(t)
        }
    };
    let request_time = parse_amz_date(&amz_date).ok_or(SigError::BadDate)?;
    let skew = match request_time.duration_since(rules.now) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > rules.max_skew {
        return Err(SigError::TooSkewed);
    }
    if auth.date != amz_date[..8] {
        return Err(SigError::BadScope(format!(
            "invalid credential date '{}': not the date of the request",
            auth.date
        )));
    }
    if auth.region != rules.region {
        return Err(SigError::WrongRegion {
            got: auth.region.clone(),
        });
    }
    if auth.service != rules.service {
        return Err(SigError::WrongService {
            got: auth.service.clone(),
        });
    }
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(SigError::HostNotSigned);
    }
    if rules.require_amz_headers_signed {
        let unsigned: Vec<String> = req
            .headers
            .iter()
            .map(|(k, _)| k.to_ascii_lowercase())
            .filter(|k| k.starts_with("x-amz-") && !auth.signed_headers.contains(k))
            .collect();
        if !unsigned.is_empty() {
            return Err(SigError::HeadersNotSigned(unsigned));
        }
    }
    // Session tokens: a temporary credential must present its token, a permanent one none.
    let token = req.header("x-amz-security-token");
    match (&secret.session_token, token) {
        (Some(expected), Some(got)) if constant_time_eq(expected.as_bytes(), got.as_bytes()) => {}
        (None, None) => {}
        _ => return Err(SigError::InvalidToken),
    }

    let payload_hash = match req.header("x-amz-content-sha256") {
        Some(h) => h.trim().to_string(),
        None if rules.require_content_sha256 => return Err(SigError::MissingContentSha256),
        None => hex::encode(Sha256::digest(&req.body)),
    };
    let canonical_request =
        canonical_request(req, &auth.signed_headers, &payload_hash, rules.path)?;
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = string_to_sign(&amz_date, &scope, &canonical_request);
    let key = signing_key(&secret.secret_key, &auth.date, &auth.region, &auth.service);
    let expected = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(SigError::SignatureDoesNotMatch {
            string_to_sign,
            canonical_request,
        });
    }
    Ok(Verified {
        access_key: auth.access_key,
        payload_hash,
    })
}

/// The canonical request (spec step 1) of a received request.
pub fn canonical_request(
    req: &crate::http::HttpRequest,
    signed_headers: &[String],
    payload_hash: &str,
    path_rule: PathRule,
) -> Result<String, SigError> {
    let uri = canonical_uri(req.path_only(), path_rule);
    let query = canonical_query(req.query());
    let mut out = format!("{}\n{}\n{}\n", req.method, uri, query);
    for name in signed_headers {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| trim_all(v))
            .collect();
        let value = if values.is_empty() {
            // `host` may come from the authority rather than a header (proxy-wasm `:authority`).
            if name == "host" && !req.authority.is_empty() {
                req.authority.clone()
            } else {
                return Err(SigError::Malformed(format!(
                    "signed header '{name}' is missing"
                )));
            }
        } else {
            values.join(",")
        };
        out.push_str(&format!("{name}:{value}\n"));
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    Ok(out)
}

/// Spec step 2.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// Spec step 3: `kSigning`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// RFC 3986 percent-encoding as SigV4 wants it: unreserved characters kept, everything else
/// `%XX` in upper case; `/` kept when `keep_slash`.
pub fn uri_encode(input: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

fn canonical_uri(path: &str, rule: PathRule) -> String {
    let path = if path.is_empty() { "/" } else { path };
    match rule {
        PathRule::S3 => uri_encode(&percent_decode(path), true),
        PathRule::Generic { normalize } => {
            let p = if normalize {
                normalize_path(path)
            } else {
                path.to_string()
            };
            // Double encoding: the path as received (already encoded once) is encoded again.
            uri_encode(p.as_bytes(), true)
        }
    }
}

/// RFC 3986 dot-segment removal plus collapsing of repeated slashes, as the test suite expects.
fn normalize_path(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    let mut s = format!("/{}", out.join("/"));
    if trailing && !out.is_empty() {
        s.push('/');
    }
    s
}

/// Query parameters decoded, re-encoded and sorted by name then value.
fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            // '+' is a literal plus in SigV4 clients' queries, not a space.
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Trims and collapses runs of whitespace (including folded lines) to one space.
fn trim_all(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `20150830T123600Z` → time.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let dt = time::PrimitiveDateTime::parse(s, &fmt).ok()?;
    let secs = dt.assume_utc().unix_timestamp();
    if secs < 0 {
        return None;
    }
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64))
}

/// time → `20150830T123600Z`.
pub fn format_amz_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let dt =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    dt.format(&fmt).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_key_matches_the_documented_derivation() {
        // AWS "Examples of how to derive a signing key for Signature Version 4".
        let k = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex::encode(k),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn authorization_parsing_rejects_broken_headers() {
        let ok = "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/s3/aws4_request,SignedHeaders=host;x-amz-date,Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        let a = parse_authorization(ok).unwrap();
        assert_eq!(a.signed_headers, vec!["host", "x-amz-date"]);
        assert_eq!(a.region, "us-east-1");
        assert_eq!(
            parse_authorization("AWS AK:sig"),
            Err(SigError::UnsupportedAlgorithm)
        );
        assert!(matches!(
            parse_authorization(&ok.replace("aws4_request", "aws5_request")),
            Err(SigError::BadScope(_))
        ));
        assert!(matches!(
            parse_authorization(&ok.replace("Signature=5f", "Signature=zz")),
            Err(SigError::Malformed(_))
        ));
        assert!(matches!(
            parse_authorization(
                "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/s3/aws4_request"
            ),
            Err(SigError::Malformed(_))
        ));
    }

    #[test]
    fn paths_follow_the_service_rules() {
        assert_eq!(canonical_uri("/a%20b/c$d", PathRule::S3), "/a%20b/c%24d");
        assert_eq!(canonical_uri("//a/./b", PathRule::S3), "//a/./b");
        assert_eq!(
            canonical_uri("/a%3Db", PathRule::Generic { normalize: false }),
            "/a%253Db"
        );
        assert_eq!(
            canonical_uri("/a/../b/./c//", PathRule::Generic { normalize: true }),
            "/b/c/"
        );
        assert_eq!(canonical_query("b=2&a=1&A=0&c"), "A=0&a=1&b=2&c=");
    }

    #[test]
    fn amz_dates_round_trip() {
        let t = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(format_amz_date(t), "20150830T123600Z");
        assert!(parse_amz_date("2015-08-30").is_none());
    }
}
