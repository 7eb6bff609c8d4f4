//! Mock S3: SigV4-authenticated object storage that behaves like the real service where the
//! filter can tell the difference (status codes, XML errors, ETags, conditional writes, listing).
//!
//! ```text
//! let s3 = MockS3::builder()
//!     .region("us-east-1")
//!     .bucket("backups")
//!     .credential(S3Credential::new("AKW", "secret"))
//!     .credential(S3Credential::new("AKR", "secret2").read_only())
//!     .build();
//! ```
//! or `MockS3::from_config(&MockS3Config { .. })` (serde, for the CLI). `MockS3` is a `Handler`,
//! cheap to clone; every check and write happens under one mutex, so conditional writes are
//! atomic. Addressing: path-style (`/bucket/key`), or virtual-hosted when the Host is
//! `<bucket>.<domain>` and a domain is configured.

pub mod payload;
pub mod xml;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::http::{CallContext, Handler, HttpRequest, HttpResponse, Reply};
use crate::sigv4::{self, SecretKey, SigError, VerifyRules};
use payload::Rejection;

/// One credential the mock accepts.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct S3Credential {
    pub access_key: String,
    pub secret_key: String,
    #[serde(default)]
    pub session_token: Option<String>,
    /// Reads only: PUT and DELETE are refused with AccessDenied.
    #[serde(default)]
    pub read_only: bool,
    /// When set, only keys starting with one of these prefixes may be touched (and listed).
    #[serde(default)]
    pub allowed_prefixes: Option<Vec<String>>,
}

impl std::fmt::Debug for S3Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret and the token never reach a log line.
        f.debug_struct("S3Credential")
            .field("access_key", &self.access_key)
            .field("read_only", &self.read_only)
            .field("allowed_prefixes", &self.allowed_prefixes)
            .finish_non_exhaustive()
    }
}

impl S3Credential {
    pub fn new(access_key: &str, secret_key: &str) -> Self {
        S3Credential {
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            session_token: None,
            read_only: false,
            allowed_prefixes: None,
        }
    }
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }
    pub fn session_token(mut self, token: &str) -> Self {
        self.session_token = Some(token.to_string());
        self
    }
    pub fn allow_prefixes(mut self, prefixes: &[&str]) -> Self {
        self.allowed_prefixes = Some(prefixes.iter().map(|p| p.to_string()).collect());
        self
    }
}

/// Plain configuration, e.g. from the command line or JSON:
/// `{"region":"us-east-1","domain":"s3.local","buckets":["b"],"credentials":[{"access_key":"AK",
/// "secret_key":"SK","read_only":false}]}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MockS3Config {
    #[serde(default = "default_region")]
    pub region: String,
    /// Enables virtual-hosted addressing for `<bucket>.<domain>`.
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub buckets: Vec<String>,
    #[serde(default)]
    pub credentials: Vec<S3Credential>,
}

fn default_region() -> String {
    "us-east-1".to_string()
}

/// One stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub body: Vec<u8>,
    /// Quoted, as S3 sends it: `"<md5 hex>"`.
    pub etag: String,
    pub last_modified: SystemTime,
    /// `x-amz-meta-*` without the prefix, names lower-cased, in the order sent.
    pub metadata: Vec<(String, String)>,
    /// The other headers S3 keeps and echoes (content-type, SSE, storage class, checksums, ...).
    pub headers: Vec<(String, String)>,
}

impl StoredObject {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn storage_class(&self) -> &str {
        self.header("x-amz-storage-class").unwrap_or("STANDARD")
    }
}

/// One request as the mock saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub bucket: String,
    pub key: String,
    pub node: String,
    pub time: SystemTime,
    pub status: u16,
    /// The S3 error code, for failed requests.
    pub error_code: Option<String>,
    /// The authenticated access key (None when authentication failed).
    pub access_key: Option<String>,
}

/// Headers kept with an object and echoed on GET/HEAD.
const KEPT_HEADERS: [&str; 9] = [
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
    "x-amz-storage-class",
    "x-amz-website-redirect-location",
    "x-amz-tagging",
];

struct Store {
    buckets: BTreeMap<String, BTreeMap<String, StoredObject>>,
    log: Vec<LoggedRequest>,
    seq: u64,
    /// Temporary credentials issued while running (IMDS, container credentials, STS), each
    /// refused with `ExpiredToken` from its expiry on.
    temporary: Vec<(S3Credential, SystemTime)>,
    /// The mock's clock minus the world's (ms): a node whose clock is off by -x sees a store
    /// whose clock is off by +x (`Date`, the 15-minute signature window, `LastModified`).
    clock_offset_ms: i64,
    /// Every version stored under the keys asked for (`keep_history`), oldest first.
    history: BTreeMap<(String, String), Vec<StoredObject>>,
}

struct Inner {
    region: String,
    domain: Option<String>,
    credentials: Vec<S3Credential>,
    store: Mutex<Store>,
}

/// The mock S3 endpoint.
#[derive(Clone)]
pub struct MockS3 {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MockS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockS3")
            .field("region", &self.inner.region)
            .finish_non_exhaustive()
    }
}

/// Builds a `MockS3`.
#[derive(Default)]
pub struct MockS3Builder {
    config: MockS3Config,
}

impl Default for MockS3Config {
    fn default() -> Self {
        MockS3Config {
            region: default_region(),
            domain: None,
            buckets: Vec::new(),
            credentials: Vec::new(),
        }
    }
}

impl MockS3Builder {
    pub fn region(mut self, region: &str) -> Self {
        self.config.region = region.to_string();
        self
    }
    pub fn domain(mut self, domain: &str) -> Self {
        self.config.domain = Some(domain.to_string());
        self
    }
    pub fn bucket(mut self, bucket: &str) -> Self {
        self.config.buckets.push(bucket.to_string());
        self
    }
    pub fn credential(mut self, credential: S3Credential) -> Self {
        self.config.credentials.push(credential);
        self
    }
    pub fn build(self) -> MockS3 {
        MockS3::from_config(&self.config)
    }
}

/// A failed request: status, S3 code, message, extra XML elements.
struct S3Error {
    status: u16,
    code: String,
    message: String,
    extra: Vec<(&'static str, String)>,
}

impl S3Error {
    fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        S3Error {
            status,
            code: code.to_string(),
            message: message.into(),
            extra: Vec::new(),
        }
    }
    fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra.push((name, value.into()));
        self
    }
    fn access_denied() -> Self {
        S3Error::new(403, "AccessDenied", "Access Denied")
    }
    fn no_such_bucket(bucket: &str) -> Self {
        S3Error::new(404, "NoSuchBucket", "The specified bucket does not exist")
            .with("BucketName", bucket)
    }
    fn no_such_key(key: &str) -> Self {
        S3Error::new(404, "NoSuchKey", "The specified key does not exist.").with("Key", key)
    }
    fn precondition(condition: &str) -> Self {
        S3Error::new(
            412,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold",
        )
        .with("Condition", condition)
    }
    fn not_implemented(what: &str) -> Self {
        S3Error::new(
            501,
            "NotImplemented",
            format!("A header or operation you provided implies functionality that is not implemented: {what}"),
        )
    }
}

impl From<Rejection> for S3Error {
    fn from((status, code, message): Rejection) -> Self {
        S3Error::new(status, code, message)
    }
}

/// A successful answer before the common headers are added.
type Outcome = Result<HttpResponse, S3Error>;

impl MockS3 {
    pub fn builder() -> MockS3Builder {
        MockS3Builder::default()
    }

    pub fn from_config(config: &MockS3Config) -> MockS3 {
        let buckets = config
            .buckets
            .iter()
            .map(|b| (b.clone(), BTreeMap::new()))
            .collect();
        MockS3 {
            inner: Arc::new(Inner {
                region: config.region.clone(),
                domain: config.domain.clone(),
                credentials: config.credentials.clone(),
                store: Mutex::new(Store {
                    buckets,
                    log: Vec::new(),
                    seq: 0,
                    temporary: Vec::new(),
                    clock_offset_ms: 0,
                    history: BTreeMap::new(),
                }),
            }),
        }
    }

    pub fn region(&self) -> &str {
        &self.inner.region
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        self.inner.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.lock().log.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().log.clear();
    }

    /// Accepts `credential` (with its session token) until `expires`, then answers
    /// `400 ExpiredToken` like S3.
    pub fn add_temporary_credential(&self, credential: S3Credential, expires: SystemTime) {
        let mut s = self.lock();
        s.temporary
            .retain(|(c, _)| c.access_key != credential.access_key);
        s.temporary.push((credential, expires));
    }

    /// Revokes every temporary credential from `at` on (S3 then answers `ExpiredToken` before the
    /// `Expiration` their issuer announced).
    pub fn expire_temporary_credentials(&self, at: SystemTime) {
        for (_, expires) in self.lock().temporary.iter_mut() {
            *expires = (*expires).min(at);
        }
    }

    /// Runs the mock's clock `offset_ms` ahead of the world's (negative: behind).
    pub fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.lock().clock_offset_ms = offset_ms;
    }

    fn shifted(&self, ctx: &CallContext) -> CallContext {
        let offset = self.lock().clock_offset_ms;
        let d = std::time::Duration::from_millis(offset.unsigned_abs());
        let now = if offset >= 0 {
            ctx.now + d
        } else {
            ctx.now.checked_sub(d).unwrap_or(ctx.now)
        };
        CallContext { now, ..ctx.clone() }
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.lock().buckets.entry(bucket.to_string()).or_default();
    }

    pub fn object(&self, bucket: &str, key: &str) -> Option<StoredObject> {
        self.lock().buckets.get(bucket)?.get(key).cloned()
    }

    /// From now on, keeps every version a request stores under `key` (see [`MockS3::history`]):
    /// what was stored in between two looks at the bucket, e.g. an older config written over a
    /// newer one and replaced again.
    pub fn keep_history(&self, bucket: &str, key: &str) {
        self.lock()
            .history
            .entry((bucket.to_string(), key.to_string()))
            .or_default();
    }

    /// The versions requests stored under `key` since [`MockS3::keep_history`], oldest first,
    /// from the `from`-th on.
    pub fn history(&self, bucket: &str, key: &str, from: usize) -> Vec<StoredObject> {
        self.lock()
            .history
            .get(&(bucket.to_string(), key.to_string()))
            .map(|h| h.get(from..).unwrap_or_default().to_vec())
            .unwrap_or_default()
    }

    /// Stores an object without a request (creating the bucket if needed); returns its ETag.
    pub fn put_object_direct(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
        at: SystemTime,
    ) -> String {
        let etag = payload::etag(body);
        let obj = StoredObject {
            body: body.to_vec(),
            etag: etag.clone(),
            last_modified: at,
            metadata: Vec::new(),
            headers: vec![("content-type".into(), "binary/octet-stream".into())],
        };
        self.lock()
            .buckets
            .entry(bucket.to_string())
            .or_default()
            .insert(key.to_string(), obj);
        etag
    }

    pub fn delete_object_direct(&self, bucket: &str, key: &str) -> bool {
        self.lock()
            .buckets
            .get_mut(bucket)
            .is_some_and(|b| b.remove(key).is_some())
    }

    /// Keys of a bucket in S3's order (UTF-8 binary order).
    pub fn list_keys(&self, bucket: &str) -> Vec<String> {
        self.lock()
            .buckets
            .get(bucket)
            .map(|b| b.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn lookup(&self, access_key: &str) -> Option<SecretKey> {
        let temporary = self
            .lock()
            .temporary
            .iter()
            .find(|(c, _)| c.access_key == access_key)
            .map(|(c, _)| c.clone());
        self.inner
            .credentials
            .iter()
            .find(|c| c.access_key == access_key)
            .cloned()
            .or(temporary)
            .map(|c| SecretKey {
                secret_key: c.secret_key.clone(),
                session_token: c.session_token.clone(),
            })
    }

    /// A temporary credential past its expiry.
    fn expired(&self, access_key: &str, now: SystemTime) -> bool {
        self.lock()
            .temporary
            .iter()
            .any(|(c, expires)| c.access_key == access_key && now >= *expires)
    }

    fn credential(&self, access_key: &str) -> Option<S3Credential> {
        self.inner
            .credentials
            .iter()
            .find(|c| c.access_key == access_key)
            .cloned()
            .or_else(|| {
                self.lock()
                    .temporary
                    .iter()
                    .find(|(c, _)| c.access_key == access_key)
                    .map(|(c, _)| c.clone())
            })
    }

    /// `(bucket, key)` from virtual-hosted or path-style addressing; the key is decoded.
    fn address(&self, req: &HttpRequest) -> (String, String) {
        let host = req.header("host").unwrap_or(&req.authority);
        let host = host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        let path = req.path_only();
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        if let Some(domain) = &self.inner.domain {
            if let Some(bucket) = host.strip_suffix(&format!(".{domain}")) {
                return (
                    bucket.to_string(),
                    decode(path.strip_prefix('/').unwrap_or(path)),
                );
            }
        }
        let p = path.strip_prefix('/').unwrap_or(path);
        match p.split_once('/') {
            Some((b, k)) => (decode(b), decode(k)),
            None => (decode(p), String::new()),
        }
    }

    fn serve(
        &self,
        req: &HttpRequest,
        ctx: &CallContext,
        request_id: &str,
    ) -> (Outcome, Option<String>, String, String) {
        let (bucket, key) = self.address(req);
        let rules = VerifyRules::s3(&self.inner.region, ctx.now);
        let verified = match sigv4::verify(req, &rules, |ak| self.lookup(ak)) {
            Ok(v) => v,
            Err(e) => return (Err(sig_error(&e, req)), None, bucket, key),
        };
        let access_key = Some(verified.access_key.clone());
        if self.expired(&verified.access_key, ctx.now) {
            let e = S3Error::new(400, "ExpiredToken", "The provided token has expired.");
            return (Err(e), access_key, bucket, key);
        }
        let outcome = self.authorised(req, ctx, &verified, &bucket, &key, request_id);
        (outcome, access_key, bucket, key)
    }

    fn authorised(
        &self,
        req: &HttpRequest,
        ctx: &CallContext,
        verified: &sigv4::Verified,
        bucket: &str,
        key: &str,
        _request_id: &str,
    ) -> Outcome {
        let (body, trailers) = payload::decode_body(&verified.payload_hash, &req.body)?;
        let cred = self
            .credential(&verified.access_key)
            .ok_or_else(S3Error::access_denied)?;
        let writes = matches!(req.method.as_str(), "PUT" | "DELETE" | "POST");
        if writes && cred.read_only {
            return Err(S3Error::access_denied());
        }
        if let Some(prefixes) = &cred.allowed_prefixes {
            // Listing is judged by the prefix asked for, objects by their key.
            let subject = if key.is_empty() {
                req.query_param("prefix").unwrap_or_default()
            } else {
                key.to_string()
            };
            if !bucket.is_empty() && !prefixes.iter().any(|p| subject.starts_with(p.as_str())) {
                return Err(S3Error::access_denied());
            }
        }
        let mut guard = self.lock();
        let store = &mut *guard;
        if bucket.is_empty() {
            return match req.method.as_str() {
                "GET" => Ok(list_buckets(store)),
                m => Err(S3Error::new(
                    405,
                    "MethodNotAllowed",
                    format!("The specified method is not allowed against this resource: {m}"),
                )),
            };
        }
        if key.is_empty() {
            return match req.method.as_str() {
                "PUT" => {
                    if store.buckets.contains_key(bucket) {
                        Err(S3Error::new(409, "BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded and you already own it.").with("BucketName", bucket))
                    } else {
                        store.buckets.insert(bucket.to_string(), BTreeMap::new());
                        Ok(HttpResponse::new(200).with_header("location", &format!("/{bucket}")))
                    }
                }
                "HEAD" if store.buckets.contains_key(bucket) => {
                    Ok(HttpResponse::new(200)
                        .with_header("x-amz-bucket-region", &self.inner.region))
                }
                "GET" => {
                    let objects = store
                        .buckets
                        .get(bucket)
                        .ok_or_else(|| S3Error::no_such_bucket(bucket))?;
                    if req.query_param("list-type").as_deref() == Some("2") {
                        list_objects_v2(req, bucket, objects)
                    } else if req.query_param("location").is_some() {
                        Ok(xml_response(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{}</LocationConstraint>", if self.inner.region == "us-east-1" { String::new() } else { xml::escape(&self.inner.region) })))
                    } else {
                        Err(S3Error::not_implemented(
                            "only ListObjectsV2 (list-type=2) is implemented",
                        ))
                    }
                }
                _ if !store.buckets.contains_key(bucket) => Err(S3Error::no_such_bucket(bucket)),
                m => Err(S3Error::not_implemented(&format!("{m} on a bucket"))),
            };
        }
        let objects = store
            .buckets
            .get_mut(bucket)
            .ok_or_else(|| S3Error::no_such_bucket(bucket))?;
        match req.method.as_str() {
            "PUT" => {
                let resp = put_object(req, ctx, objects, key, body, &trailers)?;
                if let (Some(h), Some(o)) = (
                    store
                        .history
                        .get_mut(&(bucket.to_string(), key.to_string())),
                    objects.get(key),
                ) {
                    h.push(o.clone());
                }
                Ok(resp)
            }
            "GET" | "HEAD" => get_object(req, objects, key),
            "DELETE" => {
                // S3 answers 204 whether or not the key existed.
                objects.remove(key);
                Ok(HttpResponse::new(204))
            }
            m => Err(S3Error::not_implemented(&format!("{m} on an object"))),
        }
    }
}

fn sig_error(e: &SigError, req: &HttpRequest) -> S3Error {
    let (status, code, message) = e.s3_error();
    let mut err = S3Error::new(status, code, message);
    match e {
        SigError::SignatureDoesNotMatch {
            string_to_sign,
            canonical_request,
        } => {
            // Like S3: what we signed helps the client debug; the signatures themselves stay out.
            if let Some(ak) = req
                .header("authorization")
                .and_then(|a| sigv4::parse_authorization(a).ok())
            {
                err = err.with("AWSAccessKeyId", ak.access_key);
            }
            err = err
                .with("StringToSign", string_to_sign.clone())
                .with("CanonicalRequest", canonical_request.clone());
        }
        SigError::UnknownAccessKey => {
            if let Some(ak) = req
                .header("authorization")
                .and_then(|a| sigv4::parse_authorization(a).ok())
            {
                err = err.with("AWSAccessKeyId", ak.access_key);
            }
        }
        SigError::WrongRegion { .. } => {
            err = err.with("Region", String::new());
        }
        _ => {}
    }
    err
}

fn xml_response(body: String) -> HttpResponse {
    HttpResponse::new(200)
        .with_header("content-type", "application/xml")
        .with_body(body)
}

fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// `2009-10-12T17:50:30.000Z`
fn iso_date(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let dt = time::OffsetDateTime::from_unix_timestamp(d.as_secs() as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    format!(
        "{}.{:03}Z",
        dt.format(&fmt).unwrap_or_default(),
        d.subsec_millis()
    )
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == etag || t.trim_matches('"') == etag.trim_matches('"'))
}

fn put_object(
    req: &HttpRequest,
    ctx: &CallContext,
    objects: &mut BTreeMap<String, StoredObject>,
    key: &str,
    body: Vec<u8>,
    trailers: &[(String, String)],
) -> Outcome {
    if req.header("x-amz-copy-source").is_some() {
        return Err(S3Error::not_implemented("CopyObject"));
    }
    // Integrity first: a corrupt body is refused before any precondition is looked at.
    let mut digests: Vec<(String, String)> = req.headers.clone();
    digests.extend(trailers.iter().cloned());
    payload::check_digests(&digests, &body)?;
    if let Some(decoded) = req.header("x-amz-decoded-content-length") {
        if decoded.trim().parse::<usize>().ok() != Some(body.len()) {
            return Err(S3Error::new(400, "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header."));
        }
    }
    sse_c_parameters(req)?;
    let existing = objects.get(key);
    if let Some(inm) = req.header("if-none-match") {
        if inm.trim() != "*" {
            return Err(S3Error::not_implemented(
                "If-None-Match other than * on PUT",
            ));
        }
        if existing.is_some() {
            return Err(S3Error::precondition("If-None-Match"));
        }
    }
    if let Some(im) = req.header("if-match") {
        match existing {
            None => return Err(S3Error::no_such_key(key)),
            Some(o) if !etag_matches(im, &o.etag) => return Err(S3Error::precondition("If-Match")),
            Some(_) => {}
        }
    }
    let mut metadata = Vec::new();
    let mut headers = Vec::new();
    for (k, v) in &req.headers {
        let k = k.to_ascii_lowercase();
        if let Some(name) = k.strip_prefix("x-amz-meta-") {
            metadata.push((name.to_string(), v.clone()));
        } else if k == SSE_C_KEY {
            // S3 keeps only a salted HMAC of a customer key, never the key.
            continue;
        } else if KEPT_HEADERS.contains(&k.as_str())
            || k.starts_with("x-amz-server-side-encryption")
            || (k.starts_with("x-amz-checksum-") && k != "x-amz-checksum-algorithm")
        {
            headers.push((k, v.clone()));
        }
    }
    for (k, v) in trailers {
        if k.starts_with("x-amz-checksum-") {
            headers.push((k.clone(), v.clone()));
        }
    }
    if !headers.iter().any(|(k, _)| k == "content-type") {
        headers.push(("content-type".into(), "binary/octet-stream".into()));
    }
    // S3 encrypts every new object (SSE-S3) unless told otherwise, and says so.
    if !headers
        .iter()
        .any(|(k, _)| k == "x-amz-server-side-encryption" || k == SSE_C_ALGORITHM)
    {
        headers.push(("x-amz-server-side-encryption".into(), "AES256".into()));
    }
    let etag = payload::etag(&body);
    let mut resp = HttpResponse::new(200).with_header("etag", &etag);
    for (k, v) in &headers {
        if k.starts_with("x-amz-server-side-encryption") || k.starts_with("x-amz-checksum-") {
            resp = resp.with_header(k, v);
        }
    }
    objects.insert(
        key.to_string(),
        StoredObject {
            body,
            etag,
            last_modified: ctx.now,
            metadata,
            headers,
        },
    );
    Ok(resp)
}

const SSE_C_ALGORITHM: &str = "x-amz-server-side-encryption-customer-algorithm";
const SSE_C_KEY: &str = "x-amz-server-side-encryption-customer-key";
const SSE_C_KEY_MD5: &str = "x-amz-server-side-encryption-customer-key-md5";

/// The SSE-C parameters of a request, checked like S3 does: all three or none, AES256, a
/// 256-bit key whose MD5 is the one given. `Some(md5)` when present.
fn sse_c_parameters(req: &HttpRequest) -> Result<Option<String>, S3Error> {
    let (alg, key, md5) = (
        req.header(SSE_C_ALGORITHM),
        req.header(SSE_C_KEY),
        req.header(SSE_C_KEY_MD5),
    );
    match (alg, key, md5) {
        (None, None, None) => Ok(None),
        (Some(alg), Some(key), Some(md5)) => {
            if alg.trim() != "AES256" {
                return Err(S3Error::new(400, "InvalidEncryptionAlgorithmError", "The encryption request you specified is not valid. The valid value is AES256."));
            }
            use md5::Digest as _;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .unwrap_or_default();
            let digest = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&raw));
            if raw.len() != 32 {
                return Err(S3Error::new(400, "InvalidArgument", "The secret key was invalid for the specified algorithm."));
            }
            if digest != md5.trim() {
                return Err(S3Error::new(400, "InvalidArgument", "The calculated MD5 hash of the key did not match the hash that was provided."));
            }
            Ok(Some(digest))
        }
        _ => Err(S3Error::new(400, "InvalidArgument", "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key.")),
    }
}

fn get_object(req: &HttpRequest, objects: &BTreeMap<String, StoredObject>, key: &str) -> Outcome {
    let obj = objects.get(key).ok_or_else(|| S3Error::no_such_key(key))?;
    // An SSE-C object is readable (HEAD included) only with its key.
    let given = sse_c_parameters(req)?;
    if let Some(stored) = obj.header(SSE_C_KEY_MD5) {
        match given {
            None => return Err(S3Error::new(400, "InvalidRequest", "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.")),
            Some(md5) if md5 != stored.trim() => return Err(S3Error::access_denied()),
            Some(_) => {}
        }
    }
    // Preconditions in RFC 9110 order: If-Match, If-Unmodified-Since, If-None-Match,
    // If-Modified-Since.
    if let Some(im) = req.header("if-match") {
        if !etag_matches(im, &obj.etag) {
            return Err(S3Error::precondition("If-Match"));
        }
    } else if let Some(ius) = req
        .header("if-unmodified-since")
        .and_then(|d| httpdate::parse_http_date(d).ok())
    {
        if truncate_secs(obj.last_modified) > ius {
            return Err(S3Error::precondition("If-Unmodified-Since"));
        }
    }
    let not_modified = if let Some(inm) = req.header("if-none-match") {
        etag_matches(inm, &obj.etag)
    } else if let Some(ims) = req
        .header("if-modified-since")
        .and_then(|d| httpdate::parse_http_date(d).ok())
    {
        truncate_secs(obj.last_modified) <= ims
    } else {
        false
    };
    if not_modified {
        return Ok(HttpResponse::new(304)
            .with_header("etag", &obj.etag)
            .with_header("last-modified", &http_date(obj.last_modified)));
    }
    let total = obj.body.len();
    let (status, range) = match req.header("range") {
        Some(r) => match parse_range(r, total) {
            Some(rg) => (206, Some(rg)),
            None => {
                return Err(S3Error::new(
                    416,
                    "InvalidRange",
                    "The requested range is not satisfiable",
                )
                .with("RangeRequested", r)
                .with("ActualObjectSize", total.to_string()))
            }
        },
        None => (200, None),
    };
    let mut resp = HttpResponse::new(status)
        .with_header("last-modified", &http_date(obj.last_modified))
        .with_header("etag", &obj.etag)
        .with_header("accept-ranges", "bytes");
    let checksum_mode = req
        .header("x-amz-checksum-mode")
        .is_some_and(|m| m.eq_ignore_ascii_case("enabled"));
    for (k, v) in &obj.headers {
        if k.starts_with("x-amz-checksum-") && !checksum_mode {
            continue;
        }
        resp = resp.with_header(k, v);
    }
    for (k, v) in &obj.metadata {
        resp = resp.with_header(&format!("x-amz-meta-{k}"), v);
    }
    let body = match range {
        Some((start, end)) => {
            resp = resp.with_header("content-range", &format!("bytes {start}-{end}/{total}"));
            obj.body[start..=end].to_vec()
        }
        None => obj.body.clone(),
    };
    resp = resp.with_header("content-length", &body.len().to_string());
    if req.method == "GET" {
        resp.body = body;
    }
    Ok(resp)
}

fn truncate_secs(t: SystemTime) -> SystemTime {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(d.as_secs())
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` → inclusive range; None when unsatisfiable.
fn parse_range(h: &str, total: usize) -> Option<(usize, usize)> {
    let spec = h.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    if total == 0 {
        return None;
    }
    if a.is_empty() {
        let n: usize = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        return Some((total.saturating_sub(n), total - 1));
    }
    let start: usize = a.parse().ok()?;
    if start >= total {
        return None;
    }
    let end = if b.is_empty() {
        total - 1
    } else {
        b.parse::<usize>().ok()?.min(total - 1)
    };
    (end >= start).then_some((start, end))
}

fn list_buckets(store: &Store) -> HttpResponse {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListAllMyBucketsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Owner><ID>mock</ID><DisplayName>mock</DisplayName></Owner><Buckets>");
    for name in store.buckets.keys() {
        s.push_str(&format!(
            "<Bucket><Name>{}</Name><CreationDate>2024-01-01T00:00:00.000Z</CreationDate></Bucket>",
            xml::escape(name)
        ));
    }
    s.push_str("</Buckets></ListAllMyBucketsResult>");
    xml_response(s)
}

/// ListObjectsV2 with prefix, delimiter, max-keys, continuation-token, start-after and
/// encoding-type=url (which boto3 always asks for).
fn list_objects_v2(
    req: &HttpRequest,
    bucket: &str,
    objects: &BTreeMap<String, StoredObject>,
) -> Outcome {
    let prefix = req.query_param("prefix").unwrap_or_default();
    let delimiter = req.query_param("delimiter").filter(|d| !d.is_empty());
    let start_after = req.query_param("start-after");
    let token = req.query_param("continuation-token");
    let url_encode = match req.query_param("encoding-type").as_deref() {
        None => false,
        Some("url") => true,
        Some(_) => {
            return Err(S3Error::new(
                400,
                "InvalidArgument",
                "Invalid Encoding Method specified in Request",
            )
            .with("ArgumentName", "encoding-type"))
        }
    };
    let max_keys = match req.query_param("max-keys") {
        None => 1000,
        Some(m) => match m.parse::<i64>() {
            Ok(n) if n >= 0 => n.min(1000) as usize,
            _ => {
                return Err(S3Error::new(
                    400,
                    "InvalidArgument",
                    "Provided max-keys not an integer or within integer range",
                )
                .with("ArgumentName", "max-keys")
                .with("ArgumentValue", m))
            }
        },
    };
    let resume_after = match &token {
        Some(t) => Some(
            B64URL
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    S3Error::new(
                        400,
                        "InvalidArgument",
                        "The continuation token provided is incorrect",
                    )
                    .with("ArgumentName", "continuation-token")
                })?,
        ),
        None => start_after.clone(),
    };
    let enc = |s: &str| {
        if url_encode {
            sigv4::uri_encode(s.as_bytes(), true)
        } else {
            s.to_string()
        }
    };

    let mut contents: Vec<(&String, &StoredObject)> = Vec::new();
    let mut common: BTreeSet<String> = BTreeSet::new();
    let mut count = 0usize;
    let mut last_item: Option<String> = None;
    let mut truncated = false;
    for (k, o) in objects.iter() {
        if !k.starts_with(&prefix) {
            continue;
        }
        if let Some(after) = &resume_after {
            if k <= after
                || (after.ends_with(delimiter.as_deref().unwrap_or("\u{0}"))
                    && k.starts_with(after.as_str()))
            {
                continue;
            }
        }
        let rolled = delimiter.as_ref().and_then(|d| {
            k[prefix.len()..]
                .find(d.as_str())
                .map(|i| k[..prefix.len() + i + d.len()].to_string())
        });
        if let Some(cp) = &rolled {
            if common.contains(cp) {
                continue;
            }
        }
        if count == max_keys {
            truncated = true;
            break;
        }
        count += 1;
        match rolled {
            Some(cp) => {
                last_item = Some(cp.clone());
                common.insert(cp);
            }
            None => {
                last_item = Some(k.clone());
                contents.push((k, o));
            }
        }
    }
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    s.push_str(&format!("<Name>{}</Name>", xml::escape(bucket)));
    s.push_str(&format!("<Prefix>{}</Prefix>", xml::escape(&enc(&prefix))));
    if let Some(d) = &delimiter {
        s.push_str(&format!("<Delimiter>{}</Delimiter>", xml::escape(&enc(d))));
    }
    if let Some(sa) = &start_after {
        s.push_str(&format!(
            "<StartAfter>{}</StartAfter>",
            xml::escape(&enc(sa))
        ));
    }
    if let Some(t) = &token {
        s.push_str(&format!(
            "<ContinuationToken>{}</ContinuationToken>",
            xml::escape(t)
        ));
    }
    s.push_str(&format!(
        "<KeyCount>{count}</KeyCount><MaxKeys>{max_keys}</MaxKeys>"
    ));
    if url_encode {
        s.push_str("<EncodingType>url</EncodingType>");
    }
    s.push_str(&format!("<IsTruncated>{truncated}</IsTruncated>"));
    if truncated {
        if let Some(last) = &last_item {
            s.push_str(&format!(
                "<NextContinuationToken>{}</NextContinuationToken>",
                B64URL.encode(last)
            ));
        }
    }
    for (k, o) in contents {
        s.push_str(&format!(
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size><StorageClass>{}</StorageClass></Contents>",
            xml::escape(&enc(k)),
            iso_date(o.last_modified),
            xml::escape(&o.etag),
            o.body.len(),
            xml::escape(o.storage_class()),
        ));
    }
    for cp in common {
        s.push_str(&format!(
            "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
            xml::escape(&enc(&cp))
        ));
    }
    s.push_str("</ListBucketResult>");
    Ok(xml_response(s))
}

impl Handler for MockS3 {
    fn handle(&self, req: &HttpRequest, ctx: &CallContext) -> Reply {
        let shifted = self.shifted(ctx);
        let ctx = &shifted;
        let seq = {
            let mut s = self.lock();
            s.seq += 1;
            s.seq
        };
        let request_id = format!("{seq:016X}");
        let (outcome, access_key, bucket, key) = self.serve(req, ctx, &request_id);
        let (resp, error_code) = match outcome {
            Ok(r) => (r, None),
            Err(e) => {
                let resource = req.path_only().to_string();
                let extra: Vec<(&str, String)> =
                    e.extra.iter().map(|(k, v)| (*k, v.clone())).collect();
                let mut r =
                    HttpResponse::new(e.status).with_header("content-type", "application/xml");
                // HEAD answers carry no body, only the status.
                if req.method != "HEAD" {
                    r.body =
                        xml::error_body_with(&e.code, &e.message, &resource, &request_id, &extra)
                            .into_bytes();
                }
                (r, Some(e.code))
            }
        };
        let mut resp = resp
            .with_header("x-amz-request-id", &request_id)
            .with_header("x-amz-id-2", &format!("mock/{request_id}"))
            .with_header("date", &http_date(ctx.now))
            .with_header("server", "AmazonS3");
        if resp.header("content-length").is_none() {
            let len = resp.body.len().to_string();
            resp = resp.with_header("content-length", &len);
        }
        self.lock().log.push(LoggedRequest {
            seq,
            method: req.method.clone(),
            path: req.path.clone(),
            bucket,
            key,
            node: ctx.node.clone(),
            time: ctx.now,
            status: resp.status,
            error_code,
            access_key,
        });
        Reply::now(resp)
    }
}
