//! What the export needs from an object store, independent of S3 or GCS: build a conditional
//! upload and a metadata read as plain HTTP requests, and classify their answers. `s3.rs` (SigV4,
//! `If-Match`/`If-None-Match`) and `gcs.rs` (`ifGenerationMatch`, OAuth2 tokens from `gcs_auth.rs`,
//! docs/gcs.md) implement it.

use std::fmt;
use std::rc::Rc;

use crate::http::{HttpResponse, OutboundRequest};
use crate::node_lock::SharedStore;
use crate::settings::{StorageBackend, StorageSettings};

pub mod aws_credentials;
pub mod election_objects;
pub mod gcs;
pub mod gcs_auth;
pub mod lineage;
pub mod s3;
pub mod sigv4;
pub mod timestamp;

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
    /// `config-sequence`: one more than the object this write replaces (docs/election.md,
    /// "Which config is newer").
    pub sequence: u64,
    /// `config-updated-at`: the config's newest `updated_at`, ms, when it has one.
    pub updated_at_ms: Option<u64>,
    /// `config-supersedes` (`lineage`): short hashes of the configs this write replaced, newest
    /// first; not written when empty.
    pub supersedes: Vec<String>,
    /// A sealed export's metadata (`seal::export_metadata`): name (without the store's prefix)
    /// and value; empty otherwise.
    pub seal: Vec<(&'static str, String)>,
}

/// The message of an error answer without a body (HEAD), whose code is the status's name.
pub const NO_ERROR_MESSAGE: &str = "no error message in the response";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError {
    /// HTTP status, 0 when the call itself failed.
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl StoreError {
    /// A store's error answer as a log line will show it: code and message log-safe and bounded
    /// (the answer is the server's text).
    pub fn from_answer(status: u16, code: &str, message: &str) -> StoreError {
        StoreError {
            status,
            code: log_safe(code, 64),
            message: log_safe(message, 300),
        }
    }

    /// Throttling, server errors and transport failures are worth retrying; 4xx usually are not,
    /// but the export retries anyway with backoff (credentials get rotated, buckets get created).
    pub fn is_server_side(&self) -> bool {
        self.status == 0 || self.status == 429 || self.status >= 500
    }

    /// For an error no retry can fix (wrong keys, a missing permission), what the operator must
    /// change; the export then backs off long and logs at error level, and the native tool stops
    /// at once (docs/credentials.md).
    pub fn needs_operator(&self) -> Option<&'static str> {
        // A body-less answer (HEAD) gets the status's name as its code ("AccessDenied" for any
        // 403), not the store's: only that one is not judged. A store may send a code without a
        // message (s3s-fs: `SignatureDoesNotMatch` alone), which is judged.
        let bodyless = self.message == NO_ERROR_MESSAGE;
        Some(match self.code.as_str() {
            "SignatureDoesNotMatch" => {
                "the secret access key does not belong to the access key id (check aws_secret_access_key / AWS_SECRET_ACCESS_KEY, and that nothing rewrites the request on the way)"
            }
            "InvalidAccessKeyId" => {
                "the access key id is unknown to this store (check aws_access_key_id / AWS_ACCESS_KEY_ID, the region and storage_endpoint)"
            }
            "AccessDenied" if self.status == 403 && !bodyless => {
                "the credentials lack a permission on this bucket (grant s3:GetObject, s3:PutObject, s3:ListBucket and s3:DeleteObject on the bucket and prefix)"
            }
            _ => return None,
        })
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
    /// `config-sequence` and `config-updated-at` (ms), when the writer set them.
    pub sequence: Option<u64>,
    pub updated_at_ms: Option<u64>,
    /// `config-supersedes` (`lineage::parse`; empty when absent).
    pub supersedes: Vec<String>,
    /// Signature and encryption key ids of a sealed export (docs/sealed-exports.md).
    pub seal: crate::seal::SealMeta,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadOutcome {
    Found(RemoteMeta),
    Missing,
    Failed(StoreError),
}

/// One object of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    pub key: String,
    /// Milliseconds since the epoch (S3 `LastModified`, GCS `updated`); `None` if unreadable.
    pub modified_ms: Option<u64>,
    /// Creation time, ms since the epoch (GCS `timeCreated`; S3 has none).
    pub created_ms: Option<u64>,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListOutcome {
    /// One page; `next` continues the listing (S3 continuation token, GCS page token).
    Page {
        entries: Vec<ListEntry>,
        next: Option<String>,
    },
    Failed(StoreError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetOutcome {
    Found {
        body: Vec<u8>,
        meta: RemoteMeta,
    },
    /// The version asked for with `If-None-Match` is still current.
    NotModified,
    Missing,
    Failed(StoreError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Deleted, or already absent.
    Deleted,
    Failed(StoreError),
}

/// What the core needs from an object store, as plain HTTP requests to build and answers to
/// classify: conditional put, get, head, list (prefix, paging) and delete. A store may need a
/// prerequisite request first (GCS: an OAuth2 token) — the orchestrator sends it when
/// `prerequisite` returns one and hands the answer back, before any other request of the store.
/// The election's registration objects are a trait of their own (`ElectionObjects`).
pub trait ObjectStore: ElectionObjects {
    /// `s3://bucket/key`, for log lines.
    fn describe(&self, key: &str) -> String;
    /// The `dispatch_http_call` upstream (`host:port` or a cluster name), for log lines.
    fn upstream(&self) -> &str;
    /// Whether writes carry preconditions (S3 `If-Match`/`If-None-Match`).
    fn conditional_writes(&self) -> bool;
    fn put(
        &self,
        key: &str,
        body: &Rc<Vec<u8>>,
        precondition: &Precondition,
        meta: &ExportMeta,
        now_ms: u64,
    ) -> Result<OutboundRequest, String>;
    fn head(&self, key: &str, now_ms: u64) -> Result<OutboundRequest, String>;
    /// A download; `if_none_match`: the version already held (answered "not modified").
    fn get(
        &self,
        key: &str,
        if_none_match: Option<&str>,
        now_ms: u64,
    ) -> Result<OutboundRequest, String>;
    /// One page of keys under `prefix`; `page`: the `next` of the previous page.
    fn list(
        &self,
        prefix: &str,
        page: Option<&str>,
        now_ms: u64,
    ) -> Result<OutboundRequest, String>;
    fn delete(&self, key: &str, now_ms: u64) -> Result<OutboundRequest, String>;
    fn parse_put(&self, resp: &HttpResponse) -> PutOutcome;
    fn parse_head(&self, resp: &HttpResponse) -> HeadOutcome;
    fn parse_get(&self, resp: HttpResponse) -> GetOutcome;
    fn parse_list(&self, resp: &HttpResponse) -> ListOutcome;
    fn parse_delete(&self, resp: &HttpResponse) -> DeleteOutcome;

    /// A request to send before any other (a token), or `None` when the store is ready.
    fn prerequisite(&mut self, _now_ms: u64) -> Option<OutboundRequest> {
        None
    }
    /// Whether the prerequisite is being prepared in slices (a JWT signature): the engine then
    /// ticks at every host tick until it is sent.
    fn preparing(&self) -> bool {
        false
    }
    /// Whether requests can be built now (GCS: a valid token); `false` while a failed token
    /// request backs off, so callers wait instead of failing to build requests.
    fn ready(&self, _now_ms: u64) -> bool {
        true
    }
    /// Whether an answer of this store says its credentials are no longer good (a 401; S3's
    /// `ExpiredToken`): the engine then calls `on_unauthorized`.
    fn rejects_credentials(&self, resp: &HttpResponse) -> bool {
        resp.status == 401
    }
    /// Whether an answer refuses the request's time (S3 `RequestTimeTooSkewed`, a token endpoint
    /// refusing the assertion's `iat`): its `Date` then corrects this node's clock.
    fn rejects_clock(&self, _resp: &HttpResponse) -> bool {
        false
    }
    /// A request of this store was answered 401: drop cached credentials (a token) so the next
    /// `prerequisite` fetches new ones.
    fn on_unauthorized(&mut self, _now_ms: u64) {}
    /// Publishes credentials fetched by this worker to shared data under `key`, or takes over
    /// newer ones another worker of the node published (called by the lease holder before its
    /// prerequisite and after each answer to it).
    fn share(&mut self, _key: &str, _shared: &mut dyn SharedStore, _now_ms: u64) {}
    /// The store's clock minus this node's (ms), measured from the store's `Date`: signatures and
    /// token assertions use the store's time.
    fn set_clock_skew(&mut self, _skew_ms: i64) {}
    /// The prerequisite's answer (`Err`: the call failed, with the host's reason).
    fn on_prerequisite(
        &mut self,
        _answer: Result<HttpResponse, String>,
        _now_ms: u64,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// The election's registration objects as Kong Enterprise names, writes and lists them
/// (docs/election.md): how a store registers, refreshes and reads back a candidate. Apart from
/// `ObjectStore` so a store's election behaviour is one impl block, checked against Kong's.
pub trait ElectionObjects {
    /// An empty registration object (Kong's election objects: empty `text/plain`, no metadata);
    /// answered through `parse_put`.
    fn put_marker(&self, key: &str, now_ms: u64) -> Result<OutboundRequest, String>;
    /// Creates a registration `put_marker` answered 404 for (GCS refreshes with a metadata
    /// update, which needs the object); answered through `parse_put`.
    fn create_marker(&self, key: &str, now_ms: u64) -> Result<OutboundRequest, String> {
        self.put_marker(key, now_ms)
    }
    /// Whether `put_marker` refreshes an existing registration in place (and answers 404 when
    /// there is none: `create_marker` follows).
    fn refreshes_in_place(&self) -> bool {
        false
    }
    /// The full key of this node's registration under `election_prefix` (ends with `/`).
    fn election_key(&self, election_prefix: &str, node_id: &str, register_time_ms: u64) -> String;
    /// A listed object under `election_prefix` as a candidate, as Kong parses it; `Err` names
    /// what is malformed (the election logs it and skips the object).
    fn election_candidate(
        &self,
        election_prefix: &str,
        entry: &ListEntry,
    ) -> Result<election_objects::ElectionCandidate, String>;
}

/// One log-safe line: no control characters, at most `max` characters.
pub(crate) fn log_safe(s: &str, max: usize) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim();
    match trimmed.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", trimmed.get(..i).unwrap_or(trimmed)),
        None => trimmed.to_string(),
    }
}

/// The store the settings describe.
pub fn for_settings(settings: &StorageSettings) -> Box<dyn ObjectStore> {
    match &settings.backend {
        StorageBackend::S3(s3) => Box::new(s3::S3Store::new(
            s3.clone(),
            settings.location.bucket.clone(),
            settings.upstream.clone(),
        )),
        StorageBackend::Gcs(gcs) => Box::new(gcs::GcsStore::new(
            gcs.clone(),
            settings.location.bucket.clone(),
            settings.upstream.clone(),
        )),
    }
}
