//! Turning a declarative document (flat, nested or both) into the entities Kong stores, the way
//! `kong/db/schema/others/declarative_config.lua` `flatten` (3.4.0–3.9.1) does it:
//!
//! * nested children are hoisted to their own collection with a foreign key to their parent
//!   (`services[].routes[]` → `routes[]` with `service`), whatever the entity (every foreign key
//!   allows nesting under the entity it references);
//! * entities without an `id` get Kong's deterministic UUIDv5 when Kong makes one (from the
//!   `cache_key` or a unique `endpoint_key`: `generate_ids`/`get_key_for_uuid_gen`), else a random
//!   one;
//! * every schema field is filled with its default (`process_auto_fields(..., "insert")`):
//!   `created_at` when missing, `updated_at` always "now" (Kong overwrites it on every load),
//!   `auto` strings (`keyauth_credentials.key`, ...) generated, fields the schema does not know
//!   dropped (the flat entry is built field by field from the schema);
//! * foreign keys, given as an id, a unique endpoint key (a name) or `{"id": ...}`, are resolved
//!   to the referenced entity's id and stored as the plain id string (the flat form); a dangling
//!   one is Kong's `invalid reference '<field>: <value>' (no such entry in '<collection>')`;
//! * duplicate ids and unique endpoint keys are Kong's `uniqueness violation` errors;
//! * with `_transform` not `false`, basic-auth passwords are hashed as
//!   `kong/plugins/basic-auth/crypto.lua` does (`sha1(password .. consumer_id)`, hex) — the only
//!   transformation the mock performs (oauth2's `hash_secret` is not reproduced).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use md5::Digest;
use serde_json::{json, Map, Value};
use sha1::Sha1;
use sha2::Sha256;

use super::schema::{self, EntityDef, Timestamps, DEFAULT_WORKSPACE_ID, ENTITIES};

/// Kong's namespace for declarative ids (`uuid_generators._entities`).
const ENTITIES_NAMESPACE: &str = "fd02801f-0957-4a15-a55a-c8d9606f30b5";

/// Where an error sits in Kong's nested error table for a collection: the 1-based index of a
/// top-level entry, or a name/id (Kong keys reference errors by endpoint key or id).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrKey {
    Index(usize),
    Key(String),
}

/// Errors of the reference/uniqueness phase, by collection.
pub type RefErrors = BTreeMap<String, BTreeMap<ErrKey, Value>>;

/// Why a document was refused in the reference/uniqueness phase.
#[derive(Clone, Debug, Default)]
pub struct RefFailure {
    /// Kong's nested error table (`fields`).
    pub errors: RefErrors,
    /// `flattened_errors` entries of errors filed by index (Kong 3.4–3.9 reports these).
    pub flattened_by_index: Vec<Value>,
    /// `flattened_errors` entries of errors filed by name or id: Kong 3.4–3.9's
    /// `flatten_errors` cannot find those entities in the input array and drops them.
    pub flattened_by_key: Vec<Value>,
}

/// Entities as loaded.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// `_format_version`, `_transform` (defaulted to `true`), `_comment`, ...
    pub meta: Map<String, Value>,
    /// Flat form, foreign keys as plain id strings, sorted by id; `workspaces` always present.
    pub collections: BTreeMap<String, Vec<Value>>,
    /// The same before transformations (what `POST /config` answers with).
    pub untransformed: BTreeMap<String, Vec<Value>>,
}

impl Loaded {
    /// No entity besides workspaces (Kong's `config_is_empty`: the hash is then 32 zeros).
    pub fn is_empty(&self) -> bool {
        self.collections
            .iter()
            .all(|(k, v)| k == "workspaces" || v.is_empty())
    }
}

/// How to load.
pub struct LoadOptions<'a> {
    pub now: SystemTime,
    /// DB-less loads overwrite `updated_at` (Kong's insert); a database keeps a given one.
    pub overwrite_updated_at: bool,
    /// Skip reference and uniqueness checks (test fixtures may be loaded as they are).
    pub lenient: bool,
    pub random_id: &'a mut dyn FnMut() -> String,
}

struct Item {
    def: &'static EntityDef,
    value: Map<String, Value>,
    /// 1-based position in the top-level array.
    top_index: Option<usize>,
    /// The entry as given (for error reports).
    original: Value,
}

/// Flattens and normalises `config`. Errors are the reference/uniqueness phase's (the schema
/// phase is `declarative::validate`).
pub fn load(config: &Value, opts: &mut LoadOptions<'_>) -> Result<Loaded, RefFailure> {
    let top = config.as_object().cloned().unwrap_or_default();
    let mut meta = Map::new();
    for (k, v) in &top {
        if k.starts_with('_') {
            meta.insert(k.clone(), v.clone());
        }
    }
    if !meta.contains_key("_transform") {
        meta.insert("_transform".into(), json!(true));
    }
    let transform = meta.get("_transform") != Some(&Value::Bool(false));

    // Hoist nested entities and give every entity an id.
    let mut items = Vec::new();
    for def in ENTITIES {
        let Some(list) = top.get(def.name).and_then(Value::as_array) else {
            continue;
        };
        for (i, entry) in list.iter().enumerate() {
            visit(def, entry, Some(i + 1), None, &mut items, opts);
        }
    }

    let now = opts.now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let now_s = now.as_secs();
    let now_ms = (now.as_millis() as f64) / 1000.0;
    for item in &mut items {
        normalise(item, now_s, now_ms, opts.overwrite_updated_at);
    }

    // Resolve references and check uniqueness.
    let mut by_id: HashMap<&str, HashSet<String>> = HashMap::new();
    let mut by_key: HashMap<&str, HashMap<String, String>> = HashMap::new();
    let mut fail = RefFailure::default();
    for item in &items {
        let id = item.value["id"].as_str().unwrap_or_default().to_string();
        let mut failed = false;
        if let Some(key) = unique_key(item) {
            let keys = by_key.entry(item.def.name).or_default();
            if keys.contains_key(&key) && !opts.lenient {
                let msg = uniqueness(item.def.name, item.def.endpoint_key.unwrap_or("?"), &key);
                push_err(&mut fail, item, err_key_at(item, true), json!(msg));
                failed = true;
            } else {
                keys.insert(key, id.clone());
            }
        }
        let ids = by_id.entry(item.def.name).or_default();
        if !failed && ids.contains(&id) && !opts.lenient {
            let msg = uniqueness(item.def.name, "primary key", &id);
            push_err(&mut fail, item, err_key_at(item, true), json!(msg));
        } else {
            ids.insert(id);
        }
    }
    for item in &mut items {
        let mut messages = Vec::new();
        for f in item.def.foreign {
            let Some(v) = item.value.get(f.field).cloned() else {
                continue;
            };
            let wanted = match &v {
                Value::Null => continue,
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_string),
                _ => None,
            };
            let found = wanted.as_ref().and_then(|w| {
                if by_id.get(f.reference).is_some_and(|s| s.contains(w)) {
                    Some(w.clone())
                } else {
                    by_key.get(f.reference).and_then(|m| m.get(w)).cloned()
                }
            });
            match found {
                Some(id) => {
                    item.value.insert(f.field.into(), Value::String(id));
                }
                None if opts.lenient => {
                    if let Some(w) = wanted {
                        item.value.insert(f.field.into(), Value::String(w));
                    }
                }
                None => {
                    let shown = match &v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    messages.push(json!(format!(
                        "invalid reference '{}: {}' (no such entry in '{}')",
                        f.field, shown, f.reference
                    )));
                }
            }
        }
        if !messages.is_empty() {
            let at = err_key_at(item, false);
            let slot = fail
                .errors
                .entry(item.def.name.to_string())
                .or_default()
                .entry(at)
                .or_insert_with(|| json!([]));
            if let Some(a) = slot.as_array_mut() {
                a.extend(messages.iter().cloned());
            }
            fail.flattened_by_key.push(flat_entry(item, messages));
        }
    }
    if !fail.errors.is_empty() {
        return Err(fail);
    }

    let mut collections: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut untransformed: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for item in items {
        let mut e = item.value;
        untransformed
            .entry(item.def.name.to_string())
            .or_default()
            .push(Value::Object(e.clone()));
        if transform && item.def.name == "basicauth_credentials" {
            if let (Some(pw), Some(consumer)) = (
                e.get("password").and_then(Value::as_str),
                e.get("consumer").and_then(Value::as_str),
            ) {
                let hashed = basicauth_hash(consumer, pw);
                e.insert("password".into(), json!(hashed));
            }
        }
        collections
            .entry(item.def.name.to_string())
            .or_default()
            .push(Value::Object(e));
    }
    if collections.get("workspaces").is_none_or(Vec::is_empty) {
        let ws = json!({
            "id": DEFAULT_WORKSPACE_ID, "name": "default", "comment": null,
            "created_at": now_s, "updated_at": now_s, "meta": {}, "config": {},
        });
        collections.insert("workspaces".into(), vec![ws]);
    }
    for list in collections.values_mut().chain(untransformed.values_mut()) {
        sort_by_id(list);
    }
    Ok(Loaded {
        meta,
        collections,
        untransformed,
    })
}

/// Sorts entities by id (the order Kong's stores list them in).
pub fn sort_by_id(list: &mut [Value]) {
    list.sort_by(|a, b| {
        a["id"]
            .as_str()
            .unwrap_or_default()
            .cmp(b["id"].as_str().unwrap_or_default())
    });
}

fn uniqueness(entity: &str, key: &str, value: &str) -> String {
    format!("uniqueness violation: '{entity}' entity with {key} set to '{value}' already declared")
}

fn unique_key(item: &Item) -> Option<String> {
    if !item.def.endpoint_key_unique {
        return None;
    }
    item.def
        .endpoint_key
        .and_then(|k| item.value.get(k))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Where Kong files an error: uniqueness errors of top-level entries by index; reference errors by
/// unique endpoint key, else id (`at = key or item_id or i`).
fn err_key_at(item: &Item, by_index: bool) -> ErrKey {
    if by_index {
        if let Some(i) = item.top_index {
            return ErrKey::Index(i);
        }
    }
    match unique_key(item) {
        Some(k) => ErrKey::Key(k),
        None => ErrKey::Key(item.value["id"].as_str().unwrap_or_default().to_string()),
    }
}

fn push_err(fail: &mut RefFailure, item: &Item, at: ErrKey, msg: Value) {
    let entry = flat_entry(item, vec![msg.clone()]);
    match at {
        ErrKey::Index(_) => fail.flattened_by_index.push(entry),
        ErrKey::Key(_) => fail.flattened_by_key.push(entry),
    }
    fail.errors
        .entry(item.def.name.to_string())
        .or_default()
        .insert(at, msg);
}

/// A `flattened_errors` entry for an entity-level error.
fn flat_entry(item: &Item, messages: Vec<Value>) -> Value {
    let errors: Vec<Value> = messages
        .into_iter()
        .map(|m| json!({"type": "entity", "message": m}))
        .collect();
    entry_for(item.def, &item.original, errors)
}

/// Kong's flattened entry: `entity_type` singular, `entity_name`/`entity_id`/`entity_tags` only
/// when well-formed.
pub fn entry_for(def: &EntityDef, entity: &Value, errors: Vec<Value>) -> Value {
    let mut e = json!({"entity_type": def.singular(), "entity": entity, "errors": errors});
    if let Some(name) = entity.get("name").and_then(Value::as_str) {
        if !name.is_empty() {
            e["entity_name"] = json!(name);
        }
    }
    if let Some(id) = entity.get("id").and_then(Value::as_str) {
        if is_valid_uuid(id) {
            e["entity_id"] = json!(id);
        }
    }
    if let Some(tags) = entity.get("tags").and_then(Value::as_array) {
        if tags.iter().all(Value::is_string) {
            e["entity_tags"] = Value::Array(tags.clone());
        }
    }
    e
}

fn visit(
    def: &'static EntityDef,
    entry: &Value,
    top_index: Option<usize>,
    parent: Option<(&'static schema::Foreign, String)>,
    out: &mut Vec<Item>,
    opts: &mut LoadOptions<'_>,
) {
    let mut value = match entry {
        Value::Object(o) => o.clone(),
        // `certificates[].snis` may list bare names (the transient `snis` field).
        Value::String(s) if def.name == "snis" => {
            let mut m = Map::new();
            m.insert("name".into(), json!(s));
            m
        }
        _ => return,
    };
    let children: Vec<(&'static EntityDef, &'static schema::Foreign, Vec<Value>)> =
        schema::nestable_children(def.name)
            .into_iter()
            .filter_map(|(c, f)| match value.remove(c.name) {
                Some(Value::Array(list)) => Some((c, f, list)),
                Some(other) => {
                    // Not a list of children: leave it for the schema check to refuse.
                    value.insert(c.name.to_string(), other);
                    None
                }
                None => None,
            })
            .collect();
    if !value.get("id").is_some_and(Value::is_string) {
        let id = match id_key(def, &value, parent.as_ref()) {
            Some(key) => uuid_v5(&uuid_v5(ENTITIES_NAMESPACE, def.name), &key),
            None => (opts.random_id)(),
        };
        value.insert("id".into(), json!(id));
    }
    if let Some((f, pid)) = &parent {
        value.insert(f.field.to_string(), json!(pid));
    }
    let id = value["id"].as_str().unwrap_or_default().to_string();
    out.push(Item {
        def,
        value,
        top_index,
        original: entry.clone(),
    });
    for (child, f, list) in children {
        for c in &list {
            visit(child, c, None, Some((f, id.clone())), out, opts);
        }
    }
}

/// Kong's `get_key_for_uuid_gen` (+ `build_cache_key`): the name a deterministic id is made of,
/// or `None` for a random id.
fn id_key(
    def: &EntityDef,
    item: &Map<String, Value>,
    parent: Option<&(&'static schema::Foreign, String)>,
) -> Option<String> {
    if !def.cache_key.is_empty() {
        let mut ck = vec![def.name.to_string(), "*".to_string()];
        for k in def.cache_key {
            if def.auto_strings.contains(k) {
                return None;
            }
            match item.get(*k) {
                Some(Value::String(s)) => ck.push(s.clone()),
                None => {
                    if let Some((_, pid)) = parent.filter(|(f, _)| f.field == *k) {
                        ck.push(pid.clone());
                    } else if def.required.contains(k)
                        || def.is_foreign(k).is_some_and(|f| f.required)
                    {
                        return None;
                    } else {
                        ck.push(String::new());
                    }
                }
                Some(_) => {}
            }
        }
        return Some(ck.join(":"));
    }
    let key = def.endpoint_key.and_then(|k| item.get(k))?;
    match key {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Fills defaults, timestamps and auto fields; drops what the schema does not know.
fn normalise(item: &mut Item, now_s: u64, now_ms: f64, overwrite_updated_at: bool) {
    let def = item.def;
    let given = std::mem::take(&mut item.value);
    let mut e = def.template().as_object().cloned().unwrap_or_default();
    if def.name == "services" {
        if let Some(u) = given.get("url").and_then(Value::as_str) {
            for (k, v) in expand_url(u) {
                e.insert(k.into(), v);
            }
        }
    }
    for (k, v) in &given {
        if e.contains_key(k) {
            e.insert(k.clone(), v.clone());
        }
    }
    e.insert("id".into(), given["id"].clone());
    let (created, updated) = match def.timestamps {
        Timestamps::Millis => (json!(now_ms), Some(json!(now_ms))),
        Timestamps::Seconds => (json!(now_s), Some(json!(now_s))),
        Timestamps::CreatedOnly => (json!(now_s), None),
    };
    match given.get("created_at") {
        Some(v) if !v.is_null() => e.insert("created_at".into(), v.clone()),
        _ => e.insert("created_at".into(), created),
    };
    if let Some(updated) = updated {
        match given.get("updated_at") {
            Some(v) if !v.is_null() && !overwrite_updated_at => {
                e.insert("updated_at".into(), v.clone())
            }
            _ => e.insert("updated_at".into(), updated),
        };
    }
    for k in def.auto_strings {
        if !given.contains_key(*k) {
            e.insert(k.to_string(), json!(random_string()));
        }
    }
    if def.ttl {
        if let Some(t) = given.get("ttl").filter(|t| !t.is_null()) {
            e.insert("ttl".into(), t.clone());
        }
    }
    if def.name == "ca_certificates" && e["cert_digest"].is_null() {
        if let Some(d) = e["cert"].as_str().and_then(pem_sha256) {
            e.insert("cert_digest".into(), json!(d));
        }
    }
    if def.name == "targets" {
        if let Some(t) = e["target"].as_str() {
            let formatted = format_target(t);
            e.insert("target".into(), json!(formatted));
        }
    }
    item.value = e;
}

/// The `url` shorthand of services (`kong/db/schema/entities/services.lua`).
fn expand_url(u: &str) -> Vec<(&'static str, Value)> {
    let (scheme, rest) = match u.split_once("://") {
        Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
        None => (None, u),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, p)) => (
                h.to_string(),
                p.strip_prefix(':').and_then(|p| p.parse().ok()),
            ),
            None => (authority.to_string(), None),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse::<u64>().ok()),
            None => (authority.to_string(), None),
        }
    };
    let protocol = scheme.unwrap_or_else(|| match port {
        Some(443) => "https".into(),
        _ => "http".into(),
    });
    let port = port.unwrap_or(if protocol == "https" { 443 } else { 80 });
    let path = tail.split(['?', '#']).next().unwrap_or("");
    vec![
        ("protocol", json!(protocol)),
        (
            "host",
            if host.is_empty() {
                Value::Null
            } else {
                json!(host)
            },
        ),
        ("port", json!(port)),
        (
            "path",
            if path.is_empty() {
                Value::Null
            } else {
                json!(path)
            },
        ),
    ]
}

/// `host:port` with Kong's default target port 8000 (`kong/db/dao/targets.lua`).
pub fn format_target(t: &str) -> String {
    if t.starts_with('[') {
        if t.contains("]:") {
            t.to_string()
        } else {
            format!("{t}:8000")
        }
    } else {
        match t.matches(':').count() {
            0 => format!("{t}:8000"),
            1 => t.to_string(),
            _ => format!("[{t}]:8000"),
        }
    }
}

/// sha256 (hex) of the DER inside a PEM certificate: what `x509:digest("sha256")` computes.
pub fn pem_sha256(pem: &str) -> Option<String> {
    let b64: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = STANDARD.decode(b64).ok()?;
    if der.is_empty() {
        return None;
    }
    Some(hex::encode(Sha256::digest(&der)))
}

/// `kong/plugins/basic-auth/crypto.lua`: sha1 of password .. consumer id, hex.
pub fn basicauth_hash(consumer_id: &str, password: &str) -> String {
    hex::encode(Sha1::digest(format!("{password}{consumer_id}").as_bytes()))
}

/// RFC 4122 version-5 UUID of `name` in `namespace` (what lua-resty-jit-uuid's `factory_v5`
/// computes).
pub fn uuid_v5(namespace: &str, name: &str) -> String {
    let ns = hex::decode(namespace.replace('-', "")).unwrap_or_default();
    let mut h = Sha1::new();
    h.update(&ns);
    h.update(name.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    format_uuid(&b)
}

pub fn format_uuid(b: &[u8; 16]) -> String {
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

/// Kong's `uuid.is_valid_uuid`.
pub fn is_valid_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn random_string() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v5_matches_rfc_4122() {
        // Python: uuid.uuid5(uuid.NAMESPACE_DNS, "python.org")
        assert_eq!(
            uuid_v5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "python.org"),
            "886313e1-3b8a-5372-9b90-0c9aee199e5d"
        );
    }

    #[test]
    fn targets_get_the_default_port() {
        assert_eq!(format_target("10.0.0.1"), "10.0.0.1:8000");
        assert_eq!(format_target("a.example:81"), "a.example:81");
        assert_eq!(format_target("::1"), "[::1]:8000");
        assert_eq!(format_target("[::1]:9"), "[::1]:9");
    }

    #[test]
    fn service_urls_expand_like_kong() {
        let v: Map<String, Value> = expand_url("http://echo:8080")
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(
            Value::Object(v),
            json!({"protocol": "http", "host": "echo", "port": 8080, "path": null})
        );
        let v: Map<String, Value> = expand_url("https://example.com/a/b?x")
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(
            Value::Object(v),
            json!({"protocol": "https", "host": "example.com", "port": 443, "path": "/a/b"})
        );
    }
}
