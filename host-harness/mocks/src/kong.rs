//! Mock Kong Admin API (Kong OSS 3.4–3.9 behaviour, read in `Kong/kong` at 3.4.0 and 3.9.1;
//! Kong Enterprise RBAC on request).
//!
//! It holds one current configuration. Tests call `set_config` to simulate "a config was applied"
//! (by a CP, or by writes to a database), or let the filter `POST /config` it. Clones share state.
//!
//! **Endpoints**
//! * `GET /`: node information (`version`, `node_id`, `configuration.database` `off`/`postgres`).
//! * `GET /status`: `memory`, `server`, and `configuration_hash` on a DB-less node (32 zeros when
//!   nothing is loaded) or `database: {"reachable": true}` on a database node
//!   (`kong/api/routes/health.lua`).
//! * `GET /config` (DB-less): `200 {"config": "<YAML>"}`, the flat form with
//!   `_format_version: "3.0"`, `_transform: false`, disabled entities kept, **no workspaces**
//!   (`export_from_db` defaults `skip_ws` to true: `kong/db/declarative/export.lua`); a database
//!   node answers 400 (`kong/api/routes/config.lua`).
//! * `POST /config` (DB-less; 400 on a database node): see `post_config` below.
//! * entity collections, `GET` only, in both modes: `/services`, `/routes`, `/consumers`,
//!   `/plugins`, `/upstreams`, `/certificates`, `/snis`, `/ca_certificates`, `/keys`,
//!   `/key-sets`, `/vaults`, `/filter-chains`, `/key-auths`, `/basic-auths`, `/hmac-auths`,
//!   `/jwts`, `/oauth2`, `/oauth2_tokens`, `/acls` (the table with sources is in
//!   [`schema`]); one entity by id or endpoint key (`/services/{id|name}`); nested lists under a
//!   parent (`/upstreams/{id|name}/targets`, `/services/{s}/routes`, `/consumers/{c}/key-auth`,
//!   ...). `/targets` answers 404: Kong 3.x disables the global targets list.
//!
//! **Rendering** (what the Admin API returns, `nulls = true`): every schema field, `null` where
//! unset; foreign keys as `{"id": "<uuid>"}`; `created_at`/`updated_at` integer seconds (targets:
//! seconds with milliseconds); certificates with their SNI names (`snis`, sorted); on a database
//! node, `ttl: null` on key-auth credentials and oauth2 tokens.
//!
//! **Paging** (`kong/api/endpoints.lua`, the DAO, the strategies): entities in id order, `size`
//! default 100, 1–1000 else `400 {"code": 9, "name": "invalid size", "message": "size must be an
//! integer between 1 and 1000"}` (`"size must be a number"` when not a number); `offset` opaque
//! (database: base64 of `["<last id>"]`, DB-less: base64 of the LMDB key), keyset semantics (an
//! entity inserted behind the cursor is not seen); body `{"data": [...], "next": ..., "offset":
//! ...}` where `offset` is present only when there is a next page and `next` is
//! `/<collection>?offset=<escaped>[&tags=...][&size=<as given>]` or `null`. Nested lists' `next`
//! carries **no** `size` (Kong's foreign-collection endpoint drops it). Targets under an upstream
//! are Kong's special case (`kong/db/dao/targets.lua`): newest first, numeric offsets, `size`
//! clamped to 1000 instead of refused. A bad offset is `400 {"code": 7, "name": "invalid offset",
//! ...}`. `?tags=a,b` (all) and `?tags=a/b` (any) filter.
//!
//! **`POST /config`** (`kong/api/routes/config.lua`): a JSON body holding the document
//! (`_format_version` at the top), a JSON body `{"config": "<JSON or YAML text>"}`, a form field
//! `config=`, or any other body taken as JSON-or-YAML text. `?flatten_errors=1` (Kong's
//! `truthy`) and `?check_hash=1` (exactly `1`). The hash of a document sent as text is the md5 of
//! that text, and only then can `check_hash` answer 304 (a document sent as a JSON object has no
//! hash before parsing: Kong hashes its own serialisation and never answers 304 for it; the mock
//! uses md5 of a canonical JSON rendering there). Invalid documents: `400` with code 14
//! (schema errors; then dangling foreign keys and duplicates, see [`load`]); with
//! `flatten_errors`, Kong 3.4–3.9's shape: `fields` keeps only top-level string errors,
//! `flattened_errors` lists the entities, and is `{}` when empty. Kong files reference errors
//! under the entity's name or id, which its `flatten_errors` cannot map back to the input array:
//! **a dangling foreign key gives `fields: {}` and `flattened_errors: {}`** with
//! `flatten_errors=1` (without it, `fields.routes["<name or id>"]` holds the message);
//! `with_flattened_reference_errors(true)` reports them in `flattened_errors` instead. Success:
//! `201` with the entities by collection and id (foreign keys as `{"id"}`, workspaces left out,
//! credentials as sent, before `_transform`). Scripted answers (`next_post_responses`) take the
//! place of the load step: 413, 429 with `Retry-After`, 500, 503, 504 with Kong's bodies.
//!
//! **RBAC** (Kong Enterprise): `with_admin_token` makes every request need `Kong-Admin-Token`
//! (or another header), else `401 {"message": "Invalid RBAC credentials"}`. The token is never
//! recorded: the request log shows the header as `[redacted]`.
//!
//! **Deviations**: collections are read-only (writes answer 405); plugin and vault `config`
//! records are kept as given (no per-plugin defaults); `updated_at` is "now" after a DB-less load
//! as in Kong (a database node keeps a given one); the only `_transform` is basic-auth's password
//! hash; YAML comes from serde_norway, not lyaml (same document, other formatting); error
//! `message`s approximate Penlight's pretty-printer.

pub mod declarative;
pub mod generate;
pub mod load;
pub mod schema;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use md5::{Digest, Md5};
use rand::RngCore;
use serde_json::{json, Map, Value};

use crate::gcs::RecordedCall;
use crate::http::{CallContext, Handler, HttpRequest, HttpResponse, Reply};
use declarative::EMPTY_CONFIG_HASH;
use load::{LoadOptions, Loaded};
use schema::{EntityDef, DEFAULT_WORKSPACE_ID, ENTITIES};

const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 1000;

/// Kong Enterprise's RBAC header.
pub const DEFAULT_RBAC_HEADER: &str = "Kong-Admin-Token";
/// Kong Enterprise's answer to a request without a valid RBAC token (its docs, 0.33 to 3.x).
pub const DEFAULT_RBAC_MESSAGE: &str = "Invalid RBAC credentials";

/// How the node stores its configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KongMode {
    /// `database = off`: `/config` works, `/status` has `configuration_hash`.
    DbLess,
    /// `database = postgres`: `/config` answers 400; entities come from the collections.
    Database,
}

/// One `POST /config` as the mock saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostRecord {
    /// Bytes of the request body.
    pub body_size: usize,
    pub status: u16,
    /// Answered by a scripted status (`next_post_responses`).
    pub scripted: bool,
    pub check_hash: bool,
    pub flatten_errors: bool,
    pub content_type: Option<String>,
    pub node: String,
    pub at: SystemTime,
}

type Hook = Box<dyn FnOnce(&MockKongAdmin) + Send>;

struct Rbac {
    header: String,
    token: String,
    message: String,
}

struct State {
    mode: KongMode,
    version: String,
    node_id: String,
    hostname: String,
    /// The document as loaded.
    config: Option<Value>,
    hash: String,
    /// The stored entities (flat form).
    loaded: Loaded,
    /// How many configs were loaded (by `set_config` or `POST /config`).
    applied: u64,
    log: Vec<RecordedCall>,
    posts: Vec<PostRecord>,
    now: SystemTime,
    rbac: Option<Rbac>,
    scripted: VecDeque<HttpResponse>,
    retry_after: u64,
    flatten_reference_errors: bool,
    requests_seen: u64,
    hooks: Vec<(u64, Hook)>,
}

/// Mock Kong Admin API; see the module docs.
#[derive(Clone)]
pub struct MockKongAdmin {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for MockKongAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("MockKongAdmin")
            .field("mode", &s.mode)
            .field("version", &s.version)
            .field("hash", &s.hash)
            .field("rbac", &s.rbac.is_some())
            .finish_non_exhaustive()
    }
}

impl MockKongAdmin {
    /// A node with Kong `version` (e.g. "3.9.1") and no configuration loaded.
    pub fn new(mode: KongMode, version: &str) -> Self {
        MockKongAdmin {
            state: Arc::new(Mutex::new(State {
                mode,
                version: version.to_string(),
                node_id: new_uuid(),
                hostname: "mock-kong".to_string(),
                config: None,
                hash: EMPTY_CONFIG_HASH.to_string(),
                loaded: Loaded::default(),
                applied: 0,
                log: Vec::new(),
                posts: Vec::new(),
                now: SystemTime::now(),
                rbac: None,
                scripted: VecDeque::new(),
                retry_after: 2,
                flatten_reference_errors: false,
                requests_seen: 0,
                hooks: Vec::new(),
            })),
        }
    }

    /// A DB-less node (`database = off`).
    pub fn dbless(version: &str) -> Self {
        MockKongAdmin::new(KongMode::DbLess, version)
    }

    /// A database-backed node (`database = postgres`), e.g. a traditional CP.
    pub fn database(version: &str) -> Self {
        MockKongAdmin::new(KongMode::Database, version)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn with_node_id(self, node_id: &str) -> Self {
        self.lock().node_id = node_id.to_string();
        self
    }

    pub fn node_id(&self) -> String {
        self.lock().node_id.clone()
    }

    pub fn mode(&self) -> KongMode {
        self.lock().mode
    }

    /// Every request needs `Kong-Admin-Token: <token>` (Kong Enterprise RBAC), else 401.
    pub fn with_admin_token(self, token: &str) -> Self {
        self.with_admin_token_header(DEFAULT_RBAC_HEADER, token)
    }

    /// Every request needs `<header>: <token>`, else 401.
    pub fn with_admin_token_header(self, header: &str, token: &str) -> Self {
        self.lock().rbac = Some(Rbac {
            header: header.to_string(),
            token: token.to_string(),
            message: DEFAULT_RBAC_MESSAGE.to_string(),
        });
        self
    }

    /// The 401 body's `message` (default [`DEFAULT_RBAC_MESSAGE`]); needs `with_admin_token*`.
    pub fn with_rbac_message(self, message: &str) -> Self {
        if let Some(r) = self.lock().rbac.as_mut() {
            r.message = message.to_string();
        }
        self
    }

    /// Report dangling foreign keys in `flattened_errors` (what a Kong whose `flatten_errors`
    /// could find entities by name would do) instead of Kong 3.4–3.9's empty list.
    pub fn with_flattened_reference_errors(self, on: bool) -> Self {
        self.lock().flatten_reference_errors = on;
        self
    }

    /// The node's clock for loads through `set_config` (requests use their own `CallContext`
    /// time, which also moves this clock).
    pub fn set_now(&self, now: SystemTime) {
        self.lock().now = now;
    }

    /// Loads `config` (flat form, nested form or both) as if it had been applied. No validation:
    /// tests may load anything (dangling references are kept as given). Returns the new
    /// configuration hash (md5 of a canonical JSON rendering; 32 zeros for a config with no
    /// entities).
    pub fn set_config(&self, config: Value) -> String {
        let mut s = self.lock();
        let mut random_id = new_uuid;
        let mut opts = LoadOptions {
            now: s.now,
            overwrite_updated_at: s.mode == KongMode::DbLess,
            lenient: true,
            random_id: &mut random_id,
        };
        let loaded = load::load(&config, &mut opts).unwrap_or_default();
        let hash = if loaded.is_empty() {
            EMPTY_CONFIG_HASH.to_string()
        } else {
            declarative::config_hash(&config)
        };
        apply(&mut s, config, loaded, hash)
    }

    /// Forgets the config: the node is empty again (hash of zeros).
    pub fn clear_config(&self) {
        let mut s = self.lock();
        s.config = None;
        s.hash = EMPTY_CONFIG_HASH.to_string();
        s.loaded = Loaded::default();
    }

    /// The current declarative config, as loaded.
    pub fn config(&self) -> Option<Value> {
        self.lock().config.clone()
    }

    /// `/status`'s `configuration_hash`.
    pub fn configuration_hash(&self) -> String {
        self.lock().hash.clone()
    }

    /// Number of configs loaded so far (`set_config` and successful `POST /config`).
    pub fn applied_count(&self) -> u64 {
        self.lock().applied
    }

    /// The stored entities of `collection` (flat-form name, e.g. `keyauth_credentials`), in the
    /// flat form: every field, foreign keys as plain id strings, sorted by id.
    pub fn entities(&self, collection: &str) -> Vec<Value> {
        self.lock()
            .loaded
            .collections
            .get(collection)
            .cloned()
            .unwrap_or_default()
    }

    /// How many entities each non-empty collection holds (workspaces included).
    pub fn entity_counts(&self) -> BTreeMap<String, usize> {
        self.lock()
            .loaded
            .collections
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.len()))
            .collect()
    }

    /// What Kong Enterprise uploads: `declarative.export_config()` — the flat form with
    /// `_format_version: "3.0"`, `_transform: false`, workspaces, disabled services left out with
    /// their routes and everything pointing at them, disabled plugins left out.
    pub fn export_config(&self) -> Value {
        export(&self.lock().loaded, false, true)
    }

    /// What `GET /config` serialises (`export_from_db` with its defaults): the flat form without
    /// workspaces, disabled entities kept.
    pub fn export_from_db(&self) -> Value {
        export(&self.lock().loaded, true, false)
    }

    /// Every request answered so far, oldest first (RBAC tokens redacted).
    pub fn requests(&self) -> Vec<RecordedCall> {
        self.lock().log.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().log.clear();
    }

    /// Requests handled so far (all of them, including refused ones).
    pub fn request_count(&self) -> u64 {
        self.lock().requests_seen
    }

    /// Every `POST /config`, oldest first.
    pub fn posts(&self) -> Vec<PostRecord> {
        self.lock().posts.clone()
    }

    /// The next `POST /config`s that Kong would load are answered with these statuses instead
    /// (one each, in order; then normal behaviour resumes), with Kong's bodies (413, 429 with
    /// `Retry-After`, 500, 503, 504; others a generic message). Nothing is loaded for them.
    pub fn next_post_responses<I: IntoIterator<Item = u16>>(&self, statuses: I) {
        let mut s = self.lock();
        for status in statuses {
            let resp = post_error_response(status, s.retry_after, &s.version);
            s.scripted.push_back(resp);
        }
    }

    /// Like `next_post_responses`, with a response of your own.
    pub fn push_post_response(&self, response: HttpResponse) {
        self.lock().scripted.push_back(response);
    }

    /// `Retry-After` (seconds) of scripted 429s queued after this call (default 2; Kong sends
    /// the remaining lock time, at most 10).
    pub fn set_retry_after(&self, secs: u64) {
        self.lock().retry_after = secs;
    }

    /// Runs `hook` right after the `n`-th request from now has been answered (n ≥ 1; 0 runs it
    /// after the next one). The hook may change the config (`set_config`), so a multi-page read
    /// or a `/status` poll sees a change between two requests.
    pub fn on_request<F>(&self, n: u64, hook: F)
    where
        F: FnOnce(&MockKongAdmin) + Send + 'static,
    {
        let mut s = self.lock();
        let at = s.requests_seen + n.max(1);
        s.hooks.push((at, Box::new(hook)));
    }

    /// Loads `config` right after the `n`-th request from now has been answered.
    pub fn change_after_requests(&self, n: u64, config: Value) {
        self.on_request(n, move |k| {
            k.set_config(config);
        });
    }

    fn route(&self, req: &HttpRequest, ctx: &CallContext) -> HttpResponse {
        let path = req.path_only().trim_end_matches('/');
        let raw: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let decoded: Vec<String> = raw.iter().map(|s| percent_decode(s)).collect();
        let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
        let m = req.method.as_str();
        let version = self.lock().version.clone();
        match (m, segments.as_slice()) {
            ("GET", []) => self.root(),
            ("GET", ["status"]) => self.status(),
            ("GET", ["config"]) => self.get_config(),
            ("POST", ["config"]) => self.post_config(req, ctx),
            (_, ["config"]) => kong_json(405, &json!({"message": "Method not allowed"}), &version),
            (_, ["targets", ..]) => not_found(&version),
            ("GET", [collection]) => match schema::by_admin_segment(collection) {
                Some(def) => self.list(req, def),
                None => not_found(&version),
            },
            ("GET", [collection, key]) => match schema::by_admin_segment(collection) {
                Some(def) => self.entity(def, key),
                None => not_found(&version),
            },
            ("GET", [parent, key, child]) => {
                match schema::by_admin_segment(parent)
                    .and_then(|p| schema::nested_child(p, child).map(|c| (p, c)))
                {
                    Some((p, (c, fk))) => self.nested_list(req, p, key, c, fk),
                    None => not_found(&version),
                }
            }
            ("GET", ["upstreams", key, "targets", "all"]) => self.upstream_targets_raw(req, key),
            ("GET", ["upstreams", key, "targets", target]) => self.upstream_target(key, target),
            ("GET", _) => not_found(&version),
            (_, [collection, rest @ ..]) if schema::by_admin_segment(collection).is_some() => {
                self.write_refused(m, collection, rest.len())
            }
            _ => not_found(&version),
        }
    }

    fn write_refused(&self, method: &str, collection: &str, depth: usize) -> HttpResponse {
        let s = self.lock();
        let name = schema::by_admin_segment(collection).map_or(collection, |d| d.name);
        if s.mode == KongMode::Database {
            // Writes go through `set_config`; the mock serves collections read-only.
            return kong_json(
                405,
                &json!({"message": "Method not allowed (mock: read-only collections)"}),
                &s.version,
            );
        }
        // DB-less (`kong/db/strategies/off/init.lua` `unsupported`, 405 with the err_t).
        let op = match (method, depth) {
            ("POST", 0) => Some("create"),
            ("PUT", 1) => Some("create or update"),
            ("PATCH", 1) => Some("update"),
            ("DELETE", 1) => Some("remove"),
            _ => None,
        };
        match op {
            Some(op) => kong_json(
                405,
                &json!({"code": 12, "name": "operation unsupported",
                        "message": format!("cannot {op} '{name}' entities when not using a database")}),
                &s.version,
            ),
            None => kong_json(405, &json!({"message": "Method not allowed"}), &s.version),
        }
    }

    fn root(&self) -> HttpResponse {
        let s = self.lock();
        let database = match s.mode {
            KongMode::DbLess => "off",
            KongMode::Database => "postgres",
        };
        kong_json(
            200,
            &json!({
                "tagline": "Welcome to kong",
                "version": s.version,
                "edition": "community",
                "hostname": s.hostname,
                "node_id": s.node_id,
                "lua_version": "LuaJIT 2.1.0-20231117",
                "timers": {"running": 0, "pending": 5},
                "plugins": {"available_on_server": {}, "enabled_in_cluster": []},
                "configuration": {
                    "database": database,
                    "role": "traditional",
                    "wasm": true,
                    "admin_listen": ["127.0.0.1:8001"],
                    "proxy_listen": ["0.0.0.0:8000"],
                },
                "pids": {"master": 1, "workers": [2, 3]},
            }),
            &s.version,
        )
    }

    fn status(&self) -> HttpResponse {
        let s = self.lock();
        let mut body = json!({
            "memory": {
                "workers_lua_vms": [{"http_allocated_gc": "40.00 MiB", "pid": 2}],
                "lua_shared_dicts": {"kong": {"allocated_slabs": "0.04 MiB", "capacity": "5.00 MiB"}},
            },
            "server": {
                "connections_accepted": 1, "connections_active": 1, "connections_handled": 1,
                "connections_reading": 0, "connections_waiting": 0, "connections_writing": 1,
                "total_requests": 1,
            },
        });
        // Kong reports the hash only where there is no database, and the database only where
        // there is one.
        match s.mode {
            KongMode::DbLess => body["configuration_hash"] = json!(s.hash),
            KongMode::Database => body["database"] = json!({"reachable": true}),
        }
        kong_json(200, &body, &s.version)
    }

    fn get_config(&self) -> HttpResponse {
        let s = self.lock();
        if s.mode != KongMode::DbLess {
            return only_dbless(&s.version);
        }
        let export = export(&s.loaded, true, false);
        kong_json(
            200,
            &json!({"config": declarative::to_yaml(&export)}),
            &s.version,
        )
    }

    fn post_config(&self, req: &HttpRequest, ctx: &CallContext) -> HttpResponse {
        let flatten = req
            .query_param("flatten_errors")
            .is_some_and(|v| truthy(&v));
        let check_hash = req.query_param("check_hash").as_deref() == Some("1");
        let resp = self.post_config_inner(req, ctx, flatten, check_hash);
        let scripted = resp.header("x-mock-scripted").is_some();
        let resp = HttpResponse {
            headers: resp
                .headers
                .into_iter()
                .filter(|(k, _)| k != "x-mock-scripted")
                .collect(),
            ..resp
        };
        self.lock().posts.push(PostRecord {
            body_size: req.body.len(),
            status: resp.status,
            scripted,
            check_hash,
            flatten_errors: flatten,
            content_type: req.header("content-type").map(str::to_string),
            node: ctx.node.clone(),
            at: ctx.now,
        });
        resp
    }

    fn post_config_inner(
        &self,
        req: &HttpRequest,
        ctx: &CallContext,
        flatten: bool,
        check_hash: bool,
    ) -> HttpResponse {
        let (version, mode, flatten_refs) = {
            let s = self.lock();
            (s.version.clone(), s.mode, s.flatten_reference_errors)
        };
        if mode != KongMode::DbLess {
            return only_dbless(&version);
        }
        let (config, text_hash) = match config_from_request(req) {
            Ok(c) => c,
            Err(resp) => return resp.with_header("server", &format!("kong/{version}")),
        };
        if check_hash {
            let s = self.lock();
            if text_hash.as_deref() == Some(s.hash.as_str()) {
                return HttpResponse::new(304).with_header("server", &format!("kong/{version}"));
            }
        }
        if let Err(inv) = declarative::validate(&config) {
            let body = if flatten {
                declarative::flattened_error_body(&inv.fields, &inv.flattened)
            } else {
                declarative::error_body(&inv.fields)
            };
            return kong_json(400, &body, &version);
        }
        let mut random_id = new_uuid;
        let mut opts = LoadOptions {
            now: ctx.now,
            overwrite_updated_at: true,
            lenient: false,
            random_id: &mut random_id,
        };
        let loaded = match load::load(&config, &mut opts) {
            Ok(l) => l,
            Err(fail) => {
                let fields = declarative::ref_errors_json(&fail.errors);
                let body = if flatten {
                    let mut flat = fail.flattened_by_index.clone();
                    if flatten_refs {
                        flat.extend(fail.flattened_by_key.iter().cloned());
                    }
                    declarative::flattened_error_body(&fields, &flat)
                } else {
                    declarative::error_body(&fields)
                };
                return kong_json(400, &body, &version);
            }
        };
        let mut s = self.lock();
        if let Some(mut scripted) = s.scripted.pop_front() {
            scripted
                .headers
                .push(("x-mock-scripted".into(), "1".into()));
            return scripted;
        }
        let hash = if loaded.is_empty() {
            EMPTY_CONFIG_HASH.to_string()
        } else {
            text_hash.unwrap_or_else(|| declarative::config_hash(&config))
        };
        // Kong answers with the entities it loaded (before transformations), by collection then
        // id, without workspaces (`declarative.sanitize_output`).
        let mut body = Map::new();
        for def in ENTITIES.iter().filter(|d| d.name != "workspaces") {
            let Some(list) = loaded.untransformed.get(def.name).filter(|l| !l.is_empty()) else {
                continue;
            };
            let by_id: Map<String, Value> = list
                .iter()
                .map(|e| {
                    (
                        e["id"].as_str().unwrap_or_default().to_string(),
                        render_foreign(def, e),
                    )
                })
                .collect();
            body.insert(def.name.to_string(), Value::Object(by_id));
        }
        apply(&mut s, config, loaded, hash);
        kong_json(201, &Value::Object(body), &version)
    }

    fn list(&self, req: &HttpRequest, def: &'static EntityDef) -> HttpResponse {
        let s = self.lock();
        let size = match page_size(req, &s.version) {
            Ok(n) => n,
            Err(resp) => return resp,
        };
        let after = match req.query_param("offset") {
            None => None,
            Some(o) => match decode_offset(s.mode, &o) {
                Ok(id) => Some(id),
                Err(why) => return invalid_offset(&o, why, &s.version),
            },
        };
        let tags = req.query_param("tags");
        let all: Vec<&Value> = s
            .loaded
            .collections
            .get(def.name)
            .map(|l| {
                l.iter()
                    .filter(|e| tags_match(e, tags.as_deref()))
                    .collect()
            })
            .unwrap_or_default();
        let admin = def.admin_path.unwrap_or_default();
        let mut suffix = String::new();
        if let Some(t) = &tags {
            suffix.push_str(&format!("&tags={}", escape_uri(t)));
        }
        if let Some(raw) = raw_query_param(req, "size") {
            suffix.push_str(&format!("&size={raw}"));
        }
        let body = keyset_page(&s, def, &all, after.as_deref(), size, |offset| {
            format!("{admin}?offset={}{suffix}", escape_uri(offset))
        });
        kong_json(200, &body, &s.version)
    }

    fn nested_list(
        &self,
        req: &HttpRequest,
        parent: &'static EntityDef,
        key: &str,
        child: &'static EntityDef,
        fk: &'static schema::Foreign,
    ) -> HttpResponse {
        let s = self.lock();
        let Some(p) = find(&s, parent, key) else {
            return not_found(&s.version);
        };
        let pid = p["id"].as_str().unwrap_or_default().to_string();
        let children: Vec<&Value> = s
            .loaded
            .collections
            .get(child.name)
            .map(|l| {
                l.iter()
                    .filter(|e| e[fk.field].as_str() == Some(pid.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        let base = format!(
            "{}/{}/{}",
            parent.admin_path.unwrap_or_default(),
            key,
            child.nested_segment
        );
        if child.name == "targets" {
            return targets_page(&s, req, children, &base);
        }
        let size = match page_size(req, &s.version) {
            Ok(n) => n,
            Err(resp) => return resp,
        };
        let after = match req.query_param("offset") {
            None => None,
            Some(o) => match decode_offset(s.mode, &o) {
                Ok(id) => Some(id),
                Err(why) => return invalid_offset(&o, why, &s.version),
            },
        };
        // Kong's foreign-collection `next` carries neither `size` nor `tags`.
        let body = keyset_page(&s, child, &children, after.as_deref(), size, |offset| {
            format!("{base}?offset={}", escape_uri(offset))
        });
        kong_json(200, &body, &s.version)
    }

    /// `GET /upstreams/{u}/targets/all` (`page_for_upstream_raw`): every target in id order with
    /// the store's keyset paging; `next` without `size`.
    fn upstream_targets_raw(&self, req: &HttpRequest, key: &str) -> HttpResponse {
        let s = self.lock();
        let (Some(up_def), Some(t_def)) = (schema::entity("upstreams"), schema::entity("targets"))
        else {
            return not_found(&s.version);
        };
        let Some(up) = find(&s, up_def, key) else {
            return not_found(&s.version);
        };
        let uid = up["id"].as_str().unwrap_or_default();
        let targets: Vec<&Value> = s
            .loaded
            .collections
            .get("targets")
            .map(|l| {
                l.iter()
                    .filter(|t| t["upstream"].as_str() == Some(uid))
                    .collect()
            })
            .unwrap_or_default();
        let size = match page_size(req, &s.version) {
            Ok(n) => n,
            Err(resp) => return resp,
        };
        let after = match req.query_param("offset") {
            None => None,
            Some(o) => match decode_offset(s.mode, &o) {
                Ok(id) => Some(id),
                Err(why) => return invalid_offset(&o, why, &s.version),
            },
        };
        let body = keyset_page(&s, t_def, &targets, after.as_deref(), size, |offset| {
            format!("/upstreams/{key}/targets/all?offset={}", escape_uri(offset))
        });
        kong_json(200, &body, &s.version)
    }

    /// `GET /upstreams/{u}/targets/{id or address}`.
    fn upstream_target(&self, key: &str, target: &str) -> HttpResponse {
        let s = self.lock();
        let found = schema::entity("upstreams")
            .and_then(|d| find(&s, d, key))
            .and_then(|up| {
                let uid = up["id"].as_str()?;
                s.loaded.collections.get("targets")?.iter().find(|t| {
                    t["upstream"].as_str() == Some(uid)
                        && (t["id"] == target || t["target"] == load::format_target(target))
                })
            });
        match (found, schema::entity("targets")) {
            (Some(t), Some(def)) => kong_json(200, &render(&s, def, t), &s.version),
            _ => not_found(&s.version),
        }
    }

    fn entity(&self, def: &'static EntityDef, key: &str) -> HttpResponse {
        let s = self.lock();
        match find(&s, def, key) {
            Some(e) => kong_json(200, &render(&s, def, e), &s.version),
            None => not_found(&s.version),
        }
    }
}

impl Handler for MockKongAdmin {
    fn handle(&self, req: &HttpRequest, ctx: &CallContext) -> Reply {
        let refused = {
            let mut s = self.lock();
            s.now = ctx.now;
            match &s.rbac {
                Some(r) if req.header(&r.header) != Some(r.token.as_str()) => {
                    Some(kong_json(401, &json!({"message": r.message}), &s.version))
                }
                _ => None,
            }
        };
        let response = match refused {
            Some(r) => r,
            None => self.route(req, ctx),
        };
        let due: Vec<Hook> = {
            let mut s = self.lock();
            let mut logged = req.clone();
            if let Some(r) = &s.rbac {
                for (k, v) in logged.headers.iter_mut() {
                    if k.eq_ignore_ascii_case(&r.header) {
                        *v = "[redacted]".to_string();
                    }
                }
            }
            s.log.push(RecordedCall {
                request: logged,
                node: ctx.node.clone(),
                at: ctx.now,
                status: response.status,
            });
            s.requests_seen += 1;
            let seen = s.requests_seen;
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut s.hooks)
                .into_iter()
                .partition(|(at, _)| *at <= seen);
            s.hooks = later;
            due.into_iter().map(|(_, h)| h).collect()
        };
        for hook in due {
            hook(self);
        }
        Reply::now(response)
    }
}

fn apply(s: &mut State, config: Value, loaded: Loaded, hash: String) -> String {
    s.hash = hash;
    s.loaded = loaded;
    s.config = Some(config);
    s.applied += 1;
    s.hash.clone()
}

/// The flat form of what is stored, the way `export_from_db_impl` emits it.
fn export(loaded: &Loaded, skip_ws: bool, skip_disabled: bool) -> Value {
    let mut out = Map::new();
    out.insert("_format_version".into(), json!("3.0"));
    out.insert("_transform".into(), json!(false));
    let mut disabled: std::collections::HashSet<String> = std::collections::HashSet::new();
    for def in ENTITIES {
        if skip_ws && def.name == "workspaces" {
            continue;
        }
        let Some(list) = loaded.collections.get(def.name) else {
            continue;
        };
        let mut kept = Vec::new();
        for e in list {
            if skip_disabled {
                let id = e["id"].as_str().unwrap_or_default().to_string();
                if def.name == "services" && e["enabled"] == json!(false) {
                    disabled.insert(id);
                    continue;
                }
                if def.name == "routes"
                    && e["service"].as_str().is_some_and(|s| disabled.contains(s))
                {
                    disabled.insert(id);
                    continue;
                }
                if def.name == "plugins" && e["enabled"] == json!(false) {
                    continue;
                }
                if def
                    .foreign
                    .iter()
                    .any(|f| e[f.field].as_str().is_some_and(|r| disabled.contains(r)))
                {
                    continue;
                }
            }
            kept.push(e.clone());
        }
        if !kept.is_empty() {
            out.insert(def.name.to_string(), Value::Array(kept));
        }
    }
    Value::Object(out)
}

/// An entity as the Admin API shows it.
fn render(s: &State, def: &EntityDef, e: &Value) -> Value {
    let mut out = render_foreign(def, e);
    if def.name == "certificates" {
        let id = e["id"].as_str().unwrap_or_default();
        let mut names: Vec<Value> = s
            .loaded
            .collections
            .get("snis")
            .map(|l| {
                l.iter()
                    .filter(|sni| sni["certificate"].as_str() == Some(id))
                    .map(|sni| sni["name"].clone())
                    .collect()
            })
            .unwrap_or_default();
        names.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        out["snis"] = Value::Array(names);
    }
    if def.ttl && s.mode == KongMode::Database {
        if let Some(o) = out.as_object_mut() {
            o.entry("ttl").or_insert(Value::Null);
        }
    }
    out
}

/// Foreign keys as `{"id": ...}`.
fn render_foreign(def: &EntityDef, e: &Value) -> Value {
    let mut out = e.clone();
    for f in def.foreign {
        if let Some(id) = e.get(f.field).and_then(Value::as_str) {
            out[f.field] = json!({"id": id});
        }
    }
    out
}

fn find<'a>(s: &'a State, def: &EntityDef, key: &str) -> Option<&'a Value> {
    let list = s.loaded.collections.get(def.name)?;
    if load::is_valid_uuid(key) {
        return list.iter().find(|e| e["id"] == key);
    }
    let k = def.endpoint_key.filter(|_| def.endpoint_key_unique)?;
    list.iter().find(|e| e[k] == key)
}

fn tags_match(e: &Value, tags: Option<&str>) -> bool {
    let Some(t) = tags else { return true };
    let have: Vec<&str> = e["tags"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if t.contains('/') {
        t.split('/').any(|x| have.contains(&x))
    } else {
        t.split(',').all(|x| have.contains(&x))
    }
}

/// One keyset page: entities with an id after `after`, at most `size`.
fn keyset_page(
    s: &State,
    def: &EntityDef,
    all: &[&Value],
    after: Option<&str>,
    size: usize,
    next: impl Fn(&str) -> String,
) -> Value {
    // `all` is in id order (the store's): start right after the cursor.
    let start = after.map_or(0, |a| {
        all.partition_point(|e| e["id"].as_str().unwrap_or_default() <= a)
    });
    let mut rest = all[start..].iter().peekable();
    let mut data = Vec::new();
    while data.len() < size {
        match rest.next() {
            Some(e) => data.push(*e),
            None => break,
        }
    }
    let more = rest.peek().is_some();
    let rendered: Vec<Value> = data.iter().map(|e| render(s, def, e)).collect();
    let mut body = json!({"data": rendered, "next": Value::Null});
    if more {
        let last = data
            .last()
            .and_then(|e| e["id"].as_str())
            .unwrap_or_default();
        let offset = encode_offset(s.mode, def.name, last);
        body["next"] = json!(next(&offset));
        body["offset"] = json!(offset);
    }
    body
}

/// `GET /upstreams/{u}/targets` (`_TARGETS:page_for_upstream`): newest first, one entry per
/// target address, numeric offsets, size clamped to 1000.
fn targets_page(
    s: &State,
    req: &HttpRequest,
    mut targets: Vec<&Value>,
    base: &str,
) -> HttpResponse {
    let size = match req.query_param("size") {
        None => DEFAULT_PAGE_SIZE as i64,
        Some(v) => match v.trim().parse::<f64>() {
            Ok(n) => (n.floor() as i64).min(MAX_PAGE_SIZE as i64),
            Err(_) => {
                return kong_json(
                    400,
                    &json!({"code": 9, "name": "invalid size", "message": "size must be a number"}),
                    &s.version,
                )
            }
        },
    };
    let offset = match req.query_param("offset") {
        None => 0,
        Some(o) => match o.trim().parse::<i64>() {
            Ok(n) => n,
            // Kong does arithmetic on the string: a Lua error, answered 500.
            Err(_) => {
                return kong_json(
                    500,
                    &json!({"message": "An unexpected error occurred"}),
                    &s.version,
                )
            }
        },
    };
    targets.sort_by(|a, b| {
        let ca = a["created_at"].as_f64().unwrap_or(0.0);
        let cb = b["created_at"].as_f64().unwrap_or(0.0);
        ca.total_cmp(&cb)
            .then_with(|| a["id"].as_str().cmp(&b["id"].as_str()))
    });
    let mut seen = std::collections::HashSet::new();
    let active: Vec<&Value> = targets
        .into_iter()
        .rev()
        .filter(|t| seen.insert(t["target"].as_str().unwrap_or_default().to_string()))
        .collect();
    let def = schema::entity("targets").unwrap_or(&ENTITIES[0]);
    let start = offset.max(0) as usize;
    let end = (offset + size).max(0) as usize;
    let data: Vec<Value> = active
        .iter()
        .enumerate()
        .filter(|(i, _)| *i >= start && *i < end)
        .map(|(_, t)| render(s, def, t))
        .collect();
    let mut body = json!({"data": data, "next": Value::Null});
    if end < active.len() {
        let next_offset = (offset + size).to_string();
        body["next"] = json!(format!("{base}?offset={next_offset}"));
        body["offset"] = json!(next_offset);
    }
    kong_json(200, &body, &s.version)
}

fn page_size(req: &HttpRequest, version: &str) -> Result<usize, HttpResponse> {
    let invalid = |message: String| {
        kong_json(
            400,
            &json!({"code": 9, "name": "invalid size", "message": message}),
            version,
        )
    };
    match req.query_param("size") {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(v) => match v.trim().parse::<f64>() {
            Err(_) => Err(invalid("size must be a number".into())),
            Ok(n) if n.fract() != 0.0 || n < 1.0 || n > MAX_PAGE_SIZE as f64 => Err(invalid(
                format!("size must be an integer between 1 and {MAX_PAGE_SIZE}"),
            )),
            Ok(n) => Ok(n as usize),
        },
    }
}

fn invalid_offset(offset: &str, why: &str, version: &str) -> HttpResponse {
    kong_json(
        400,
        &json!({"code": 7, "name": "invalid offset",
                "message": format!("'{offset}' is not a valid offset: {why}")}),
        version,
    )
}

/// Opaque page cursors: a database node's is base64 of `["<last id>"]` (the postgres strategy),
/// a DB-less node's base64 of the LMDB key of the last entity plus a NUL (the off strategy);
/// both without padding and in the standard alphabet, so they can hold `+` and `/`.
fn encode_offset(mode: KongMode, collection: &str, last_id: &str) -> String {
    let raw = match mode {
        KongMode::Database => json!([last_id]).to_string(),
        KongMode::DbLess => format!("{collection}|{DEFAULT_WORKSPACE_ID}|*|{last_id}\0"),
    };
    STANDARD_NO_PAD.encode(raw)
}

fn decode_offset(mode: KongMode, offset: &str) -> Result<String, &'static str> {
    let trimmed = offset.trim_end_matches('=');
    let raw = STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| STANDARD.decode(offset))
        .map_err(|_| "bad base64 encoding")?;
    match mode {
        KongMode::Database => {
            let v: Value = serde_json::from_slice(&raw).map_err(|_| "bad json encoding")?;
            v.get(0)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or("bad json encoding")
        }
        KongMode::DbLess => {
            let text = String::from_utf8_lossy(&raw);
            let text = text.trim_end_matches('\0');
            Ok(text.rsplit('|').next().unwrap_or_default().to_string())
        }
    }
}

/// `ngx.escape_uri`: everything but unreserved characters percent-encoded.
fn escape_uri(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A query parameter as sent (not decoded), for echoing into `next`.
fn raw_query_param(req: &HttpRequest, name: &str) -> Option<String> {
    req.query()
        .split('&')
        .filter_map(|p| p.split_once('=').or(Some((p, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

/// Kong's answer for a `POST /config` that failed while loading (`kong/api/routes/config.lua`).
pub fn post_error_response(status: u16, retry_after: u64, version: &str) -> HttpResponse {
    let message = match status {
        413 => "Configuration does not fit in LMDB database, consider raising the \"lmdb_map_size\" config for Kong",
        429 => "Currently loading previous configuration",
        500 => "An unexpected error occurred",
        503 => "Kong currently exiting",
        504 => "Timed out while loading configuration",
        401 => "Unauthorized",
        404 => "Not found",
        405 => "Method not allowed",
        502 => "Bad gateway",
        _ => "mock: scripted status",
    };
    let resp = kong_json(status, &json!({ "message": message }), version);
    if status == 429 {
        resp.with_header("retry-after", &retry_after.to_string())
    } else {
        resp
    }
}

/// The document in a `POST /config` and, when it came as text, its hash (md5 of the text), the
/// way `hydrate_config_from_request` reads `self.params` (JSON body fields, form fields).
fn config_from_request(req: &HttpRequest) -> Result<(Value, Option<String>), HttpResponse> {
    let json400 = |body: &Value| {
        HttpResponse::new(400)
            .with_header("content-type", "application/json; charset=utf-8")
            .with_body(body.to_string())
    };
    let expected = || json400(&json!({"message": "expected a declarative configuration"}));
    let parse_error = |e: String| {
        let mut fields = Map::new();
        fields.insert("error".into(), json!(e));
        json400(&declarative::error_body(&fields))
    };
    let from_text = |text: &str| -> Result<(Value, Option<String>), HttpResponse> {
        let v = declarative::unserialize(text).map_err(parse_error)?;
        Ok((v, Some(hex::encode(Md5::digest(text.as_bytes())))))
    };
    let ct = req
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut params = Map::new();
    if ct.contains("application/json") {
        if let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(&req.body) {
            params = o;
        }
    } else if ct.starts_with("application/x-www-form-urlencoded") {
        for (k, v) in url::form_urlencoded::parse(&req.body) {
            params.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    }
    if params.get("_format_version").is_some_and(|v| !v.is_null()) {
        params.remove("flatten_errors");
        params.remove("check_hash");
        return Ok((Value::Object(params), None));
    }
    match params.get("config") {
        Some(Value::String(text)) => from_text(text),
        Some(Value::Null) | None => {
            if req.body.is_empty() {
                return Err(expected());
            }
            from_text(&String::from_utf8_lossy(&req.body))
        }
        Some(_) => Err(parse_error(
            "failed parsing declarative configuration: bad argument #1 to 'load' (string expected, got table)"
                .to_string(),
        )),
    }
}

fn only_dbless(version: &str) -> HttpResponse {
    kong_json(
        400,
        &json!({"message": "this endpoint is only available when Kong is configured to not use a database"}),
        version,
    )
}

fn not_found(version: &str) -> HttpResponse {
    kong_json(404, &json!({"message": "Not found"}), version)
}

fn kong_json(status: u16, body: &Value, version: &str) -> HttpResponse {
    HttpResponse::new(status)
        .with_header("content-type", "application/json; charset=utf-8")
        .with_header("access-control-allow-origin", "*")
        .with_header("server", &format!("kong/{version}"))
        .with_header("x-kong-admin-latency", "0")
        .with_body(body.to_string())
}

/// Kong's `truthy()` for query flags.
fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "on" | "yes")
}

fn new_uuid() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    load::format_uuid(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_in_both_modes() {
        for mode in [KongMode::Database, KongMode::DbLess] {
            let id = "fb0c0b5c-1b5e-4a8b-9e3e-2a3f6c1d9e7f";
            let o = encode_offset(mode, "services", id);
            assert_eq!(decode_offset(mode, &o).unwrap(), id);
        }
        assert_eq!(
            decode_offset(KongMode::Database, "!!"),
            Err("bad base64 encoding")
        );
        assert_eq!(escape_uri("a+b/c="), "a%2Bb%2Fc%3D");
    }
}
