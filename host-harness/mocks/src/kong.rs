//! Mock Kong Admin API: `GET /`, `GET /status` (with `configuration_hash` in DB-less mode),
//! DB-less `GET /config` / `POST /config` (`check_hash`, `flatten_errors`, Kong's error bodies),
//! and read-only entity collections with Kong's `size`/`offset`/`next` pagination.
//!
//! It holds one current declarative config: tests call `set_config` to simulate "a config was
//! applied" (e.g. by a CP), or let the filter `POST /config` it. Clones share state.
//! Deviation from Kong: the configuration hash is md5 over a canonical JSON rendering (Kong
//! hashes its own serialisation), so equal configs hash equally whatever their key order.

pub mod declarative;

use std::sync::{Arc, Mutex, MutexGuard};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde_json::{json, Map, Value};

use crate::gcs::RecordedCall;
use crate::http::{CallContext, Handler, HttpRequest, HttpResponse, Reply};
use declarative::{COLLECTIONS, EMPTY_CONFIG_HASH};

const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 1000;

/// How the node stores its configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KongMode {
    /// `database = off`: `/config` works, `/status` has `configuration_hash`.
    DbLess,
    /// `database = postgres`: `/config` answers 400; entities come from the collections.
    Database,
}

struct State {
    mode: KongMode,
    version: String,
    node_id: String,
    hostname: String,
    config: Option<Value>,
    hash: String,
    /// The config's entities by collection, ids assigned (what the collection endpoints serve).
    entities: Map<String, Value>,
    /// How many configs were loaded (by `set_config` or `POST /config`).
    applied: u64,
    log: Vec<RecordedCall>,
}

/// Mock Kong Admin API; see the module docs.
#[derive(Clone)]
pub struct MockKongAdmin {
    state: Arc<Mutex<State>>,
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
                entities: declarative::collections(&Value::Null, &mut new_uuid),
                applied: 0,
                log: Vec::new(),
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

    /// Loads `config` as if it had been applied (no validation: tests may load anything).
    /// Returns the new configuration hash.
    pub fn set_config(&self, config: Value) -> String {
        let mut s = self.lock();
        load(&mut s, config)
    }

    /// Forgets the config: the node is empty again (hash of zeros).
    pub fn clear_config(&self) {
        let mut s = self.lock();
        s.config = None;
        s.hash = EMPTY_CONFIG_HASH.to_string();
        s.entities = declarative::collections(&Value::Null, &mut new_uuid);
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

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedCall> {
        self.lock().log.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().log.clear();
    }

    fn route(&self, req: &HttpRequest) -> HttpResponse {
        let path = req.path_only().trim_end_matches('/');
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let m = req.method.as_str();
        match (m, segments.as_slice()) {
            ("GET", []) => self.root(),
            ("GET", ["status"]) => self.status(),
            ("GET", ["config"]) => self.get_config(),
            ("POST", ["config"]) => self.post_config(req),
            ("GET", [collection]) if is_collection(collection) => self.list(req, collection),
            ("GET", [collection, id]) if is_collection(collection) => self.entity(collection, id),
            (_, [collection, ..]) if is_collection(collection) => {
                let s = self.lock();
                if s.mode == KongMode::DbLess {
                    kong_json(405, &json!({"message": "Method not allowed"}), &s.version)
                } else {
                    // Writes go through `set_config`; the mock serves collections read-only.
                    kong_json(
                        405,
                        &json!({"message": "Method not allowed (mock: read-only collections)"}),
                        &s.version,
                    )
                }
            }
            _ => kong_json(404, &json!({"message": "Not found"}), &self.lock().version),
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
        // Kong exports `_format_version` + `_transform: false` even when nothing is loaded.
        let mut export = s
            .config
            .clone()
            .unwrap_or_else(|| json!({"_format_version": "3.0"}));
        if let Some(o) = export.as_object_mut() {
            o.insert("_transform".into(), json!(false));
        }
        kong_json(
            200,
            &json!({"config": declarative::to_yaml(&export)}),
            &s.version,
        )
    }

    fn post_config(&self, req: &HttpRequest) -> HttpResponse {
        let version = self.lock().version.clone();
        if self.lock().mode != KongMode::DbLess {
            return only_dbless(&version);
        }
        let flatten = req
            .query_param("flatten_errors")
            .is_some_and(|v| truthy(&v));
        let check_hash = req.query_param("check_hash").as_deref() == Some("1");
        let config = match config_from_request(req) {
            Ok(c) => c,
            Err(resp) => return resp.with_header("server", &format!("kong/{version}")),
        };
        if let Err(inv) = declarative::validate(&config) {
            let mut body = declarative::error_body(&inv.fields);
            if flatten {
                body["flattened_errors"] = Value::Array(inv.flattened);
            }
            return kong_json(400, &body, &version);
        }
        let mut s = self.lock();
        if check_hash && s.config.is_some() && declarative::config_hash(&config) == s.hash {
            return HttpResponse::new(304).with_header("server", &format!("kong/{version}"));
        }
        load(&mut s, config);
        // Kong answers with the loaded entities, keyed by collection then by id.
        let mut body = Map::new();
        for (collection, list) in &s.entities {
            let Some(items) = list.as_array().filter(|l| !l.is_empty()) else {
                continue;
            };
            let by_id: Map<String, Value> = items
                .iter()
                .map(|e| (e["id"].as_str().unwrap_or_default().to_string(), e.clone()))
                .collect();
            body.insert(collection.clone(), Value::Object(by_id));
        }
        kong_json(201, &Value::Object(body), &version)
    }

    fn list(&self, req: &HttpRequest, collection: &str) -> HttpResponse {
        let s = self.lock();
        let size = match req.query_param("size") {
            None => DEFAULT_PAGE_SIZE,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
                _ => {
                    return kong_json(
                        400,
                        &json!({"code": 3, "name": "invalid size",
                                "message": format!("size must be an integer between 1 and {MAX_PAGE_SIZE}")}),
                        &s.version,
                    )
                }
            },
        };
        let start = match req.query_param("offset") {
            None => 0,
            Some(o) => match decode_offset(&o) {
                Some(n) => n,
                None => {
                    return kong_json(
                        400,
                        &json!({"code": 7, "name": "invalid offset", "message": format!("'{o}' is not a valid offset: bad base64 encoding")}),
                        &s.version,
                    )
                }
            },
        };
        let all = s
            .entities
            .get(collection)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let end = all.len().min(start + size);
        let data: Vec<Value> = all
            .get(start..end)
            .map(<[Value]>::to_vec)
            .unwrap_or_default();
        let mut body = json!({"data": data, "next": Value::Null});
        if end < all.len() {
            let offset = encode_offset(end);
            let size_part = req
                .query_param("size")
                .map(|s| format!("&size={s}"))
                .unwrap_or_default();
            body["offset"] = json!(offset);
            body["next"] = json!(format!("/{collection}?offset={offset}{size_part}"));
        }
        kong_json(200, &body, &s.version)
    }

    fn entity(&self, collection: &str, id: &str) -> HttpResponse {
        let s = self.lock();
        let found = s
            .entities
            .get(collection)
            .and_then(Value::as_array)
            .and_then(|l| {
                l.iter()
                    .find(|e| e["id"] == id || e.get("name").and_then(Value::as_str) == Some(id))
            })
            .cloned();
        match found {
            Some(e) => kong_json(200, &e, &s.version),
            None => kong_json(404, &json!({"message": "Not found"}), &s.version),
        }
    }
}

impl Handler for MockKongAdmin {
    fn handle(&self, req: &HttpRequest, ctx: &CallContext) -> Reply {
        let response = self.route(req);
        self.lock().log.push(RecordedCall {
            request: req.clone(),
            node: ctx.node.clone(),
            at: ctx.now,
            status: response.status,
        });
        Reply::now(response)
    }
}

fn load(s: &mut State, config: Value) -> String {
    s.hash = declarative::config_hash(&config);
    s.entities = declarative::collections(&config, &mut new_uuid);
    s.config = Some(config);
    s.applied += 1;
    s.hash.clone()
}

/// The declarative config in a `POST /config`: a JSON body that is the config itself, a JSON or
/// form body with a `config` field (a string of JSON/YAML, or an object), or a raw YAML body.
fn config_from_request(req: &HttpRequest) -> Result<Value, HttpResponse> {
    let expected = || {
        HttpResponse::json(
            400,
            &json!({"message": "expected a declarative configuration"}),
        )
    };
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(expected());
    }
    let parse_error = |e: String| {
        let mut fields = Map::new();
        fields.insert("error".into(), json!(e));
        HttpResponse::json(400, &declarative::error_body(&fields))
    };
    let ct = req.header("content-type").unwrap_or("");
    let inner = |v: &Value| -> Result<Value, HttpResponse> {
        match v {
            Value::String(text) => declarative::parse_text(text).map_err(parse_error),
            Value::Object(_) => Ok(v.clone()),
            _ => Err(expected()),
        }
    };
    if ct.starts_with("application/x-www-form-urlencoded") {
        let config = url::form_urlencoded::parse(&req.body)
            .find(|(k, _)| k == "config")
            .map(|(_, v)| Value::String(v.into_owned()));
        return config
            .as_ref()
            .map(inner)
            .unwrap_or_else(|| Err(expected()));
    }
    let text = String::from_utf8_lossy(&req.body);
    let parsed = declarative::parse_text(&text).map_err(parse_error)?;
    match parsed.get("config") {
        Some(c) if parsed.get("_format_version").is_none() => inner(c),
        _ => Ok(parsed),
    }
}

fn is_collection(name: &str) -> bool {
    COLLECTIONS.iter().any(|(c, _)| *c == name)
}

fn only_dbless(version: &str) -> HttpResponse {
    kong_json(
        400,
        &json!({"message": "this endpoint is only available when Kong is configured to not use a database"}),
        version,
    )
}

fn kong_json(status: u16, body: &Value, version: &str) -> HttpResponse {
    HttpResponse::new(status)
        .with_header("content-type", "application/json; charset=utf-8")
        .with_header("server", &format!("kong/{version}"))
        .with_body(body.to_string())
}

/// Kong's `truthy()` for query flags.
fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "on" | "yes")
}

/// Offsets are opaque to clients; the mock's is the start index.
fn encode_offset(index: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("mock-offset:{index}"))
}

fn decode_offset(o: &str) -> Option<usize> {
    let raw = URL_SAFE_NO_PAD.decode(o.trim_end_matches('=')).ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix("mock-offset:")?
        .parse()
        .ok()
}

fn new_uuid() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
