//! What the export needs from an object store, independent of S3 or GCS: build a conditional
//! upload and a metadata read as plain HTTP requests, and classify their answers. `s3` implements
//! it now; GCS (ifGenerationMatch, OAuth2) will implement the same trait.

use std::fmt;
use std::rc::Rc;

/// A request for `dispatch_http_call`. `authority` becomes `:authority` (the Host header), so
/// `headers` never contains `host`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundRequest {
    /// `host:port` (ngx) or a cluster name (Envoy).
    pub upstream: String,
    pub method: String,
    pub path: String,
    pub authority: String,
    pub scheme: String,
    pub headers: Vec<(String, String)>,
    /// Shared with the exported document: the shell passes it to the host as a slice.
    pub body: Rc<Vec<u8>>,
}

impl OutboundRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
}

pub fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Conditional write: never overwrite something we have not seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Unconditional (the store does not support conditional writes).
    None,
    /// Create only (S3 `If-None-Match: *`, GCS `ifGenerationMatch=0`).
    IfAbsent,
    /// Replace only this version (S3 `If-Match: <etag>`, GCS `ifGenerationMatch=<generation>`).
    IfMatch(String),
}

/// Metadata config-bridge writes with every export and reads back on a conflict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportMeta {
    pub uploader: String,
    /// Host time (ms since the epoch) at which this node first saw the config.
    pub applied_at: u64,
    pub sha256_hex: String,
    /// The same digest as bytes (the checksum header and the signature reuse it).
    pub sha256: [u8; 32],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError {
    /// HTTP status, 0 when the call itself failed.
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl StoreError {
    /// Throttling, server errors and transport failures are worth retrying; 4xx usually are not,
    /// but the export retries anyway with backoff (credentials get rotated, buckets get created).
    pub fn is_server_side(&self) -> bool {
        self.status == 0 || self.status == 429 || self.status >= 500
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} {}: {}", self.status, self.code, self.message)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    Stored {
        version: Option<String>,
    },
    /// The object changed since we last saw it (or exists, for `IfAbsent`).
    PreconditionFailed,
    Failed(StoreError),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteMeta {
    pub version: Option<String>,
    pub uploader: Option<String>,
    pub applied_at: Option<u64>,
    pub sha256_hex: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadOutcome {
    Found(RemoteMeta),
    Missing,
    Failed(StoreError),
}

pub trait ObjectStore {
    /// `s3://bucket/key`, for log lines.
    fn describe(&self, key: &str) -> String;
    fn put(
        &self,
        key: &str,
        body: &Rc<Vec<u8>>,
        precondition: &Precondition,
        meta: &ExportMeta,
        now_ms: u64,
    ) -> Result<OutboundRequest, String>;
    fn head(&self, key: &str, now_ms: u64) -> Result<OutboundRequest, String>;
    fn parse_put(&self, resp: &HttpResponse) -> PutOutcome;
    fn parse_head(&self, resp: &HttpResponse) -> HeadOutcome;
}
