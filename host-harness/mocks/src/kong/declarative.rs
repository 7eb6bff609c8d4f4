//! Kong declarative configuration as the mock Admin API sees it: parsing (JSON or YAML),
//! a shape check close to Kong's (format version, known entity collections, required fields),
//! Kong's error bodies (nested `fields` and `flatten_errors=1`'s `flattened_errors`), the
//! configuration hash, and flattening into entity collections for the database-mode endpoints.

use md5::{Digest, Md5};
use serde_json::{json, Map, Value};

/// Kong's hash when no configuration is loaded.
pub const EMPTY_CONFIG_HASH: &str = "00000000000000000000000000000000";

pub const FORMAT_VERSIONS: &[&str] = &["1.1", "2.1", "3.0"];

/// Top-level collections a declarative config may hold, with their singular entity names.
pub const COLLECTIONS: &[(&str, &str)] = &[
    ("services", "service"),
    ("routes", "route"),
    ("plugins", "plugin"),
    ("consumers", "consumer"),
    ("upstreams", "upstream"),
    ("targets", "target"),
    ("certificates", "certificate"),
    ("ca_certificates", "ca_certificate"),
    ("snis", "sni"),
    ("vaults", "vault"),
    ("keys", "key"),
    ("key_sets", "key_set"),
    ("consumer_groups", "consumer_group"),
    ("filter_chains", "filter_chain"),
    ("acls", "acl"),
    ("basicauth_credentials", "basicauth_credential"),
    ("keyauth_credentials", "keyauth_credential"),
    ("jwt_secrets", "jwt_secret"),
    ("hmacauth_credentials", "hmacauth_credential"),
    ("oauth2_credentials", "oauth2_credential"),
];

/// Top-level keys that are not collections.
const META_KEYS: &[&str] = &[
    "_format_version",
    "_transform",
    "_comment",
    "_workspace",
    "_info",
];

/// Entities that can be nested under another one (`services[].routes[]`, ...).
const NESTED: &[&str] = &["routes", "plugins", "targets", "snis"];

/// Why a config was refused: Kong's nested `err_t` (becomes `fields`) and the per-entity list
/// that `flatten_errors=1` reports.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Invalid {
    pub fields: Map<String, Value>,
    pub flattened: Vec<Value>,
}

/// Parses a config sent as text: JSON first, then YAML (Kong accepts both).
pub fn parse_text(text: &str) -> Result<Value, String> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return Ok(v);
    }
    serde_norway::from_str::<Value>(text)
        .map_err(|e| format!("failed parsing declarative configuration: {e}"))
}

/// Kong's YAML rendering of a config (what `GET /config` returns inside `{"config": ...}`).
pub fn to_yaml(config: &Value) -> String {
    serde_norway::to_string(config).unwrap_or_default()
}

/// JSON with object keys sorted at every level, so equal configs hash equally.
pub fn canonical_json(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                // serde_json may preserve insertion order (feature unification), so build the
                // sorted object explicitly.
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), sort(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

/// The configuration hash: md5 of the canonical JSON, 32 hex chars. (Kong hashes its own
/// serialisation; the mock only promises "same config, same hash; different config, different
/// hash", which is what `check_hash` and `/status` pollers rely on.)
pub fn config_hash(config: &Value) -> String {
    hex::encode(Md5::digest(canonical_json(config).as_bytes()))
}

/// Checks a parsed config's shape. `Ok` means Kong would load it.
pub fn validate(config: &Value) -> Result<(), Invalid> {
    let mut inv = Invalid::default();
    let Some(top) = config.as_object() else {
        inv.fields
            .insert("error".into(), json!("expected an object"));
        return Err(inv);
    };
    match top.get("_format_version") {
        None => {
            inv.fields
                .insert("_format_version".into(), json!("required field missing"));
        }
        Some(Value::String(v)) if FORMAT_VERSIONS.contains(&v.as_str()) => {}
        Some(_) => {
            inv.fields.insert(
                "_format_version".into(),
                json!(format!("expected one of: {}", FORMAT_VERSIONS.join(", "))),
            );
        }
    }
    for (key, value) in top {
        if META_KEYS.contains(&key.as_str()) {
            continue;
        }
        let Some(entity) = singular(key) else {
            inv.fields.insert(key.clone(), json!("unknown field"));
            continue;
        };
        if let Some(err) = validate_collection(entity, value, &mut inv.flattened) {
            inv.fields.insert(key.clone(), err);
        }
    }
    if inv.fields.is_empty() {
        Ok(())
    } else {
        Err(inv)
    }
}

fn singular(collection: &str) -> Option<&'static str> {
    COLLECTIONS
        .iter()
        .find(|(c, _)| *c == collection)
        .map(|(_, s)| *s)
}

/// Errors of one collection as Kong nests them: an array indexed like the input, `null` for
/// valid entries. Pushes one flattened entry per invalid entity.
fn validate_collection(entity: &str, value: &Value, flat: &mut Vec<Value>) -> Option<Value> {
    let Some(items) = value.as_array() else {
        return Some(json!("expected an array"));
    };
    let mut errs = vec![Value::Null; items.len()];
    let mut any = false;
    for (i, item) in items.iter().enumerate() {
        let Some(obj) = item.as_object() else {
            errs[i] = json!("expected a record");
            flat.push(json!({"entity_type": entity, "entity": item, "errors": [{"type": "entity", "message": "expected a record"}]}));
            any = true;
            continue;
        };
        let mut fields = Map::new();
        let mut entity_errors: Vec<String> = Vec::new();
        check_entity(entity, obj, &mut fields, &mut entity_errors);
        // Nested children (`services[].routes[]`) are checked with their own rules.
        for nested in NESTED {
            if let Some(children) = obj.get(*nested) {
                if let Some(child) = singular(nested) {
                    if let Some(e) = validate_collection(child, children, flat) {
                        fields.insert(nested.to_string(), e);
                    }
                }
            }
        }
        let own: Vec<Value> = fields
            .iter()
            .filter(|(k, _)| !NESTED.contains(&k.as_str()))
            .map(|(k, m)| json!({"type": "field", "field": k, "message": m}))
            .chain(
                entity_errors
                    .iter()
                    .map(|m| json!({"type": "entity", "message": m})),
            )
            .collect();
        if !own.is_empty() {
            let mut e = json!({"entity_type": entity, "entity": item, "errors": own});
            if let Some(name) = obj.get("name").and_then(Value::as_str) {
                e["entity_name"] = json!(name);
            }
            if let Some(id) = obj.get("id").and_then(Value::as_str) {
                e["entity_id"] = json!(id);
            }
            if let Some(tags) = obj.get("tags") {
                e["entity_tags"] = tags.clone();
            }
            flat.push(e);
        }
        if !entity_errors.is_empty() {
            fields.insert("@entity".into(), json!(entity_errors));
        }
        if !fields.is_empty() {
            errs[i] = Value::Object(fields);
            any = true;
        }
    }
    if any {
        // Kong's error table only reaches the last invalid entry.
        while errs.last() == Some(&Value::Null) {
            errs.pop();
        }
        Some(Value::Array(errs))
    } else {
        None
    }
}

/// The required fields Kong's schemas insist on, for the common entities.
fn check_entity(
    entity: &str,
    obj: &Map<String, Value>,
    fields: &mut Map<String, Value>,
    entity_errors: &mut Vec<String>,
) {
    let has = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
    let is_str = |k: &str| obj.get(k).is_some_and(Value::is_string);
    let mut require = |k: &str| {
        if !has(k) {
            fields.insert(k.to_string(), json!("required field missing"));
        }
    };
    match entity {
        "service" if !has("host") && !has("url") => require("host"),
        "route" => {
            let http = obj
                .get("protocols")
                .and_then(Value::as_array)
                .map(|p| p.iter().any(|x| x == "http" || x == "https"))
                .unwrap_or(true);
            if http
                && !["methods", "hosts", "headers", "paths", "snis"]
                    .iter()
                    .any(|k| has(k))
            {
                entity_errors.push(
                    "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"
                        .to_string(),
                );
            }
        }
        "plugin" | "upstream" | "vault" | "consumer_group" | "filter_chain" => require("name"),
        "target" => require("target"),
        "certificate" => {
            require("cert");
            require("key");
        }
        "ca_certificate" => require("cert"),
        "sni" => require("name"),
        "consumer" if !has("username") && !has("custom_id") => entity_errors.push(
            "at least one of these fields must be non-empty: 'custom_id', 'username'".to_string(),
        ),
        _ => {}
    }
    for k in ["name", "host", "path", "username", "custom_id"] {
        if has(k) && !is_str(k) {
            fields.insert(k.to_string(), json!("expected a string"));
        }
    }
}

/// Kong's `errors:declarative_config(err_t)` body (code 14).
pub fn error_body(fields: &Map<String, Value>) -> Value {
    json!({
        "code": 14,
        "name": "invalid declarative configuration",
        "message": format!("declarative config is invalid: {}", Value::Object(fields.clone())),
        "fields": fields,
    })
}

/// Every entity of a config by collection, nested children hoisted with a reference to their
/// parent (`{"service": {"id": ...}}`), each with an `id` (kept when given, else from `new_id`).
pub fn collections(config: &Value, new_id: &mut dyn FnMut() -> String) -> Map<String, Value> {
    let mut out: Map<String, Value> = COLLECTIONS
        .iter()
        .map(|(c, _)| (c.to_string(), Value::Array(Vec::new())))
        .collect();
    if let Some(top) = config.as_object() {
        for (key, value) in top {
            if let (Some(parent), Some(items)) = (singular(key), value.as_array()) {
                for item in items {
                    hoist(key, parent, item, None, &mut out, new_id);
                }
            }
        }
    }
    out
}

fn hoist(
    collection: &str,
    entity: &str,
    item: &Value,
    parent: Option<(&str, &str)>,
    out: &mut Map<String, Value>,
    new_id: &mut dyn FnMut() -> String,
) {
    let Some(obj) = item.as_object() else { return };
    let mut e = obj.clone();
    let id = match e.get("id").and_then(Value::as_str) {
        Some(id) => id.to_string(),
        None => new_id(),
    };
    e.insert("id".into(), json!(id));
    if let Some((pname, pid)) = parent {
        e.insert(pname.to_string(), json!({"id": pid}));
    }
    for nested in NESTED {
        if let Some(children) = e.remove(*nested).and_then(|c| c.as_array().cloned()) {
            let child = singular(nested).unwrap_or("entity");
            for c in &children {
                hoist(nested, child, c, Some((entity, &id)), out, new_id);
            }
        }
    }
    if let Some(Value::Array(list)) = out.get_mut(collection) {
        list.push(Value::Object(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_ignores_key_order() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":2,"x":[1,{"d":1,"c":2}]}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a":{"x":[1,{"c":2,"d":1}],"y":2},"b":1}"#).unwrap();
        assert_eq!(config_hash(&a), config_hash(&b));
        assert_eq!(config_hash(&a).len(), 32);
        assert_ne!(config_hash(&a), config_hash(&json!({"b": 2})));
    }

    #[test]
    fn nested_routes_are_hoisted_with_their_service() {
        let cfg = json!({"_format_version": "3.0", "services": [
            {"name": "s", "url": "http://x", "routes": [{"name": "r", "paths": ["/"]}]}]});
        let mut n = 0;
        let cols = collections(&cfg, &mut || {
            n += 1;
            format!("id-{n}")
        });
        assert_eq!(cols["services"][0]["id"], "id-1");
        assert!(cols["services"][0].get("routes").is_none());
        assert_eq!(cols["routes"][0]["service"]["id"], "id-1");
    }
}
