//! Mock Google Cloud Storage: the OAuth2 token endpoint (RS256 service-account JWT grant), the
//! metadata server's token endpoint, and the JSON API (media / multipart / resumable upload,
//! metadata, download, list, patch, delete) with generations, preconditions and scope checks.
//!
//! One `MockGcs` answers every host name involved (`oauth2.googleapis.com`,
//! `storage.googleapis.com`, `metadata.google.internal`): routing is by path. Clones share state.
//!
//! Test-only control endpoint for clients in other processes (no auth, never on real GCS):
//! `POST /_mock/service-accounts` with `{"client_email","private_key_id","public_key_pem"}`
//! registers a key whose private half the caller generated (answer 201).

pub mod multipart;
pub mod objects;
pub mod token;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rsa::RsaPublicKey;
use serde_json::{json, Map, Value};

use crate::http::{CallContext, Handler, HttpRequest, HttpResponse, Reply};
use objects::{decode_page_token, NewObject, Store, StoreError};
pub use objects::{Preconditions, StoredObject};
use token::{parse_public_key_pem, random_hex, TokenAuthority, JWT_BEARER_GRANT};
pub use token::{
    Grant, ServiceAccountKey, GOOGLE_TOKEN_URI, SCOPE_CLOUD_PLATFORM, SCOPE_FULL_CONTROL,
    SCOPE_READ_ONLY, SCOPE_READ_WRITE,
};

/// The default API base (what real clients use).
pub const GOOGLE_STORAGE_BASE: &str = "https://storage.googleapis.com";
const METADATA_TOKEN_PREFIX: &str = "/computeMetadata/v1/instance/service-accounts/";
const DEFAULT_LIST_PAGE: usize = 1000;

/// One request the mock answered, for assertions. It holds the request as sent, credentials
/// included: keep it out of log output.
#[derive(Clone, Debug)]
pub struct RecordedCall {
    pub request: HttpRequest,
    pub node: String,
    pub at: SystemTime,
    pub status: u16,
}

struct MetadataIdentity {
    email: String,
    scopes: Vec<String>,
}

/// An `uploadType=resumable` session between its initiation and its last chunk.
struct ResumableSession {
    bucket: String,
    object: NewObject,
    preconditions: Preconditions,
    expected_checksums: Checksums,
    uploader: String,
}

#[derive(Clone, Debug, Default)]
struct Checksums {
    md5: Option<String>,
    crc32c: Option<String>,
}

struct State {
    store: Store,
    auth: TokenAuthority,
    base_url: String,
    token_uri: String,
    metadata: Option<MetadataIdentity>,
    sessions: HashMap<String, ResumableSession>,
    log: Vec<RecordedCall>,
}

/// Mock GCS; see the module docs. `Clone` is cheap and shares state.
#[derive(Clone)]
pub struct MockGcs {
    state: Arc<Mutex<State>>,
}

impl Default for MockGcs {
    fn default() -> Self {
        MockGcs::new()
    }
}

impl MockGcs {
    /// No buckets, no keys; the metadata server serves `default@mock-project.iam.gserviceaccount.com`
    /// with the `cloud-platform` scope.
    pub fn new() -> Self {
        MockGcs {
            state: Arc::new(Mutex::new(State {
                store: Store::default(),
                auth: TokenAuthority::default(),
                base_url: GOOGLE_STORAGE_BASE.to_string(),
                token_uri: GOOGLE_TOKEN_URI.to_string(),
                metadata: Some(MetadataIdentity {
                    email: "default@mock-project.iam.gserviceaccount.com".to_string(),
                    scopes: vec![SCOPE_CLOUD_PLATFORM.to_string()],
                }),
                sessions: HashMap::new(),
                log: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not poison the mock for the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the mock is reachable (e.g. `http://127.0.0.1:PORT` once served): links in object
    /// resources use it, and key files get `token_uri = <base>/token`, which `/token` accepts
    /// as `aud` besides Google's own token URI.
    pub fn set_base_url(&self, base_url: &str) {
        let base = base_url.trim_end_matches('/').to_string();
        let mut s = self.lock();
        s.token_uri = format!("{base}/token");
        s.base_url = base;
    }

    pub fn with_base_url(self, base_url: &str) -> Self {
        self.set_base_url(base_url);
        self
    }

    /// The `token_uri` put into key files.
    pub fn token_uri(&self) -> String {
        self.lock().token_uri.clone()
    }

    pub fn create_bucket(&self, name: &str) {
        let _ = self.lock().store.create_bucket(name);
    }

    pub fn with_bucket(self, name: &str) -> Self {
        self.create_bucket(name);
        self
    }

    /// Generates a 2048-bit key for `client_email`, registers its public half and returns the
    /// complete JSON key file. Slow in debug builds: tests should generate one
    /// `ServiceAccountKey` and `register_key` it with each mock.
    pub fn new_service_account_key(&self, client_email: &str) -> Value {
        self.register_key(&ServiceAccountKey::generate(client_email))
    }

    /// Registers an existing key and returns its JSON key file (with this mock's `token_uri`).
    pub fn register_key(&self, key: &ServiceAccountKey) -> Value {
        self.register_public_key(&key.client_email, &key.private_key_id, key.public_key());
        key.to_json(&self.token_uri())
    }

    pub fn register_public_key(&self, client_email: &str, private_key_id: &str, key: RsaPublicKey) {
        self.lock()
            .auth
            .register_key(client_email, private_key_id, key);
    }

    /// Deletes a key: new assertions signed with it are refused (issued tokens stay valid).
    pub fn remove_key(&self, private_key_id: &str) -> bool {
        self.lock().auth.remove_key(private_key_id)
    }

    /// Who the metadata server speaks for; `None` makes its token endpoint answer 404
    /// (no workload identity on this "machine").
    pub fn set_metadata_identity(&self, identity: Option<(&str, &[&str])>) {
        self.lock().metadata = identity.map(|(email, scopes)| MetadataIdentity {
            email: email.to_string(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        });
    }

    /// Lifetime of tokens issued from now on (default 3599 s).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.lock().auth.token_lifetime = lifetime;
    }

    /// Tolerated distance between an assertion's `iat`/`exp` and the mock's clock (default 60 s).
    pub fn set_clock_skew(&self, skew: Duration) {
        self.lock().auth.clock_skew = skew;
    }

    /// Issues an access token directly (tests that are not about the token flow).
    pub fn issue_token(&self, client_email: &str, scopes: &[&str], now: SystemTime) -> String {
        let scopes = scopes.iter().map(|s| s.to_string()).collect();
        self.lock().auth.issue(client_email, scopes, now).0
    }

    /// Invalidates every access token issued so far.
    pub fn revoke_tokens(&self) {
        self.lock().auth.revoke_all();
    }

    pub fn object(&self, bucket: &str, name: &str) -> Option<StoredObject> {
        self.lock().store.get(bucket, name).ok().cloned()
    }

    /// Every object of a bucket, by name.
    pub fn objects(&self, bucket: &str) -> Vec<StoredObject> {
        self.lock().store.objects(bucket)
    }

    /// Writes an object without any request (seeding a bucket); creates the bucket if needed.
    pub fn put_object(
        &self,
        bucket: &str,
        name: &str,
        data: &[u8],
        content_type: &str,
        now: SystemTime,
    ) -> StoredObject {
        let mut s = self.lock();
        let _ = s.store.create_bucket(bucket);
        let obj = NewObject {
            name: name.to_string(),
            data: data.to_vec(),
            content_type: Some(content_type.to_string()),
            metadata: BTreeMap::new(),
        };
        s.store
            .put(bucket, obj, &Preconditions::default(), now, "seed")
            .expect("an unconditional write to an existing bucket succeeds")
    }

    /// A metadata update without any request (what a Kong Enterprise node's election refresh
    /// does): `updated` moves, `timeCreated` and the generation stay. `None` if it is missing.
    pub fn patch_metadata(
        &self,
        bucket: &str,
        name: &str,
        key: &str,
        value: &str,
        now: SystemTime,
    ) -> Option<StoredObject> {
        let mut patch = serde_json::Map::new();
        patch.insert("metadata".into(), serde_json::json!({ key: value }));
        self.lock()
            .store
            .patch(bucket, name, &patch, &Preconditions::default(), now)
            .ok()
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedCall> {
        self.lock().log.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().log.clear();
    }

    fn route(&self, req: &HttpRequest, ctx: &CallContext) -> HttpResponse {
        let path = req.path_only().to_string();
        let m = req.method.as_str();
        if path == "/token" && m == "POST" {
            return self.token(req, ctx);
        }
        if let Some(rest) = path.strip_prefix(METADATA_TOKEN_PREFIX) {
            if rest.ends_with("/token") && m == "GET" {
                return self.metadata_token(req, rest.trim_end_matches("/token"), ctx);
            }
        }
        if path == "/_mock/service-accounts" && m == "POST" {
            return self.register_from_request(req);
        }
        if let Some(rest) = path.strip_prefix("/upload/storage/v1/b/") {
            return self.upload(req, rest, ctx);
        }
        if let Some(rest) = path.strip_prefix("/download/storage/v1/b/") {
            return match split_object_path(rest) {
                Some((bucket, Some(name))) if m == "GET" => {
                    self.get_object(req, &bucket, &name, true, ctx)
                }
                _ => gcs_error(404, "notFound", "Not Found"),
            };
        }
        if path == "/storage/v1/b" {
            return match m {
                "POST" => self.create_bucket_request(req, ctx),
                _ => gcs_error(405, "methodNotAllowed", "Method not allowed"),
            };
        }
        if let Some(rest) = path.strip_prefix("/storage/v1/b/") {
            return match (split_object_path(rest), m) {
                (Some((bucket, None)), "GET") if !rest.contains("/o") => {
                    self.get_bucket(req, &bucket, ctx)
                }
                (Some((bucket, None)), "GET") => self.list(req, &bucket, ctx),
                (Some((bucket, Some(name))), "GET") => {
                    let media = req.query_param("alt").as_deref() == Some("media");
                    self.get_object(req, &bucket, &name, media, ctx)
                }
                (Some((bucket, Some(name))), "PATCH") => self.patch(req, &bucket, &name, ctx),
                (Some((bucket, Some(name))), "DELETE") => self.delete(req, &bucket, &name, ctx),
                _ => gcs_error(404, "notFound", "Not Found"),
            };
        }
        gcs_error(404, "notFound", "Not Found")
    }

    // ---- OAuth2 -------------------------------------------------------------------------

    fn token(&self, req: &HttpRequest, ctx: &CallContext) -> HttpResponse {
        let form: HashMap<String, String> = url::form_urlencoded::parse(&req.body)
            .into_owned()
            .collect();
        let grant_type = form.get("grant_type").map(String::as_str).unwrap_or("");
        if grant_type != JWT_BEARER_GRANT {
            return token_error(
                400,
                "unsupported_grant_type",
                &format!("Invalid grant_type: {grant_type}"),
            );
        }
        let Some(assertion) = form.get("assertion") else {
            return token_error(
                400,
                "invalid_request",
                "Missing required parameter: assertion",
            );
        };
        let mut s = self.lock();
        let mut audiences = vec![GOOGLE_TOKEN_URI.to_string(), s.token_uri.clone()];
        if !req.authority.is_empty() {
            audiences.push(format!("{}://{}/token", req.scheme, req.authority));
        }
        match s.auth.verify_assertion(assertion, &audiences, ctx.now) {
            Ok((email, scopes)) => {
                let (token, expires_in) = s.auth.issue(&email, scopes, ctx.now);
                HttpResponse::json(
                    200,
                    &json!({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}),
                )
                .with_header("cache-control", "no-cache, no-store, max-age=0, must-revalidate")
            }
            Err(e) => HttpResponse::json(400, &e.to_json()),
        }
    }

    fn metadata_token(&self, req: &HttpRequest, account: &str, ctx: &CallContext) -> HttpResponse {
        // The real server refuses requests without the header, and proxied ones, to stop SSRF.
        if req.header("metadata-flavor") != Some("Google")
            || req.header("x-forwarded-for").is_some()
        {
            return HttpResponse::new(403)
                .with_header("content-type", "text/plain")
                .with_body("Missing required header: Metadata-Flavor");
        }
        let mut s = self.lock();
        let Some(identity) = s.metadata.as_ref() else {
            return HttpResponse::new(404).with_body("Not Found");
        };
        if account != "default" && account != identity.email {
            return HttpResponse::new(404).with_body("Not Found");
        }
        let email = identity.email.clone();
        let mut scopes = identity.scopes.clone();
        // `?scopes=a,b` narrows the token to the requested scopes.
        if let Some(requested) = req.query_param("scopes") {
            scopes = requested
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect();
        }
        let (token, expires_in) = s.auth.issue(&email, scopes, ctx.now);
        HttpResponse::json(
            200,
            &json!({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}),
        )
        .with_header("metadata-flavor", "Google")
    }

    fn register_from_request(&self, req: &HttpRequest) -> HttpResponse {
        let Ok(v) = serde_json::from_slice::<Value>(&req.body) else {
            return gcs_error(400, "invalid", "body must be JSON");
        };
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(email), Some(kid), Some(pem)) = (
            field("client_email"),
            field("private_key_id"),
            field("public_key_pem"),
        ) else {
            return gcs_error(
                400,
                "required",
                "client_email, private_key_id and public_key_pem are required",
            );
        };
        match parse_public_key_pem(&pem) {
            Ok(key) => {
                self.register_public_key(&email, &kid, key);
                HttpResponse::json(201, &json!({"client_email": email, "private_key_id": kid}))
            }
            Err(e) => gcs_error(400, "invalid", &e),
        }
    }

    // ---- JSON API -----------------------------------------------------------------------

    /// Checks the bearer token and its scope; returns the caller's account.
    fn authorize(
        s: &State,
        req: &HttpRequest,
        ctx: &CallContext,
        write: bool,
    ) -> Result<String, HttpResponse> {
        let token = req
            .header("authorization")
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(token) = token else {
            return Err(gcs_error(
                401,
                "required",
                "Anonymous caller does not have storage access to the Google Cloud Storage bucket.",
            )
            .with_header(
                "www-authenticate",
                "Bearer realm=\"https://accounts.google.com/\"",
            ));
        };
        let Some(grant) = s.auth.lookup(token, ctx.now) else {
            return Err(
                gcs_error(401, "authError", "Invalid Credentials").with_header(
                    "www-authenticate",
                    "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
                ),
            );
        };
        let allowed = if write {
            grant.can_write()
        } else {
            grant.can_read()
        };
        if !allowed {
            return Err(gcs_error(
                403,
                "insufficientPermissions",
                "Provided scope(s) are not authorized",
            ));
        }
        Ok(grant.client_email.clone())
    }

    fn base_url_for(s: &State, req: &HttpRequest) -> String {
        // Links must lead back to where the client reached us (a served port), else to the base.
        if !req.authority.is_empty() && s.base_url == GOOGLE_STORAGE_BASE {
            format!("{}://{}", req.scheme, req.authority)
        } else {
            s.base_url.clone()
        }
    }

    fn create_bucket_request(&self, req: &HttpRequest, ctx: &CallContext) -> HttpResponse {
        let mut s = self.lock();
        if let Err(r) = Self::authorize(&s, req, ctx, true) {
            return r;
        }
        let name = serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_string));
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return gcs_error(400, "required", "Required");
        };
        match s.store.create_bucket(&name) {
            Ok(()) => HttpResponse::json(200, &bucket_resource(&name, &Self::base_url_for(&s, req), ctx.now)),
            Err(_) => gcs_error(
                409,
                "conflict",
                "Your previous request to create the named bucket succeeded and you already own it.",
            ),
        }
    }

    fn get_bucket(&self, req: &HttpRequest, bucket: &str, ctx: &CallContext) -> HttpResponse {
        let s = self.lock();
        if let Err(r) = Self::authorize(&s, req, ctx, false) {
            return r;
        }
        if !s.store.has_bucket(bucket) {
            return no_bucket();
        }
        HttpResponse::json(
            200,
            &bucket_resource(bucket, &Self::base_url_for(&s, req), ctx.now),
        )
    }

    fn upload(&self, req: &HttpRequest, rest: &str, ctx: &CallContext) -> HttpResponse {
        let Some((bucket, None)) = split_object_path(rest) else {
            return gcs_error(404, "notFound", "Not Found");
        };
        if let Some(id) = req.query_param("upload_id") {
            return match req.method.as_str() {
                "PUT" | "POST" => self.resumable_chunk(req, &id, ctx),
                "DELETE" => {
                    self.lock().sessions.remove(&id);
                    HttpResponse::new(499)
                }
                _ => gcs_error(405, "methodNotAllowed", "Method not allowed"),
            };
        }
        if req.method != "POST" {
            return gcs_error(405, "methodNotAllowed", "Method not allowed");
        }
        let pre = match preconditions(req) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let upload_type = req.query_param("uploadType").unwrap_or_default();
        let (object, sums) = match upload_type.as_str() {
            "media" => {
                let Some(name) = req.query_param("name").filter(|n| !n.is_empty()) else {
                    return gcs_error(400, "required", "Required parameter: name");
                };
                let obj = NewObject {
                    name,
                    data: req.body.clone(),
                    content_type: req.header("content-type").map(str::to_string),
                    metadata: BTreeMap::new(),
                };
                (obj, checksums_from_header(req))
            }
            "multipart" => match parse_multipart_upload(req) {
                Ok(x) => x,
                Err(r) => return r,
            },
            "resumable" => return self.resumable_start(req, &bucket, pre, ctx),
            other => return gcs_error(400, "invalid", &format!("Invalid upload type: {other:?}")),
        };
        let mut s = self.lock();
        let uploader = match Self::authorize(&s, req, ctx, true) {
            Ok(u) => u,
            Err(r) => return r,
        };
        let base = Self::base_url_for(&s, req);
        finish_upload(
            &mut s, &bucket, object, &sums, &pre, &uploader, &base, ctx.now,
        )
    }

    fn resumable_start(
        &self,
        req: &HttpRequest,
        bucket: &str,
        pre: Preconditions,
        ctx: &CallContext,
    ) -> HttpResponse {
        let meta: Map<String, Value> = if req.body.is_empty() {
            Map::new()
        } else {
            match serde_json::from_slice::<Value>(&req.body) {
                Ok(Value::Object(m)) => m,
                _ => return gcs_error(400, "parseError", "Parse Error"),
            }
        };
        let (object, sums) = match object_from_metadata(&meta, req.query_param("name")) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let mut object = object;
        if object.content_type.is_none() {
            object.content_type = req.header("x-upload-content-type").map(str::to_string);
        }
        let mut s = self.lock();
        let uploader = match Self::authorize(&s, req, ctx, true) {
            Ok(u) => u,
            Err(r) => return r,
        };
        if !s.store.has_bucket(bucket) {
            return no_bucket();
        }
        let id = random_hex(16);
        let location = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=resumable&upload_id={id}",
            Self::base_url_for(&s, req),
            objects::encode_segment(bucket)
        );
        s.sessions.insert(
            id,
            ResumableSession {
                bucket: bucket.to_string(),
                object,
                preconditions: pre,
                expected_checksums: sums,
                uploader,
            },
        );
        HttpResponse::new(200)
            .with_header("location", &location)
            .with_header("x-guploader-uploadid", "mock")
    }

    fn resumable_chunk(&self, req: &HttpRequest, id: &str, ctx: &CallContext) -> HttpResponse {
        let mut s = self.lock();
        let Some(session) = s.sessions.get_mut(id) else {
            return gcs_error(404, "notFound", "No such upload session");
        };
        let received = session.object.data.len() as u64;
        // Content-Range: `bytes a-b/total`, `bytes a-b/*`, `bytes */total` (status query).
        let (range, total) = match req.header("content-range").map(parse_content_range) {
            // No Content-Range: the body is the whole (rest of the) upload.
            None => {
                let n = req.body.len() as u64;
                let range = (n > 0).then(|| (received, received + n - 1));
                (range, Some(received + n))
            }
            Some(Some(x)) => x,
            Some(None) => return gcs_error(400, "invalid", "Invalid Content-Range"),
        };
        if let Some((first, last)) = range {
            if first != received || last + 1 - first != req.body.len() as u64 {
                return gcs_error(400, "invalid", "Content-Range does not continue the upload");
            }
            session.object.data.extend_from_slice(&req.body);
        }
        let now_len = session.object.data.len() as u64;
        if total != Some(now_len) {
            let mut r = HttpResponse::new(308);
            if now_len > 0 {
                r = r.with_header("range", &format!("bytes=0-{}", now_len - 1));
            }
            return r;
        }
        let Some(mut session) = s.sessions.remove(id) else {
            return gcs_error(404, "notFound", "No such upload session");
        };
        let mut sums = session.expected_checksums.clone();
        let from_header = checksums_from_header(req);
        sums.md5 = sums.md5.or(from_header.md5);
        sums.crc32c = sums.crc32c.or(from_header.crc32c);
        let object = std::mem::take(&mut session.object);
        let base = Self::base_url_for(&s, req);
        finish_upload(
            &mut s,
            &session.bucket,
            object,
            &sums,
            &session.preconditions,
            &session.uploader,
            &base,
            ctx.now,
        )
    }

    fn get_object(
        &self,
        req: &HttpRequest,
        bucket: &str,
        name: &str,
        media: bool,
        ctx: &CallContext,
    ) -> HttpResponse {
        let pre = match preconditions(req) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let s = self.lock();
        if let Err(r) = Self::authorize(&s, req, ctx, false) {
            return r;
        }
        let obj = match s.store.get(bucket, name) {
            Ok(o) => o,
            Err(e) => return store_error(e, bucket, name),
        };
        // `generation=N` asks for one version; only the live one is kept.
        if let Some(g) = req.query_param("generation") {
            if g.parse::<i64>().ok() != Some(obj.generation) {
                return store_error(StoreError::NoObject, bucket, name);
            }
        }
        if let Err(e) = pre.check(Some(obj), true) {
            return store_error(e, bucket, name);
        }
        if !media {
            return HttpResponse::json(200, &obj.resource(&Self::base_url_for(&s, req)))
                .with_header("etag", &obj.etag());
        }
        let headers = |r: HttpResponse| {
            // Custom metadata comes along as `x-goog-meta-*`, as GCS and fake-gcs-server send it.
            let r = obj
                .metadata
                .iter()
                .fold(r, |r, (k, v)| r.with_header(&format!("x-goog-meta-{k}"), v));
            r.with_header("content-type", &obj.content_type)
                .with_header("x-goog-generation", &obj.generation.to_string())
                .with_header("x-goog-metageneration", &obj.metageneration.to_string())
                .with_header("x-goog-stored-content-length", &obj.data.len().to_string())
                .with_header("x-goog-stored-content-encoding", "identity")
                .with_header(
                    "x-goog-hash",
                    &format!("crc32c={},md5={}", obj.crc32c_base64(), obj.md5_base64()),
                )
                .with_header("etag", &obj.etag())
                .with_header("accept-ranges", "bytes")
        };
        match req
            .header("range")
            .map(|r| parse_range(r, obj.data.len() as u64))
        {
            None => headers(HttpResponse::new(200)).with_body(obj.data.clone()),
            Some(Some((a, b))) => headers(HttpResponse::new(206))
                .with_header(
                    "content-range",
                    &format!("bytes {a}-{b}/{}", obj.data.len()),
                )
                .with_body(obj.data[a as usize..=b as usize].to_vec()),
            Some(None) => gcs_error(
                416,
                "requestedRangeNotSatisfiable",
                "The requested range cannot be satisfied.",
            )
            .with_header("content-range", &format!("bytes */{}", obj.data.len())),
        }
    }

    fn list(&self, req: &HttpRequest, bucket: &str, ctx: &CallContext) -> HttpResponse {
        let s = self.lock();
        if let Err(r) = Self::authorize(&s, req, ctx, false) {
            return r;
        }
        let prefix = req.query_param("prefix").unwrap_or_default();
        let delimiter = req.query_param("delimiter");
        let max = match req.query_param("maxResults").map(|m| m.parse::<usize>()) {
            None => DEFAULT_LIST_PAGE,
            Some(Ok(m)) if m > 0 => m.min(DEFAULT_LIST_PAGE),
            Some(_) => return gcs_error(400, "invalid", "Invalid value for maxResults"),
        };
        let start = match req.query_param("pageToken").filter(|t| !t.is_empty()) {
            Some(t) => match decode_page_token(&t) {
                Some(name) => Some(name),
                None => return gcs_error(400, "invalid", "Invalid page token"),
            },
            None => None,
        };
        let page = match s
            .store
            .list(bucket, &prefix, delimiter.as_deref(), start.as_deref(), max)
        {
            Ok(p) => p,
            Err(e) => return store_error(e, bucket, ""),
        };
        let base = Self::base_url_for(&s, req);
        let mut body = json!({"kind": "storage#objects"});
        if !page.items.is_empty() {
            body["items"] = Value::Array(page.items.iter().map(|o| o.resource(&base)).collect());
        }
        if !page.prefixes.is_empty() {
            body["prefixes"] = json!(page.prefixes);
        }
        if let Some(t) = page.next_page_token {
            body["nextPageToken"] = json!(t);
        }
        HttpResponse::json(200, &body)
    }

    fn patch(
        &self,
        req: &HttpRequest,
        bucket: &str,
        name: &str,
        ctx: &CallContext,
    ) -> HttpResponse {
        let pre = match preconditions(req) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let Ok(Value::Object(patch)) = serde_json::from_slice::<Value>(&req.body) else {
            return gcs_error(400, "parseError", "Parse Error");
        };
        let mut s = self.lock();
        if let Err(r) = Self::authorize(&s, req, ctx, true) {
            return r;
        }
        let base = Self::base_url_for(&s, req);
        match s.store.patch(bucket, name, &patch, &pre, ctx.now) {
            Ok(o) => HttpResponse::json(200, &o.resource(&base)),
            Err(e) => store_error(e, bucket, name),
        }
    }

    fn delete(
        &self,
        req: &HttpRequest,
        bucket: &str,
        name: &str,
        ctx: &CallContext,
    ) -> HttpResponse {
        let pre = match preconditions(req) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let mut s = self.lock();
        if let Err(r) = Self::authorize(&s, req, ctx, true) {
            return r;
        }
        match s.store.delete(bucket, name, &pre) {
            Ok(()) => HttpResponse::new(204),
            Err(e) => store_error(e, bucket, name),
        }
    }
}

impl Handler for MockGcs {
    fn handle(&self, req: &HttpRequest, ctx: &CallContext) -> Reply {
        let mut response = self.route(req, ctx);
        // Google's front ends date every answer (token endpoint and JSON API alike): the filter
        // measures its clock skew from it (docs/credentials.md).
        if response.header("date").is_none() {
            response = response.with_header("date", &httpdate::fmt_http_date(ctx.now));
        }
        self.lock().log.push(RecordedCall {
            request: req.clone(),
            node: ctx.node.clone(),
            at: ctx.now,
            status: response.status,
        });
        Reply::now(response)
    }
}

/// Checks the declared checksums, then the preconditions, and writes; all under the lock.
#[allow(clippy::too_many_arguments)]
fn finish_upload(
    s: &mut State,
    bucket: &str,
    object: NewObject,
    sums: &Checksums,
    pre: &Preconditions,
    uploader: &str,
    base: &str,
    now: SystemTime,
) -> HttpResponse {
    let probe = StoredObject {
        bucket: bucket.to_string(),
        name: object.name.clone(),
        data: object.data.clone(),
        content_type: String::new(),
        metadata: BTreeMap::new(),
        generation: 0,
        metageneration: 0,
        created: now,
        updated: now,
        uploader: String::new(),
    };
    if let Some(want) = &sums.crc32c {
        let got = probe.crc32c_base64();
        if *want != got {
            return gcs_error(
                400,
                "invalid",
                &format!("Provided CRC32C \"{want}\" doesn't match calculated CRC32C \"{got}\"."),
            );
        }
    }
    if let Some(want) = &sums.md5 {
        let got = probe.md5_base64();
        if *want != got {
            return gcs_error(
                400,
                "invalid",
                &format!(
                    "Provided MD5 hash \"{want}\" doesn't match calculated MD5 hash \"{got}\"."
                ),
            );
        }
    }
    match s.store.put(bucket, object, pre, now, uploader) {
        Ok(o) => HttpResponse::json(200, &o.resource(base)).with_header("etag", &o.etag()),
        Err(e) => store_error(e, bucket, &probe.name),
    }
}

fn parse_multipart_upload(req: &HttpRequest) -> Result<(NewObject, Checksums), HttpResponse> {
    let ct = req.header("content-type").unwrap_or("");
    let Some(boundary) = multipart::boundary(ct).filter(|_| ct.starts_with("multipart/related"))
    else {
        return Err(gcs_error(
            400,
            "invalid",
            "Multipart upload requires a multipart/related body",
        ));
    };
    let parts =
        multipart::parse(&req.body, &boundary).map_err(|e| gcs_error(400, "invalid", &e))?;
    let [meta_part, media_part] = parts.as_slice() else {
        return Err(gcs_error(
            400,
            "invalid",
            "Multipart upload must have exactly two parts",
        ));
    };
    let meta = match serde_json::from_slice::<Value>(&meta_part.body) {
        Ok(Value::Object(m)) => m,
        _ => return Err(gcs_error(400, "parseError", "Parse Error")),
    };
    let (mut obj, sums) = object_from_metadata(&meta, req.query_param("name"))?;
    obj.data = media_part.body.clone();
    if obj.content_type.is_none() {
        obj.content_type = media_part.header("content-type").map(str::to_string);
    }
    Ok((obj, sums))
}

/// The object resource fields a client may set on upload.
fn object_from_metadata(
    meta: &Map<String, Value>,
    query_name: Option<String>,
) -> Result<(NewObject, Checksums), HttpResponse> {
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or(query_name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| gcs_error(400, "required", "Required parameter: name"))?;
    let metadata = meta
        .get("metadata")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let s = |k: &str| meta.get(k).and_then(Value::as_str).map(str::to_string);
    Ok((
        NewObject {
            name,
            data: Vec::new(),
            content_type: s("contentType"),
            metadata,
        },
        Checksums {
            md5: s("md5Hash"),
            crc32c: s("crc32c"),
        },
    ))
}

/// `x-goog-hash: crc32c=...,md5=...`.
fn checksums_from_header(req: &HttpRequest) -> Checksums {
    let mut sums = Checksums::default();
    for h in req.header_all("x-goog-hash") {
        for item in h.split(',') {
            match item.trim().split_once('=') {
                Some(("crc32c", v)) => sums.crc32c = Some(v.to_string()),
                Some(("md5", v)) => sums.md5 = Some(v.to_string()),
                _ => {}
            }
        }
    }
    sums
}

fn preconditions(req: &HttpRequest) -> Result<Preconditions, HttpResponse> {
    let get = |name: &str| -> Result<Option<i64>, HttpResponse> {
        match req.query_param(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| gcs_error(400, "invalid", &format!("Invalid value for {name}: {v}"))),
        }
    };
    Ok(Preconditions {
        if_generation_match: get("ifGenerationMatch")?,
        if_generation_not_match: get("ifGenerationNotMatch")?,
        if_metageneration_match: get("ifMetagenerationMatch")?,
        if_metageneration_not_match: get("ifMetagenerationNotMatch")?,
    })
}

/// `{bucket}` or `{bucket}/o` → (bucket, None); `{bucket}/o/{object}` → (bucket, Some(object)),
/// the object name percent-decoded (clients send `/` as `%2F`).
fn split_object_path(rest: &str) -> Option<(String, Option<String>)> {
    let (bucket, tail) = match rest.split_once('/') {
        Some((b, t)) => (b, Some(t)),
        None => (rest, None),
    };
    let bucket = percent_encoding::percent_decode_str(bucket)
        .decode_utf8()
        .ok()?
        .into_owned();
    match tail {
        None | Some("o") | Some("o/") => Some((bucket, None)),
        Some(t) => {
            let name = t.strip_prefix("o/")?;
            let name = percent_encoding::percent_decode_str(name)
                .decode_utf8()
                .ok()?
                .into_owned();
            Some((bucket, Some(name)))
        }
    }
}

/// `bytes a-b/total|*` → (Some((a,b)), total); `bytes */total` → (None, total).
#[allow(clippy::type_complexity)]
fn parse_content_range(h: &str) -> Option<(Option<(u64, u64)>, Option<u64>)> {
    let spec = h.trim().strip_prefix("bytes")?.trim();
    let (range, total) = spec.split_once('/')?;
    let total = if total == "*" {
        None
    } else {
        Some(total.parse().ok()?)
    };
    if range == "*" {
        return Some((None, total));
    }
    let (a, b) = range.split_once('-')?;
    let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    (b >= a).then_some((Some((a, b)), total))
}

/// One `Range: bytes=` spec → inclusive (first, last), None when unsatisfiable.
fn parse_range(h: &str, len: u64) -> Option<(u64, u64)> {
    let spec = h.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    if len == 0 {
        return None;
    }
    let (first, last) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (len.saturating_sub(n), len - 1)
        }
        (a, "") => (a.parse().ok()?, len - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(len - 1)),
    };
    (first <= last && first < len).then_some((first, last))
}

fn bucket_resource(name: &str, base: &str, now: SystemTime) -> Value {
    json!({
        "kind": "storage#bucket",
        "id": name,
        "name": name,
        "selfLink": format!("{base}/storage/v1/b/{name}"),
        "projectNumber": "123456789",
        "location": "US",
        "storageClass": "STANDARD",
        "metageneration": "1",
        "timeCreated": objects::rfc3339(now),
        "updated": objects::rfc3339(now),
    })
}

/// GCS's JSON error body.
pub fn gcs_error(code: u16, reason: &str, message: &str) -> HttpResponse {
    HttpResponse::json(
        code,
        &json!({"error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }}),
    )
}

fn token_error(status: u16, error: &str, description: &str) -> HttpResponse {
    HttpResponse::json(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

fn no_bucket() -> HttpResponse {
    gcs_error(404, "notFound", "The specified bucket does not exist.")
}

fn store_error(e: StoreError, bucket: &str, name: &str) -> HttpResponse {
    match e {
        StoreError::NoBucket => no_bucket(),
        StoreError::NoObject => {
            gcs_error(404, "notFound", &format!("No such object: {bucket}/{name}"))
        }
        StoreError::ConditionNotMet => gcs_error(
            412,
            "conditionNotMet",
            "At least one of the pre-conditions you specified did not hold.",
        ),
        StoreError::NotModified => HttpResponse::new(304),
        StoreError::BucketExists => gcs_error(409, "conflict", "The bucket already exists."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_are_split_and_decoded() {
        assert_eq!(split_object_path("b/o"), Some(("b".into(), None)));
        assert_eq!(split_object_path("b"), Some(("b".into(), None)));
        assert_eq!(
            split_object_path("b/o/a%2Fb%20c.json"),
            Some(("b".into(), Some("a/b c.json".into())))
        );
        assert_eq!(split_object_path("b/x/y"), None);
    }

    #[test]
    fn content_ranges_and_ranges_parse() {
        assert_eq!(
            parse_content_range("bytes 0-9/10"),
            Some((Some((0, 9)), Some(10)))
        );
        assert_eq!(
            parse_content_range("bytes 0-9/*"),
            Some((Some((0, 9)), None))
        );
        assert_eq!(parse_content_range("bytes */10"), Some((None, Some(10))));
        assert_eq!(parse_content_range("bytes 9-0/10"), None);
        assert_eq!(parse_range("bytes=2-4", 10), Some((2, 4)));
        assert_eq!(parse_range("bytes=-3", 10), Some((7, 9)));
        assert_eq!(parse_range("bytes=8-", 10), Some((8, 9)));
        assert_eq!(parse_range("bytes=10-", 10), None);
    }
}
