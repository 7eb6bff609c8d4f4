//! Google Cloud Storage through its JSON API (docs/gcs.md), authorised with an OAuth2 bearer
//! token (`gcs_auth`): multipart upload with the export's metadata and `ifGenerationMatch`
//! (0 = must not exist), object resource reads, `alt=media` downloads, listings with `prefix` and
//! `pageToken`, deletes. A version is an object generation.

use std::rc::Rc;

use crate::json;
use crate::json::{Map, Value};

use super::election_objects::{self, ElectionCandidate};
use super::gcs_auth::TokenCache;
use super::lineage;
use super::timestamp::rfc3339_ms;
use super::{
    DeleteOutcome, ElectionObjects, ExportMeta, GetOutcome, HeadOutcome, ListEntry, ListOutcome,
    ObjectStore, Precondition, PutOutcome, RemoteMeta, StoreError,
};
use crate::http::{HttpResponse, OutboundRequest};
use crate::http_url::{percent_encode, HttpUrl};
use crate::settings::GcsSettings;

/// Custom metadata keys, the same as S3's `x-amz-meta-*` (so tools read either store alike).
pub const META_UPLOADER: &str = "uploader";
pub const META_APPLIED_AT: &str = "config-applied-at";
pub const META_SHA256: &str = "config-sha256";
pub const META_SEQUENCE: &str = "config-sequence";
pub const META_UPDATED_AT: &str = "config-updated-at";
pub const META_SUPERSEDES: &str = "config-supersedes";
/// On an election registration: the time of its last refresh (ms, this node's clock). A refresh
/// is a metadata update (PATCH), as Kong Enterprise refreshes: `updated` moves, `timeCreated`
/// (the register time every node reads) stays (docs/election.md, "GCS").
pub const META_REFRESHED_AT: &str = "refreshed-at";

pub struct GcsStore {
    endpoint: HttpUrl,
    bucket: String,
    upstream: String,
    tokens: TokenCache,
}

impl GcsStore {
    pub fn new(settings: GcsSettings, bucket: String, upstream: String) -> GcsStore {
        GcsStore {
            endpoint: settings.endpoint,
            bucket,
            upstream,
            tokens: TokenCache::new(settings.tokens, settings.scope),
        }
    }

    /// Token requests sent so far (diagnostics and tests).
    pub fn token_requests(&self) -> u64 {
        self.tokens.requests
    }

    fn base(&self) -> &str {
        crate::text::trim_end_ascii(self.endpoint.path(), b'/')
    }

    /// `/storage/v1/b/<bucket>/o/<object>`: the object name is one path segment (`/` → `%2F`).
    fn object_path(&self, key: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base(),
            self.bucket,
            percent_encode(key, false)
        )
    }

    fn request(
        &self,
        method: &str,
        path: String,
        mut headers: Vec<(String, String)>,
        body: Rc<Vec<u8>>,
        now_ms: u64,
    ) -> Result<OutboundRequest, String> {
        headers.push(("authorization".into(), self.tokens.bearer(now_ms)?));
        if !body.is_empty() || method == "POST" {
            headers.push(("content-length".into(), body.len().to_string()));
        }
        Ok(OutboundRequest {
            upstream: self.upstream.clone(),
            method: method.into(),
            path,
            authority: self.endpoint.authority(),
            scheme: self.endpoint.scheme.clone(),
            headers,
            body,
        })
    }

    /// A multipart upload: the object resource (name, content type, metadata) and the bytes.
    fn upload(
        &self,
        key: &str,
        content_type: &str,
        metadata: Option<Value>,
        data: &[u8],
        precondition: &Precondition,
        now_ms: u64,
    ) -> Result<OutboundRequest, String> {
        let mut resource = Map::new();
        resource.insert("name".into(), Value::String(key.into()));
        resource.insert("contentType".into(), Value::String(content_type.into()));
        if let Some(m) = metadata {
            resource.insert("metadata".into(), m);
        }
        let resource = Value::Object(resource);
        // The boundary is derived from the content's digest, so the content cannot contain it
        // (it would have to contain its own hash).
        let boundary = format!(
            "config-bridge-{}",
            crate::document::sha256_hex(data).get(..32).unwrap_or("0")
        );
        let resource = crate::json::to_text(&resource);
        let mut body = Vec::with_capacity(data.len() + resource.len() + 256);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n{resource}\r\n--{boundary}\r\ncontent-type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let mut query = format!("uploadType=multipart&name={}", percent_encode(key, false));
        match precondition {
            Precondition::None => {}
            Precondition::IfAbsent => query.push_str("&ifGenerationMatch=0"),
            Precondition::IfMatch(generation) => {
                query.push_str(&format!(
                    "&ifGenerationMatch={}",
                    percent_encode(generation, false)
                ));
            }
        }
        let path = format!(
            "{}/upload/storage/v1/b/{}/o?{query}",
            self.base(),
            self.bucket
        );
        let headers = vec![(
            "content-type".to_string(),
            format!("multipart/related; boundary={boundary}"),
        )];
        self.request("POST", path, headers, Rc::new(body), now_ms)
    }
}

impl ObjectStore for GcsStore {
    fn describe(&self, key: &str) -> String {
        format!("gcs://{}/{}", self.bucket, key)
    }

    fn upstream(&self) -> &str {
        &self.upstream
    }

    fn conditional_writes(&self) -> bool {
        true
    }

    fn put(
        &self,
        key: &str,
        body: &Rc<Vec<u8>>,
        precondition: &Precondition,
        meta: &ExportMeta,
        now_ms: u64,
    ) -> Result<OutboundRequest, String> {
        let mut metadata = json!({
            META_UPLOADER: meta.uploader,
            META_APPLIED_AT: meta.applied_at.to_string(),
            META_SHA256: meta.sha256_hex,
            META_SEQUENCE: meta.sequence.to_string(),
        });
        if let Some(m) = metadata.as_object_mut() {
            if let Some(ms) = meta.updated_at_ms {
                m.insert(META_UPDATED_AT.to_string(), Value::String(ms.to_string()));
            }
            if !meta.supersedes.is_empty() {
                let list = lineage::render(&meta.supersedes);
                m.insert(META_SUPERSEDES.to_string(), Value::String(list));
            }
            for (name, value) in &meta.seal {
                m.insert((*name).to_string(), Value::String(value.clone()));
            }
        }
        self.upload(
            key,
            "application/json",
            Some(metadata),
            body,
            precondition,
            now_ms,
        )
    }

    fn head(&self, key: &str, now_ms: u64) -> Result<OutboundRequest, String> {
        self.request(
            "GET",
            self.object_path(key),
            Vec::new(),
            Rc::default(),
            now_ms,
        )
    }

    fn get(
        &self,
        key: &str,
        if_none_match: Option<&str>,
        now_ms: u64,
    ) -> Result<OutboundRequest, String> {
        let mut path = format!("{}?alt=media", self.object_path(key));
        if let Some(generation) = if_none_match {
            path.push_str(&format!(
                "&ifGenerationNotMatch={}",
                percent_encode(generation, false)
            ));
        }
        self.request("GET", path, Vec::new(), Rc::default(), now_ms)
    }

    fn list(
        &self,
        prefix: &str,
        page: Option<&str>,
        now_ms: u64,
    ) -> Result<OutboundRequest, String> {
        // Only the fields the listing reads; at most 1,000 a page (Kong lists one page of 1,000).
        let mut path = format!(
            "{}/storage/v1/b/{}/o?prefix={}&maxResults=1000",
            self.base(),
            self.bucket,
            percent_encode(prefix, false)
        );
        if let Some(token) = page {
            path.push_str(&format!("&pageToken={}", percent_encode(token, false)));
        }
        self.request("GET", path, Vec::new(), Rc::default(), now_ms)
    }

    fn delete(&self, key: &str, now_ms: u64) -> Result<OutboundRequest, String> {
        self.request(
            "DELETE",
            self.object_path(key),
            Vec::new(),
            Rc::default(),
            now_ms,
        )
    }

    fn parse_put(&self, resp: &HttpResponse) -> PutOutcome {
        match resp.status {
            200..=299 => PutOutcome::Stored {
                version: json_body(resp)
                    .as_ref()
                    .and_then(|v| text_or_number(v.get("generation"))),
            },
            // `ifGenerationMatch` did not hold (the object exists, changed or vanished).
            412 => PutOutcome::PreconditionFailed,
            _ => PutOutcome::Failed(error_from(resp)),
        }
    }

    fn parse_head(&self, resp: &HttpResponse) -> HeadOutcome {
        match resp.status {
            200..=299 => match json_body(resp) {
                Some(v) => HeadOutcome::Found(resource_meta(&v)),
                None => HeadOutcome::Failed(StoreError {
                    status: resp.status,
                    code: "invalidResponse".into(),
                    message: "the object resource is not JSON".into(),
                }),
            },
            404 => HeadOutcome::Missing,
            _ => HeadOutcome::Failed(error_from(resp)),
        }
    }

    fn parse_get(&self, resp: HttpResponse) -> GetOutcome {
        match resp.status {
            200..=299 => {
                let meta_header = |k: &str| resp.header(&format!("x-goog-meta-{k}"));
                let meta = RemoteMeta {
                    version: resp.header("x-goog-generation").map(str::to_string),
                    uploader: meta_header(META_UPLOADER).map(str::to_string),
                    applied_at: meta_header(META_APPLIED_AT).and_then(|v| v.trim().parse().ok()),
                    sha256_hex: meta_header(META_SHA256).map(str::to_string),
                    sequence: meta_header(META_SEQUENCE).and_then(|v| v.trim().parse().ok()),
                    updated_at_ms: meta_header(META_UPDATED_AT).and_then(|v| v.trim().parse().ok()),
                    supersedes: meta_header(META_SUPERSEDES)
                        .map(lineage::parse)
                        .unwrap_or_default(),
                    seal: crate::seal::SealMeta::read(|k| meta_header(k).map(str::to_string)),
                };
                GetOutcome::Found {
                    body: resp.body,
                    meta,
                }
            }
            // `ifGenerationNotMatch` held: still the generation asked about.
            304 => GetOutcome::NotModified,
            404 => GetOutcome::Missing,
            _ => GetOutcome::Failed(error_from(&resp)),
        }
    }

    fn parse_list(&self, resp: &HttpResponse) -> ListOutcome {
        if !(200..=299).contains(&resp.status) {
            return ListOutcome::Failed(error_from(resp));
        }
        let Some(v) = json_body(resp) else {
            return ListOutcome::Failed(StoreError {
                status: resp.status,
                code: "invalidResponse".into(),
                message: "the listing is not JSON".into(),
            });
        };
        let entries = v
            .get("items")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|o| {
                        Some(ListEntry {
                            key: o.get("name")?.as_str()?.to_string(),
                            modified_ms: o
                                .get("updated")
                                .and_then(Value::as_str)
                                .and_then(rfc3339_ms),
                            // The register time, as Kong Enterprise reads it.
                            created_ms: o
                                .get("timeCreated")
                                .and_then(Value::as_str)
                                .and_then(rfc3339_ms),
                            size: text_or_number(o.get("size"))
                                .and_then(|s| s.parse().ok())
                                .unwrap_or(0),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let next = v
            .get("nextPageToken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        ListOutcome::Page { entries, next }
    }

    fn parse_delete(&self, resp: &HttpResponse) -> DeleteOutcome {
        match resp.status {
            200..=299 | 404 => DeleteOutcome::Deleted,
            _ => DeleteOutcome::Failed(error_from(resp)),
        }
    }

    fn prerequisite(&mut self, now_ms: u64) -> Option<OutboundRequest> {
        self.tokens.request(now_ms)
    }

    fn ready(&self, now_ms: u64) -> bool {
        self.tokens.bearer(now_ms).is_ok()
    }

    fn preparing(&self) -> bool {
        self.tokens.signing()
    }

    fn on_unauthorized(&mut self, _now_ms: u64) {
        self.tokens.invalidate();
    }

    fn rejects_clock(&self, resp: &HttpResponse) -> bool {
        super::gcs_auth::rejects_assertion_time(resp)
    }

    fn set_clock_skew(&mut self, skew_ms: i64) {
        self.tokens.set_clock_skew(skew_ms);
    }

    fn on_prerequisite(
        &mut self,
        answer: Result<HttpResponse, String>,
        now_ms: u64,
    ) -> Result<(), String> {
        self.tokens.answered(answer, now_ms)
    }
}

/// Kong Enterprise's registration objects on this store (docs/election.md).
impl ElectionObjects for GcsStore {
    fn put_marker(&self, key: &str, now_ms: u64) -> Result<OutboundRequest, String> {
        // A refresh, as Kong Enterprise refreshes: a metadata update keeps `timeCreated` (the
        // register time) and moves `updated`. A missing object answers 404: `create_marker`.
        let patch =
            crate::json::to_text(&json!({ "metadata": { META_REFRESHED_AT: now_ms.to_string() } }));
        let headers = vec![("content-type".to_string(), "application/json".to_string())];
        self.request(
            "PATCH",
            self.object_path(key),
            headers,
            Rc::new(patch.into_bytes()),
            now_ms,
        )
    }

    fn create_marker(&self, key: &str, now_ms: u64) -> Result<OutboundRequest, String> {
        // Kong's GCS election objects: empty `text/plain`. Created only if absent, so a racing
        // refresh's object (and its `timeCreated`) is never replaced.
        self.upload(
            key,
            "text/plain",
            None,
            &[],
            &Precondition::IfAbsent,
            now_ms,
        )
    }

    fn refreshes_in_place(&self) -> bool {
        true
    }

    fn election_key(&self, election_prefix: &str, node_id: &str, _register_time_ms: u64) -> String {
        format!("{election_prefix}{node_id}")
    }

    fn election_candidate(
        &self,
        election_prefix: &str,
        entry: &ListEntry,
    ) -> Result<ElectionCandidate, String> {
        // The register time is the object's creation (`timeCreated`), as Kong Enterprise reads it.
        election_objects::candidate(election_prefix, entry, "updated time", |name| {
            if name.is_empty() || name.contains('/') {
                return Err(format!("not `<node_id>`: {}", crate::json::quoted(name)));
            }
            let created = entry
                .created_ms
                .ok_or_else(|| format!("no timeCreated for {}", crate::json::quoted(name)))?;
            Ok((created, name))
        })
    }
}

fn json_body(resp: &HttpResponse) -> Option<Value> {
    crate::json::parse(&resp.body).ok()
}

/// GCS sends int64 fields (generation, size) as JSON strings; accept numbers too.
fn text_or_number(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Our metadata and the generation from an object resource.
fn resource_meta(v: &Value) -> RemoteMeta {
    let empty = Map::new();
    let m = v
        .get("metadata")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let meta = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
    RemoteMeta {
        version: text_or_number(v.get("generation")),
        uploader: meta(META_UPLOADER),
        applied_at: meta(META_APPLIED_AT).and_then(|s| s.trim().parse().ok()),
        sha256_hex: meta(META_SHA256),
        sequence: meta(META_SEQUENCE).and_then(|s| s.trim().parse().ok()),
        updated_at_ms: meta(META_UPDATED_AT).and_then(|s| s.trim().parse().ok()),
        supersedes: meta(META_SUPERSEDES)
            .map(|s| lineage::parse(&s))
            .unwrap_or_default(),
        seal: crate::seal::SealMeta::read(meta),
    }
}

/// GCS's JSON error (`{"error":{"code","message","errors":[{"reason"}]}}`) as (status, reason,
/// message); a body that is not that shape gives the status alone (never the body: it may echo
/// what we sent).
pub fn error_from(resp: &HttpResponse) -> StoreError {
    let v = json_body(resp).unwrap_or(Value::Null);
    let error = v.get("error");
    let reason = error
        .and_then(|e| e.get("errors"))
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(|e| e.get("reason"))
        .and_then(Value::as_str)
        .or_else(|| error.and_then(|e| e.get("status")).and_then(Value::as_str))
        .map(str::to_string)
        .unwrap_or_else(|| status_reason(resp.status).to_string());
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| "no error message in the response".to_string());
    StoreError::from_answer(resp.status, &reason, &message)
}

fn status_reason(status: u16) -> &'static str {
    match status {
        400 => "badRequest",
        401 => "authError",
        403 => "forbidden",
        404 => "notFound",
        409 => "conflict",
        412 => "conditionNotMet",
        429 => "rateLimitExceeded",
        500 => "backendError",
        503 => "serviceUnavailable",
        _ => "httpError",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::gcs::{TokenProvider, SCOPE_READ_WRITE};

    fn store() -> GcsStore {
        let settings = GcsSettings {
            endpoint: HttpUrl::parse("http://127.0.0.1:4443/").unwrap(),
            tokens: TokenProvider::Metadata {
                url: HttpUrl::parse("http://169.254.169.254").unwrap(),
                upstream: "169.254.169.254:80".into(),
            },
            scope: SCOPE_READ_WRITE,
        };
        GcsStore::new(settings, "b-1".into(), "127.0.0.1:4443".into())
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
    fn no_request_leaves_without_a_token_and_the_token_is_fetched_first() {
        let mut s = store();
        assert!(s.head("k", 0).unwrap_err().contains("no GCS access token"));
        let t = s.prerequisite(0).unwrap();
        assert_eq!(t.header("metadata-flavor"), Some("Google"));
        assert!(t.path.starts_with(
            "/computeMetadata/v1/instance/service-accounts/default/token?scopes=https%3A%2F%2F"
        ));
        s.on_prerequisite(
            Ok(resp(
                200,
                &[],
                r#"{"access_token":"ya29.t","expires_in":3599}"#,
            )),
            0,
        )
        .unwrap();
        assert_eq!(s.prerequisite(1000), None, "cached");
        // Renewed 5 minutes before it expires.
        assert!(s.prerequisite(3_299_000).is_some());
        let put = s
            .put(
                "p/3.9/config.json",
                &Rc::new(b"{}".to_vec()),
                &Precondition::IfAbsent,
                &ExportMeta {
                    uploader: "n1".into(),
                    applied_at: 7,
                    sha256_hex: crate::document::sha256_hex(b"{}"),
                    sha256: crate::document::sha256(b"{}"),
                    sequence: 4,
                    updated_at_ms: Some(1_700_000_000_000),
                    supersedes: vec!["0123456789ab".into(), "ba9876543210".into()],
                    seal: Vec::new(),
                },
                1000,
            )
            .unwrap();
        assert_eq!(put.header("authorization"), Some("Bearer ya29.t"));
        assert_eq!(
            put.path,
            "/upload/storage/v1/b/b-1/o?uploadType=multipart&name=p%2F3.9%2Fconfig.json&ifGenerationMatch=0"
        );
        let body = String::from_utf8_lossy(&put.body).to_string();
        assert!(
            body.contains(r#""metadata":{"config-applied-at":"7""#),
            "{body}"
        );
        assert!(body.contains(r#""config-sequence":"4""#), "{body}");
        assert!(
            body.contains(r#""config-updated-at":"1700000000000""#),
            "{body}"
        );
        assert!(
            body.contains(r#""config-supersedes":"0123456789ab,ba9876543210""#),
            "{body}"
        );
        s.on_unauthorized(2000);
        assert!(s.get("k", None, 2000).is_err(), "a 401 drops the token");
    }

    #[test]
    fn parses_json_errors_listings_and_generations() {
        let s = store();
        let e = error_from(&resp(
            403,
            &[],
            r#"{"error":{"code":403,"message":"x@y does not have storage.objects.create access","errors":[{"reason":"forbidden"}]}}"#,
        ));
        assert_eq!(
            e.to_string(),
            "HTTP 403 forbidden: x@y does not have storage.objects.create access"
        );
        assert_eq!(
            s.parse_put(&resp(412, &[], "{}")),
            PutOutcome::PreconditionFailed
        );
        assert_eq!(
            s.parse_put(&resp(200, &[], r#"{"generation":"1700000000000001"}"#)),
            PutOutcome::Stored {
                version: Some("1700000000000001".into())
            }
        );
        let page = s.parse_list(&resp(
            200,
            &[],
            r#"{"items":[{"name":"e/n1","size":"0","timeCreated":"2024-12-01T00:00:00.000Z","updated":"2024-12-01T00:10:00.500Z"}],"nextPageToken":"t2"}"#,
        ));
        let ListOutcome::Page { entries, next } = page else {
            panic!("{page:?}")
        };
        assert_eq!(next.as_deref(), Some("t2"));
        let c = s.election_candidate("e/", &entries[0]).unwrap();
        assert_eq!(c.node_id, "n1");
        assert_eq!(c.refreshed_ms - c.register_time_ms, 600_500);
        assert_eq!(s.election_key("e/", "n1", 5), "e/n1");
        // Refreshes are metadata updates (timeCreated, the register time, stays), as Kong
        // Enterprise refreshes; a missing registration is created only if absent.
        let mut s2 = store();
        s2.on_prerequisite(
            Ok(resp(200, &[], r#"{"access_token":"t","expires_in":3599}"#)),
            0,
        )
        .unwrap();
        let key = s2.election_key("e/", "n2", 1_733_012_345_120);
        let refresh = s2.put_marker(&key, 7).unwrap();
        assert_eq!(refresh.method, "PATCH");
        assert!(
            refresh.path.ends_with("/storage/v1/b/b-1/o/e%2Fn2"),
            "{}",
            refresh.path
        );
        assert_eq!(
            String::from_utf8_lossy(&refresh.body),
            r#"{"metadata":{"refreshed-at":"7"}}"#
        );
        let create = s2.create_marker(&key, 7).unwrap();
        assert_eq!(create.method, "POST");
        assert!(
            create.path.contains("ifGenerationMatch=0"),
            "{}",
            create.path
        );
        // Metadata never overrides timeCreated (Kong reads timeCreated).
        let page = s.parse_list(&resp(
            200,
            &[],
            r#"{"items":[{"name":"e/n2","timeCreated":"2024-12-01T00:00:00Z","updated":"2024-12-01T00:00:00Z","metadata":{"register-time":"1733012345120"}}]}"#,
        ));
        let ListOutcome::Page { entries, .. } = page else {
            panic!()
        };
        assert_eq!(entries[0].created_ms, rfc3339_ms("2024-12-01T00:00:00Z"));
        let h = s.parse_head(&resp(
            200,
            &[],
            r#"{"generation":"5","metadata":{"uploader":"n2","config-applied-at":"42","config-sha256":"ab","config-sequence":"9","config-updated-at":"1700000000000","config-supersedes":"0123456789ab,zz"}}"#,
        ));
        assert_eq!(
            h,
            HeadOutcome::Found(RemoteMeta {
                version: Some("5".into()),
                uploader: Some("n2".into()),
                applied_at: Some(42),
                sha256_hex: Some("ab".into()),
                sequence: Some(9),
                updated_at_ms: Some(1_700_000_000_000),
                supersedes: vec!["0123456789ab".into()],
                ..Default::default()
            })
        );
    }
}
