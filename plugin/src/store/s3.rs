//! S3 (and S3-compatible) PutObject / HeadObject requests signed with SigV4 (`sigv4.rs`, written
//! from AWS's specification), and the parsing of their answers.
//!
//! Addressing: AWS endpoints use virtual-hosted style (`<bucket>.s3.<region>.amazonaws.com`) unless
//! the bucket has dots (TLS wildcard) or `s3_force_path_style` is set; custom endpoints
//! (`AWS_CONFIG_STORAGE_ENDPOINT`) always use path style, over http or https.
//!
//! Integrity: `x-amz-content-sha256` (signed) and `x-amz-checksum-sha256` (base64, verified by
//! the server) so corruption in transit is rejected.

use std::rc::Rc;

use super::aws_credentials::CredentialChain;
use super::election_objects::{self, ElectionCandidate};
use super::lineage;
use super::sigv4::sign_v4;
use super::timestamp::{rfc3339_ms, shift};
use super::{
    DeleteOutcome, ElectionObjects, ExportMeta, GetOutcome, HeadOutcome, ListEntry, ListOutcome,
    ObjectStore, Precondition, PutOutcome, RemoteMeta, StoreError,
};
use crate::document::{hex, sha256_hex};
use crate::http::{HttpResponse, OutboundRequest};
use crate::http_url::percent_encode;
use crate::node_lock::SharedStore;
use crate::settings::aws::AwsProvider;
use crate::settings::S3Settings;

pub const META_UPLOADER: &str = "x-amz-meta-uploader";
pub const META_APPLIED_AT: &str = "x-amz-meta-config-applied-at";
pub const META_SEQUENCE: &str = "x-amz-meta-config-sequence";
pub const META_UPDATED_AT: &str = "x-amz-meta-config-updated-at";
pub const META_SHA256: &str = "x-amz-meta-config-sha256";
pub const META_SUPERSEDES: &str = "x-amz-meta-config-supersedes";

pub struct S3Store {
    settings: S3Settings,
    bucket: String,
    upstream: String,
    credentials: CredentialChain,
    /// The store's clock minus this node's (ms), measured from its `Date`: `x-amz-date` is the
    /// store's time, so a node whose clock is off still signs requests S3 accepts.
    skew_ms: i64,
}

/// SSE-C headers: a customer-key-encrypted object is only readable (HEAD too) with its key.
const SSE_C_HEADERS: &[&str] = &[
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-server-side-encryption-customer-key-md5",
];

/// Where a request goes: `:authority`, `:scheme` and the path prefix before the key.
struct Address {
    authority: String,
    scheme: String,
    base_path: String,
}

impl S3Store {
    pub fn new(settings: S3Settings, bucket: String, upstream: String) -> S3Store {
        S3Store {
            credentials: CredentialChain::new(settings.credentials.clone()),
            settings,
            bucket,
            upstream,
            skew_ms: 0,
        }
    }

    pub fn credentials(&self) -> &CredentialChain {
        &self.credentials
    }

    /// The SSE-C headers of `cluster_fallback_export_s3_config`, which reads of the object need.
    fn sse_c_headers(&self) -> Vec<(String, String)> {
        self.settings
            .extra_headers
            .0
            .iter()
            .filter(|(k, _)| SSE_C_HEADERS.contains(&k.as_str()))
            .cloned()
            .collect()
    }

    fn address(&self) -> Address {
        match &self.settings.endpoint {
            Some(e) => {
                let base = crate::text::trim_end_ascii(e.path(), b'/');
                Address {
                    authority: e.authority(),
                    scheme: e.scheme.clone(),
                    base_path: format!("{base}/{}", self.bucket),
                }
            }
            None => {
                let regional = format!("s3.{}.amazonaws.com", self.settings.region);
                if self.settings.force_path_style || self.bucket.contains('.') {
                    Address {
                        authority: regional,
                        scheme: "https".into(),
                        base_path: format!("/{}", self.bucket),
                    }
                } else {
                    Address {
                        authority: format!("{}.{regional}", self.bucket),
                        scheme: "https".into(),
                        base_path: String::new(),
                    }
                }
            }
        }
    }

    fn object_path(&self, addr: &Address, key: &str) -> String {
        // RFC 3986 per segment; `/` separates segments and stays.
        format!("{}/{}", addr.base_path, percent_encode(key, true))
    }

    /// A signed request for one object.
    fn build(
        &self,
        method: &str,
        key: &str,
        headers: Vec<(String, String)>,
        body: Rc<Vec<u8>>,
        payload_hash: &str,
        now_ms: u64,
    ) -> Result<OutboundRequest, String> {
        let addr = self.address();
        let path = self.object_path(&addr, key);
        self.signed(addr, method, path, headers, body, payload_hash, now_ms)
    }

    /// A signed request to `path` (with its query, if any: SigV4 signs it canonically).
    #[allow(clippy::too_many_arguments)]
    fn signed(
        &self,
        addr: Address,
        method: &str,
        path: String,
        mut headers: Vec<(String, String)>,
        body: Rc<Vec<u8>>,
        payload_hash: &str,
        now_ms: u64,
    ) -> Result<OutboundRequest, String> {
        headers.push(("host".into(), addr.authority.clone()));
        let keys = self.credentials.keys(now_ms)?;
        let signed = sign_v4(
            method,
            &format!("{}://{}{}", addr.scheme, addr.authority, path),
            &headers,
            payload_hash,
            keys,
            &self.settings.region,
            shift(now_ms, self.skew_ms),
        )?;
        headers.extend(signed);
        headers.retain(|(k, _)| k != "host");
        Ok(OutboundRequest {
            upstream: self.upstream.clone(),
            method: method.into(),
            path,
            authority: addr.authority,
            scheme: addr.scheme,
            headers,
            body,
        })
    }
}

impl ObjectStore for S3Store {
    fn describe(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, key)
    }

    fn upstream(&self) -> &str {
        &self.upstream
    }

    fn conditional_writes(&self) -> bool {
        self.settings.conditional_writes
    }

    fn get(
        &self,
        key: &str,
        if_none_match: Option<&str>,
        now_ms: u64,
    ) -> Result<OutboundRequest, String> {
        let mut headers = self.sse_c_headers();
        if let Some(v) = if_none_match {
            headers.push(("if-none-match".to_string(), v.to_string()));
        }
        self.build("GET", key, headers, Rc::default(), &sha256_hex(b""), now_ms)
    }

    fn list(
        &self,
        prefix: &str,
        page: Option<&str>,
        now_ms: u64,
    ) -> Result<OutboundRequest, String> {
        // ListObjectsV2; at most 1,000 keys a page (Kong lists one page of 1,000).
        let addr = self.address();
        let mut query = format!(
            "list-type=2&max-keys=1000&prefix={}",
            percent_encode(prefix, false)
        );
        if let Some(token) = page {
            query = format!(
                "continuation-token={}&{query}",
                percent_encode(token, false)
            );
        }
        // `/bucket?...` path-style, `/?...` virtual-hosted: what AWS SDKs send. moto rejects the
        // signature of `/bucket/?...` (it canonicalises the path without the slash).
        let base = if addr.base_path.is_empty() {
            "/"
        } else {
            addr.base_path.as_str()
        };
        let path = format!("{base}?{query}");
        self.signed(
            addr,
            "GET",
            path,
            Vec::new(),
            Rc::default(),
            &sha256_hex(b""),
            now_ms,
        )
    }

    fn delete(&self, key: &str, now_ms: u64) -> Result<OutboundRequest, String> {
        self.build(
            "DELETE",
            key,
            Vec::new(),
            Rc::default(),
            &sha256_hex(b""),
            now_ms,
        )
    }

    fn parse_get(&self, resp: HttpResponse) -> GetOutcome {
        match resp.status {
            200..=299 => GetOutcome::Found {
                meta: remote_meta(&resp),
                body: resp.body,
            },
            304 => GetOutcome::NotModified,
            404 => GetOutcome::Missing,
            _ => GetOutcome::Failed(error_from(&resp)),
        }
    }

    fn parse_list(&self, resp: &HttpResponse) -> ListOutcome {
        if !(200..=299).contains(&resp.status) {
            return ListOutcome::Failed(error_from(resp));
        }
        let xml = String::from_utf8_lossy(&resp.body);
        let entries = xml_blocks(&xml, "Contents")
            .into_iter()
            .filter_map(|c| {
                Some(ListEntry {
                    key: xml_element(c, "Key")?,
                    modified_ms: xml_element(c, "LastModified").and_then(|t| rfc3339_ms(&t)),
                    created_ms: None,
                    size: xml_element(c, "Size")
                        .and_then(|n| n.trim().parse().ok())
                        .unwrap_or(0),
                })
            })
            .collect();
        let truncated = xml_element(&xml, "IsTruncated").is_some_and(|v| v.trim() == "true");
        let next = xml_element(&xml, "NextContinuationToken").filter(|_| truncated);
        ListOutcome::Page { entries, next }
    }

    fn parse_delete(&self, resp: &HttpResponse) -> DeleteOutcome {
        match resp.status {
            200..=299 | 404 => DeleteOutcome::Deleted,
            _ => DeleteOutcome::Failed(error_from(resp)),
        }
    }

    fn put(
        &self,
        key: &str,
        body: &Rc<Vec<u8>>,
        precondition: &Precondition,
        meta: &ExportMeta,
        now_ms: u64,
    ) -> Result<OutboundRequest, String> {
        // The digest computed once per document (see `document::Document`).
        let checksum = crate::document::base64(&meta.sha256);
        let mut headers: Vec<(String, String)> = vec![
            ("content-type".into(), "application/json".into()),
            ("content-length".into(), body.len().to_string()),
            ("x-amz-checksum-sha256".into(), checksum),
            (META_UPLOADER.into(), meta.uploader.clone()),
            (META_APPLIED_AT.into(), meta.applied_at.to_string()),
            (META_SHA256.into(), meta.sha256_hex.clone()),
            (META_SEQUENCE.into(), meta.sequence.to_string()),
        ];
        if let Some(ms) = meta.updated_at_ms {
            headers.push((META_UPDATED_AT.into(), ms.to_string()));
        }
        if !meta.supersedes.is_empty() {
            headers.push((META_SUPERSEDES.into(), lineage::render(&meta.supersedes)));
        }
        for (name, value) in &meta.seal {
            headers.push((format!("x-amz-meta-{name}"), value.clone()));
        }
        headers.extend(self.settings.extra_headers.0.iter().cloned());
        if self.settings.conditional_writes {
            match precondition {
                Precondition::None => {}
                Precondition::IfAbsent => headers.push(("if-none-match".into(), "*".into())),
                Precondition::IfMatch(etag) => headers.push(("if-match".into(), etag.clone())),
            }
        }
        let payload_hash = hex(&meta.sha256);
        self.build("PUT", key, headers, Rc::clone(body), &payload_hash, now_ms)
    }

    fn head(&self, key: &str, now_ms: u64) -> Result<OutboundRequest, String> {
        let empty = sha256_hex(b"");
        let headers = self.sse_c_headers();
        self.build("HEAD", key, headers, Rc::default(), &empty, now_ms)
    }

    fn parse_put(&self, resp: &HttpResponse) -> PutOutcome {
        match resp.status {
            200..=299 => PutOutcome::Stored {
                version: resp.header("etag").map(str::to_string),
            },
            // 412: If-Match / If-None-Match failed; 409 ConditionalRequestConflict: a concurrent
            // conditional write won the race. Both mean "look at what is there now".
            412 | 409 => PutOutcome::PreconditionFailed,
            // `If-Match` on an object that no longer exists (the store was wiped or the object
            // deleted): AWS and moto answer 404 NoSuchKey, s3s-fs 412. Either way the node's
            // idea of the object is stale (NoSuchBucket stays a failure).
            404 => match error_from(resp) {
                e if e.code == "NoSuchKey" => PutOutcome::PreconditionFailed,
                e => PutOutcome::Failed(e),
            },
            _ => PutOutcome::Failed(error_from(resp)),
        }
    }

    fn prerequisite(&mut self, now_ms: u64) -> Option<OutboundRequest> {
        self.credentials.request(now_ms)
    }

    fn ready(&self, now_ms: u64) -> bool {
        self.credentials.keys(now_ms).is_ok()
    }

    fn rejects_credentials(&self, resp: &HttpResponse) -> bool {
        if !matches!(resp.status, 400 | 401 | 403) {
            return false;
        }
        let code = xml_element(&String::from_utf8_lossy(&resp.body), "Code");
        matches!(
            code.as_deref(),
            Some("ExpiredToken" | "InvalidToken" | "TokenRefreshRequired")
        ) || (!matches!(self.settings.credentials, AwsProvider::Static(_))
            && code.as_deref() == Some("InvalidAccessKeyId"))
    }

    fn rejects_clock(&self, resp: &HttpResponse) -> bool {
        resp.status == 403
            && xml_element(&String::from_utf8_lossy(&resp.body), "Code").as_deref()
                == Some("RequestTimeTooSkewed")
    }

    fn on_unauthorized(&mut self, _now_ms: u64) {
        self.credentials.invalidate();
    }

    fn on_prerequisite(
        &mut self,
        answer: Result<HttpResponse, String>,
        now_ms: u64,
    ) -> Result<(), String> {
        self.credentials.answered(answer, now_ms)
    }

    fn share(&mut self, key: &str, shared: &mut dyn SharedStore, now_ms: u64) {
        self.credentials.share(key, shared, now_ms);
    }

    fn set_clock_skew(&mut self, skew_ms: i64) {
        self.skew_ms = skew_ms;
        self.credentials.set_clock_skew(skew_ms);
    }

    fn parse_head(&self, resp: &HttpResponse) -> HeadOutcome {
        match resp.status {
            200..=299 => HeadOutcome::Found(remote_meta(resp)),
            404 => HeadOutcome::Missing,
            _ => HeadOutcome::Failed(error_from(resp)),
        }
    }
}

/// Kong Enterprise's registration objects on this store (docs/election.md).
impl ElectionObjects for S3Store {
    fn put_marker(&self, key: &str, now_ms: u64) -> Result<OutboundRequest, String> {
        let mut headers = vec![
            ("content-type".into(), "text/plain".into()),
            ("content-length".into(), "0".into()),
        ];
        // As Kong Enterprise does: the `cluster_fallback_export_s3_config` headers (encryption,
        // ACL, ...) on election objects too (a bucket policy requiring them would refuse them).
        headers.extend(self.settings.extra_headers.0.iter().cloned());
        let empty = sha256_hex(b"");
        self.build("PUT", key, headers, Rc::default(), &empty, now_ms)
    }

    fn election_key(&self, election_prefix: &str, node_id: &str, register_time_ms: u64) -> String {
        format!(
            "{election_prefix}{}",
            election_objects::s3_name(node_id, register_time_ms)
        )
    }

    fn election_candidate(
        &self,
        election_prefix: &str,
        entry: &ListEntry,
    ) -> Result<ElectionCandidate, String> {
        election_objects::candidate(election_prefix, entry, "LastModified", |name| {
            election_objects::parse_s3_name(name).ok_or_else(|| {
                format!(
                    "not `<register_time>-<node_id>`: {}",
                    crate::json::quoted(name)
                )
            })
        })
    }
}

/// The metadata every export writes, as HEAD and GET answers carry it.
fn remote_meta(resp: &HttpResponse) -> RemoteMeta {
    RemoteMeta {
        version: resp.header("etag").map(str::to_string),
        uploader: resp.header(META_UPLOADER).map(str::to_string),
        applied_at: resp
            .header(META_APPLIED_AT)
            .and_then(|v| v.trim().parse().ok()),
        sha256_hex: resp.header(META_SHA256).map(str::to_string),
        sequence: resp
            .header(META_SEQUENCE)
            .and_then(|v| v.trim().parse().ok()),
        updated_at_ms: resp
            .header(META_UPDATED_AT)
            .and_then(|v| v.trim().parse().ok()),
        supersedes: resp
            .header(META_SUPERSEDES)
            .map(lineage::parse)
            .unwrap_or_default(),
        seal: crate::seal::SealMeta::read(|k| {
            resp.header(&format!("x-amz-meta-{k}")).map(str::to_string)
        }),
    }
}

/// The contents of every `<name>...</name>` element, in order (no nesting of the same name).
fn xml_blocks<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = crate::text::find(rest, &open) {
        let Some(after) = rest.get(start + open.len()..) else {
            break;
        };
        let Some(len) = crate::text::find(after, &close) else {
            break;
        };
        if let Some(block) = after.get(..len) {
            out.push(block);
        }
        rest = after.get(len + close.len()..).unwrap_or("");
    }
    out
}

/// An S3 error answer as (status, Code, Message). Only those two elements are read from the XML:
/// the body may also carry the canonical request and the signature we sent, which never get logged.
pub fn error_from(resp: &HttpResponse) -> StoreError {
    let body = String::from_utf8_lossy(&resp.body);
    let code =
        xml_element(&body, "Code").unwrap_or_else(|| status_code_name(resp.status).to_string());
    let message =
        xml_element(&body, "Message").unwrap_or_else(|| super::NO_ERROR_MESSAGE.to_string());
    StoreError::from_answer(resp.status, &code, &message)
}

fn status_code_name(status: u16) -> &'static str {
    match status {
        301 => "PermanentRedirect",
        400 => "BadRequest",
        403 => "AccessDenied",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        412 => "PreconditionFailed",
        429 | 503 => "SlowDown",
        500 => "InternalError",
        501 => "NotImplemented",
        _ => "HttpError",
    }
}

/// The text of the first `<name>…</name>`, entities decoded.
pub(crate) fn xml_element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = crate::text::find(xml, &open)? + open.len();
    let len = crate::text::find(xml.get(start..)?, &close)?;
    xml_unescape(xml.get(start..start + len)?)
}

/// XML's five entities decoded in one pass (each starts at its only `&`, so this is the chain of
/// `str::replace`s it replaces, `&amp;` last, without its five searches; BENCHMARKS.md, "Issue 25,
/// lean8").
fn xml_unescape(raw: &str) -> Option<String> {
    const ENTITIES: [(&str, char); 5] = [
        ("&lt;", '<'),
        ("&gt;", '>'),
        ("&quot;", '"'),
        ("&apos;", '\''),
        ("&amp;", '&'),
    ];
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(rest.get(..at)?);
        rest = rest.get(at..)?;
        let (len, ch) = ENTITIES
            .iter()
            .find(|(e, _)| rest.starts_with(e))
            .map_or((1, '&'), |(e, c)| (e.len(), *c));
        out.push(ch);
        rest = rest.get(len..)?;
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_unescape_is_the_chain_of_replaces() {
        for raw in [
            "",
            "a&b",
            "&lt;k&gt;",
            "&amp;lt;",
            "&&lt;;",
            "&quot;&apos;&amp;",
            "x&am",
            "é&gt;",
        ] {
            let chained = raw
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&");
            assert_eq!(
                xml_unescape(raw).as_deref(),
                Some(chained.as_str()),
                "{raw:?}"
            );
        }
    }
    use crate::document::sha256;
    use crate::http_url::HttpUrl;
    use crate::secret::Secret;
    use crate::settings::aws::AwsKeys;
    use crate::settings::HeaderList;
    use base64::Engine as _;
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};

    const AK: &str = "AKIAIOSFODNN7EXAMPLE";
    const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    /// 2013-05-24T00:00:00Z, the time of AWS's documented S3 SigV4 examples.
    const T_2013: u64 = 1_369_353_600_000;

    fn settings(endpoint: Option<&str>) -> S3Settings {
        S3Settings {
            credentials: AwsProvider::Static(AwsKeys {
                access_key_id: Secret::new(AK),
                secret_access_key: Secret::new(SK),
                session_token: None,
            }),
            region: "us-east-1".into(),
            endpoint: endpoint.map(|e| HttpUrl::parse(e).unwrap()),
            force_path_style: false,
            conditional_writes: true,
            extra_headers: HeaderList(vec![("x-amz-storage-class".into(), "STANDARD_IA".into())]),
        }
    }

    fn hmac(key: &[u8], data: &str) -> Vec<u8> {
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(data.as_bytes());
        m.finalize().into_bytes().to_vec()
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// SigV4 computed independently of aws-sigv4, from the specification.
    fn reference_signature(
        method: &str,
        path: &str,
        headers: &[(String, String)],
        signed: &[&str],
        payload: &str,
        amz_date: &str,
    ) -> String {
        let mut canonical_headers = String::new();
        for name in signed {
            let v = headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim())
                .unwrap_or_else(|| panic!("{name} missing"));
            canonical_headers.push_str(&format!("{name}:{v}\n"));
        }
        let creq = format!(
            "{method}\n{path}\n\n{canonical_headers}\n{}\n{payload}",
            signed.join(";")
        );
        let date = &amz_date[..8];
        let scope = format!("{date}/us-east-1/s3/aws4_request");
        let sts = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            sha256_hex(creq.as_bytes())
        );
        let k = hmac(format!("AWS4{SK}").as_bytes(), date);
        let k = hmac(&k, "us-east-1");
        let k = hmac(&k, "s3");
        let k = hmac(&k, "aws4_request");
        hex(&hmac(&k, &sts))
    }

    #[test]
    fn matches_the_aws_documented_get_object_example() {
        // https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html (GET Object)
        let headers = vec![
            (
                "host".to_string(),
                "examplebucket.s3.amazonaws.com".to_string(),
            ),
            ("range".to_string(), "bytes=0-9".to_string()),
        ];
        let added = sign_v4(
            "GET",
            "https://examplebucket.s3.amazonaws.com/test.txt",
            &headers,
            &sha256_hex(b""),
            settings(None).keys().unwrap(),
            "us-east-1",
            T_2013,
        )
        .unwrap();
        let auth = added
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1
            .clone();
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// The metadata of `body`: its digest is what the checksum header and the signature use.
    fn meta(body: &[u8]) -> ExportMeta {
        ExportMeta {
            uploader: "node-1".into(),
            applied_at: 1_700_000_000_123,
            sha256_hex: sha256_hex(body),
            sha256: sha256(body),
            sequence: 1,
            updated_at_ms: None,
            supersedes: Vec::new(),
            seal: Vec::new(),
        }
    }

    #[test]
    fn put_to_custom_endpoint_is_path_style_and_signed_over_every_header() {
        let store = S3Store::new(
            settings(Some("http://127.0.0.1:9000/")),
            "my-bucket".into(),
            "127.0.0.1:9000".into(),
        );
        let body = Rc::new(br#"{"_format_version":"3.0"}"#.to_vec());
        let req = store
            .put(
                "kong dp/3.9+1/config.json",
                &body,
                &Precondition::IfMatch("\"abc\"".into()),
                &ExportMeta {
                    supersedes: vec!["0123456789ab".into(), "ba9876543210".into()],
                    ..meta(&body)
                },
                T_2013,
            )
            .unwrap();
        assert_eq!(req.method, "PUT");
        assert_eq!(req.path, "/my-bucket/kong%20dp/3.9%2B1/config.json");
        assert_eq!(req.authority, "127.0.0.1:9000");
        assert_eq!(req.scheme, "http");
        assert_eq!(req.upstream, "127.0.0.1:9000");
        assert_eq!(req.header("host"), None, ":authority carries the host");
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert_eq!(
            req.header("content-length"),
            Some(body.len().to_string().as_str())
        );
        assert_eq!(
            req.header("x-amz-content-sha256"),
            Some(sha256_hex(&body).as_str())
        );
        assert_eq!(
            req.header("x-amz-checksum-sha256"),
            Some(
                base64::engine::general_purpose::STANDARD
                    .encode(Sha256::digest(body.as_slice()))
                    .as_str()
            )
        );
        assert_eq!(req.header("x-amz-meta-uploader"), Some("node-1"));
        assert_eq!(
            req.header("x-amz-meta-config-supersedes"),
            Some("0123456789ab,ba9876543210")
        );
        assert_eq!(req.header("if-match"), Some("\"abc\""));
        assert_eq!(req.header("x-amz-storage-class"), Some("STANDARD_IA"));
        assert_eq!(req.header("x-amz-date"), Some("20130524T000000Z"));

        let auth = req.header("authorization").unwrap();
        let signed_list = auth
            .split("SignedHeaders=")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        let signed: Vec<&str> = signed_list.split(';').collect();
        assert_eq!(
            signed,
            [
                "content-length",
                "content-type",
                "host",
                "if-match",
                "x-amz-checksum-sha256",
                "x-amz-content-sha256",
                "x-amz-date",
                "x-amz-meta-config-applied-at",
                "x-amz-meta-config-sequence",
                "x-amz-meta-config-sha256",
                "x-amz-meta-config-supersedes",
                "x-amz-meta-uploader",
                "x-amz-storage-class"
            ]
        );
        let mut all = req.headers.clone();
        all.push(("host".into(), req.authority.clone()));
        let expected = reference_signature(
            "PUT",
            &req.path,
            &all,
            &signed,
            &sha256_hex(&body),
            "20130524T000000Z",
        );
        assert!(
            auth.ends_with(&format!("Signature={expected}")),
            "{auth} vs {expected}"
        );
        assert!(!format!("{req:?}").contains(SK));
    }

    #[test]
    fn aws_endpoint_is_virtual_hosted_and_session_token_is_signed() {
        let mut s = settings(None);
        if let AwsProvider::Static(k) = &mut s.credentials {
            k.session_token = Some(Secret::new("SESSIONTOKEN"));
        }
        s.region = "eu-west-1".into();
        let store = S3Store::new(
            s.clone(),
            "my-bucket".into(),
            "s3.eu-west-1.amazonaws.com:443".into(),
        );
        let req = store
            .put(
                "p/3.9/config.json",
                &Rc::new(b"{}".to_vec()),
                &Precondition::IfAbsent,
                &meta(b"{}"),
                T_2013,
            )
            .unwrap();
        assert_eq!(req.authority, "my-bucket.s3.eu-west-1.amazonaws.com");
        assert_eq!(req.path, "/p/3.9/config.json");
        assert_eq!(req.scheme, "https");
        assert_eq!(req.header("if-none-match"), Some("*"));
        assert_eq!(req.header("x-amz-security-token"), Some("SESSIONTOKEN"));
        assert!(req
            .header("authorization")
            .unwrap()
            .contains("x-amz-security-token"));
        // Dotted buckets cannot use the wildcard certificate: path style.
        let store = S3Store::new(s.clone(), "my.bucket".into(), "u".into());
        let req = store.head("k", T_2013).unwrap();
        assert_eq!(
            (
                req.authority.as_str(),
                req.path.as_str(),
                req.method.as_str()
            ),
            ("s3.eu-west-1.amazonaws.com", "/my.bucket/k", "HEAD")
        );
        // Conditional writes off: no precondition header.
        s.conditional_writes = false;
        let store = S3Store::new(s, "my-bucket".into(), "u".into());
        let req = store
            .put(
                "k",
                &Rc::new(b"{}".to_vec()),
                &Precondition::IfMatch("\"e\"".into()),
                &meta(b"{}"),
                T_2013,
            )
            .unwrap();
        assert_eq!(req.header("if-match"), None);
    }

    #[test]
    fn endpoint_with_base_path() {
        let store = S3Store::new(
            settings(Some("https://gw.example.com:8443/s3/")),
            "b-1".into(),
            "u".into(),
        );
        let req = store.head("a/b", T_2013).unwrap();
        assert_eq!(
            (req.authority.as_str(), req.path.as_str()),
            ("gw.example.com:8443", "/s3/b-1/a/b")
        );
    }

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn parses_s3_error_xml_without_the_signature() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code>\
            <Message>The request signature we calculated does not match the signature you provided. Check your key &amp; signing method.</Message>\
            <AWSAccessKeyId>AKIAIOSFODNN7EXAMPLE</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256...</StringToSign>\
            <SignatureProvided>deadbeefcafe</SignatureProvided><RequestId>R</RequestId></Error>";
        let store = S3Store::new(settings(None), "b-1".into(), "u".into());
        let PutOutcome::Failed(e) = store.parse_put(&resp(403, &[], body)) else {
            panic!("expected failure")
        };
        assert_eq!(e.code, "SignatureDoesNotMatch");
        assert!(e.message.starts_with("The request signature we calculated"));
        assert!(e.message.ends_with("key & signing method."));
        let line = e.to_string();
        assert!(line.starts_with("HTTP 403 SignatureDoesNotMatch: "));
        assert!(!line.contains("deadbeefcafe") && !line.contains("StringToSign"));
        assert!(!e.is_server_side());
        // No XML body: code from the status.
        let PutOutcome::Failed(e) = store.parse_put(&resp(503, &[], "")) else {
            panic!()
        };
        assert_eq!((e.code.as_str(), e.is_server_side()), ("SlowDown", true));
    }

    #[test]
    fn errors_no_retry_can_fix_name_their_fix() {
        let store = S3Store::new(settings(None), "b-1".into(), "u".into());
        let err = |status, code: &str| {
            let body = format!("<Error><Code>{code}</Code><Message>m</Message></Error>");
            match store.parse_put(&resp(status, &[], &body)) {
                PutOutcome::Failed(e) => e,
                other => panic!("{other:?}"),
            }
        };
        let fix = err(403, "SignatureDoesNotMatch").needs_operator().unwrap();
        assert!(fix.contains("aws_secret_access_key"), "{fix}");
        let fix = err(403, "InvalidAccessKeyId").needs_operator().unwrap();
        assert!(fix.contains("aws_access_key_id"), "{fix}");
        let fix = err(403, "AccessDenied").needs_operator().unwrap();
        assert!(fix.contains("s3:PutObject"), "{fix}");
        for (status, code) in [
            (403, "RequestTimeTooSkewed"),
            (400, "ExpiredToken"),
            (503, "SlowDown"),
            (500, "InternalError"),
        ] {
            assert_eq!(err(status, code).needs_operator(), None, "{code}");
        }
        // A HEAD answer has no body: its 403 may be a skewed clock or an expired token.
        let HeadOutcome::Failed(e) = store.parse_head(&resp(403, &[], "")) else {
            panic!()
        };
        assert_eq!(
            (e.code.as_str(), e.needs_operator()),
            ("AccessDenied", None)
        );
    }

    #[test]
    fn expired_tokens_and_skewed_clocks_are_recognised() {
        let mut s = settings(None);
        s.credentials = AwsProvider::Imds {
            url: HttpUrl::parse("http://169.254.169.254").unwrap(),
            upstream: "imds".into(),
        };
        let store = S3Store::new(s, "b-1".into(), "u".into());
        let body = |code: &str| format!("<Error><Code>{code}</Code><Message>m</Message></Error>");
        assert!(store.rejects_credentials(&resp(400, &[], &body("ExpiredToken"))));
        assert!(store.rejects_credentials(&resp(403, &[], &body("ExpiredToken"))));
        assert!(store.rejects_credentials(&resp(403, &[], &body("InvalidAccessKeyId"))));
        assert!(!store.rejects_credentials(&resp(403, &[], &body("AccessDenied"))));
        assert!(!store.rejects_credentials(&resp(500, &[], &body("ExpiredToken"))));
        assert!(store.rejects_clock(&resp(403, &[], &body("RequestTimeTooSkewed"))));
        assert!(!store.rejects_clock(&resp(403, &[], &body("AccessDenied"))));
        // No keys yet: not ready, and no request can be built.
        assert!(!store.ready(T_2013));
        assert!(store.head("k", T_2013).is_err());
    }

    /// `x-amz-date` is the store's time: a node 20 minutes behind signs with the store's clock.
    #[test]
    fn the_measured_skew_corrects_the_signing_time() {
        let mut store = S3Store::new(settings(None), "b-1".into(), "u".into());
        store.set_clock_skew(20 * 60_000);
        let req = store.head("k", T_2013 - 20 * 60_000).unwrap();
        assert_eq!(req.header("x-amz-date"), Some("20130524T000000Z"));
        store.set_clock_skew(-20 * 60_000);
        let req = store.head("k", T_2013 + 20 * 60_000).unwrap();
        assert_eq!(req.header("x-amz-date"), Some("20130524T000000Z"));
    }

    #[test]
    fn sse_c_headers_go_with_head_and_get_too() {
        let mut s = settings(None);
        s.extra_headers = HeaderList(vec![
            (
                "x-amz-server-side-encryption-customer-algorithm".into(),
                "AES256".into(),
            ),
            (
                "x-amz-server-side-encryption-customer-key".into(),
                "S1NFLUtFWQ==".into(),
            ),
            (
                "x-amz-server-side-encryption-customer-key-md5".into(),
                "bWQ1".into(),
            ),
            ("x-amz-storage-class".into(), "STANDARD_IA".into()),
        ]);
        let store = S3Store::new(s, "b-1".into(), "u".into());
        for req in [
            store.head("k", T_2013).unwrap(),
            store.get("k", Some("\"e\""), T_2013).unwrap(),
        ] {
            assert_eq!(
                req.header("x-amz-server-side-encryption-customer-algorithm"),
                Some("AES256")
            );
            assert_eq!(
                req.header("x-amz-server-side-encryption-customer-key"),
                Some("S1NFLUtFWQ==")
            );
            assert!(req
                .header("x-amz-server-side-encryption-customer-key-md5")
                .is_some());
            assert_eq!(
                req.header("x-amz-storage-class"),
                None,
                "PUT-only headers stay out"
            );
            let auth = req.header("authorization").unwrap();
            assert!(
                auth.contains("x-amz-server-side-encryption-customer-key;"),
                "signed: {auth}"
            );
        }
        let list = store.list("p/", None, T_2013).unwrap();
        assert_eq!(
            list.header("x-amz-server-side-encryption-customer-key"),
            None
        );
    }

    #[test]
    fn a_put_on_a_vanished_object_is_a_conflict_but_a_missing_bucket_a_failure() {
        let store = S3Store::new(settings(None), "b-1".into(), "u".into());
        let no_key = "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>";
        assert_eq!(
            store.parse_put(&resp(404, &[], no_key)),
            PutOutcome::PreconditionFailed
        );
        let no_bucket = "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>";
        assert!(matches!(
            store.parse_put(&resp(404, &[], no_bucket)),
            PutOutcome::Failed(e) if e.code == "NoSuchBucket"
        ));
    }

    #[test]
    fn parses_put_and_head_answers() {
        let store = S3Store::new(settings(None), "b-1".into(), "u".into());
        assert_eq!(
            store.parse_put(&resp(200, &[("ETag", "\"e1\"")], "")),
            PutOutcome::Stored {
                version: Some("\"e1\"".into())
            }
        );
        assert_eq!(
            store.parse_put(&resp(
                412,
                &[],
                "<Error><Code>PreconditionFailed</Code></Error>"
            )),
            PutOutcome::PreconditionFailed
        );
        assert_eq!(
            store.parse_put(&resp(
                409,
                &[],
                "<Error><Code>ConditionalRequestConflict</Code></Error>"
            )),
            PutOutcome::PreconditionFailed
        );
        assert_eq!(store.parse_head(&resp(404, &[], "")), HeadOutcome::Missing);
        let h = store.parse_head(&resp(
            200,
            &[
                ("etag", "\"e2\""),
                ("x-amz-meta-uploader", "n2"),
                ("x-amz-meta-config-applied-at", "42"),
                ("x-amz-meta-config-sha256", "ab"),
                ("x-amz-meta-config-sequence", "9"),
                ("x-amz-meta-config-updated-at", "1700000000000"),
                ("x-amz-meta-config-supersedes", "0123456789ab,ba9876543210"),
            ],
            "",
        ));
        assert_eq!(
            h,
            HeadOutcome::Found(RemoteMeta {
                version: Some("\"e2\"".into()),
                uploader: Some("n2".into()),
                applied_at: Some(42),
                sha256_hex: Some("ab".into()),
                sequence: Some(9),
                updated_at_ms: Some(1_700_000_000_000),
                supersedes: vec!["0123456789ab".into(), "ba9876543210".into()],
                ..Default::default()
            })
        );
    }
}
