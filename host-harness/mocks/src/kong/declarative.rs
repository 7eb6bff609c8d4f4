//! Kong declarative configuration as the mock Admin API sees it: parsing (JSON or YAML),
//! Kong's schema phase (format version, known collections and fields, field types, required
//! fields, the common entity checks: `validate`), Kong's error bodies (nested `fields`,
//! `flatten_errors=1`'s `flattened_errors`), the configuration hash, and a generator of big
//! valid documents (`generate`, from [`super::generate`]). Loading (ids, defaults, references)
//! is [`super::load`].

use md5::{Digest, Md5};
use serde_json::{json, Map, Value};

use super::load;
use super::schema::{self, EntityDef};

pub use super::generate::{generate, generate_with, GenerateOptions};

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
    ("oauth2_tokens", "oauth2_token"),
    ("workspaces", "workspace"),
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

/// Kong's `unserialize` of a document sent as text (`kong/db/declarative/init.lua`): JSON first,
/// then YAML; the result must be a table (an object, or an array that validation then refuses).
pub fn unserialize(text: &str) -> Result<Value, String> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        if v.is_object() || v.is_array() {
            return Ok(v);
        }
    }
    match serde_norway::from_str::<Value>(text) {
        Ok(v) if v.is_object() || v.is_array() => Ok(v),
        Ok(_) => Err("failed parsing declarative configuration: expected an object".into()),
        Err(e) => Err(format!("failed parsing declarative configuration: {e}")),
    }
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

/// Checks a parsed config's shape (Kong's schema phase: format version, known collections,
/// known fields, field types, required fields and the common entity checks), nested children
/// included. `Ok` means the document reaches the reference phase (`load`).
///
/// `fields` is Kong's nested error table (arrays indexed like the input, `null` for valid
/// entries); `flattened` is what `flatten_errors=1` reports for it (3.4–3.9: entries for invalid
/// entities only, nested children hoisted with their parent's id, `@entity` errors first, then
/// field errors by field name).
pub fn validate(config: &Value) -> Result<(), Invalid> {
    let mut inv = Invalid::default();
    let Some(top) = config.as_object() else {
        inv.fields
            .insert("error".into(), json!("expected an object"));
        return Err(inv);
    };
    match top.get("_format_version") {
        None | Some(Value::Null) => {
            inv.fields
                .insert("_format_version".into(), json!("required field missing"));
        }
        Some(Value::String(v)) if FORMAT_VERSIONS.contains(&v.as_str()) => {}
        Some(Value::String(_)) => {
            inv.fields.insert(
                "_format_version".into(),
                json!(format!("expected one of: {}", FORMAT_VERSIONS.join(", "))),
            );
        }
        Some(_) => {
            inv.fields
                .insert("_format_version".into(), json!("expected a string"));
        }
    }
    if let Some(t) = top.get("_transform") {
        if !t.is_boolean() && !t.is_null() {
            inv.fields
                .insert("_transform".into(), json!("expected a boolean"));
        }
    }
    let mut keys: Vec<&String> = top.keys().collect();
    keys.sort();
    for key in keys {
        let value = &top[key];
        if META_KEYS.contains(&key.as_str()) || key == "_ignore" {
            continue;
        }
        let Some(def) = schema::entity(key) else {
            inv.fields.insert(key.clone(), json!("unknown field"));
            continue;
        };
        if let Some(err) = validate_collection(def, value, None, &mut inv.flattened) {
            inv.fields.insert(key.clone(), err);
        }
    }
    if inv.fields.is_empty() {
        Ok(())
    } else {
        Err(inv)
    }
}

/// The parent of a nested collection: its entity, its primary key when valid, and the child's
/// foreign key to it.
type Parent<'a> = (&'a EntityDef, Option<&'a str>, &'a schema::Foreign);

/// Errors of one collection as Kong nests them: an array indexed like the input, `null` for
/// valid entries. Pushes one flattened entry per invalid entity.
fn validate_collection(
    def: &'static EntityDef,
    value: &Value,
    parent: Option<Parent<'_>>,
    flat: &mut Vec<Value>,
) -> Option<Value> {
    let Some(items) = value.as_array() else {
        return Some(json!("expected an array"));
    };
    let mut errs = vec![Value::Null; items.len()];
    let mut any = false;
    for (i, item) in items.iter().enumerate() {
        let obj = match item {
            Value::Object(o) => o.clone(),
            // `certificates[].snis` may list bare names.
            Value::String(s) if def.name == "snis" && parent.is_some() => {
                let mut m = Map::new();
                m.insert("name".into(), json!(s));
                m
            }
            _ => {
                // Kong cannot correlate a non-record with an entity: no flattened entry.
                errs[i] = json!("expected a record");
                any = true;
                continue;
            }
        };
        let mut fields = Map::new();
        let mut entity_errors: Vec<String> = Vec::new();
        check_entity(def, &obj, parent.is_some(), &mut fields, &mut entity_errors);
        let mut child_flat = Vec::new();
        let own_id = obj
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| load::is_valid_uuid(id));
        for (child, fk) in schema::nestable_children(def.name) {
            if let Some(children) = obj.get(child.name) {
                if let Some(e) =
                    validate_collection(child, children, Some((def, own_id, fk)), &mut child_flat)
                {
                    fields.insert(child.name.to_string(), e);
                }
            }
        }
        flat.append(&mut child_flat);
        let mut own: Vec<Value> = entity_errors
            .iter()
            .map(|m| json!({"type": "entity", "message": m}))
            .collect();
        let mut names: Vec<&String> = fields
            .keys()
            .filter(|k| schema::entity(k).is_none_or(|c| c.foreign_to(def.name).is_none()))
            .collect();
        names.sort();
        for k in names {
            own.push(json!({"type": "field", "field": k, "message": fields[k]}));
        }
        if !own.is_empty() {
            let mut entity = item.clone();
            if let (Some((_, Some(pid), fk)), Some(o)) = (parent, entity.as_object_mut()) {
                o.entry(fk.field.to_string())
                    .or_insert_with(|| json!({"id": pid}));
            }
            flat.push(load::entry_for(def, &entity, own));
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    Int,
    Num,
    Bool,
    Array,
    Set,
    Record,
    Map,
}

impl Ty {
    fn matches(self, v: &Value) -> bool {
        match self {
            Ty::Str => v.is_string(),
            Ty::Int => v.as_f64().is_some_and(|n| n.fract() == 0.0),
            Ty::Num => v.is_number(),
            Ty::Bool => v.is_boolean(),
            Ty::Array | Ty::Set => v.is_array() || v.as_object().is_some_and(Map::is_empty),
            Ty::Record | Ty::Map => v.is_object(),
        }
    }

    fn message(self) -> &'static str {
        match self {
            Ty::Str => "expected a string",
            Ty::Int => "expected an integer",
            Ty::Num => "expected a number",
            Ty::Bool => "expected a boolean",
            Ty::Array => "expected an array",
            Ty::Set => "expected a set",
            Ty::Record => "expected a record",
            Ty::Map => "expected a map",
        }
    }
}

/// The type of a field: from its default, or listed for fields without one.
fn field_type(def: &EntityDef, field: &str, default: &Value) -> Option<Ty> {
    match field {
        "tags" | "protocols" | "methods" | "hosts" | "snis" | "ca_certificates" => {
            return Some(Ty::Set)
        }
        "headers" if def.name == "routes" => return Some(Ty::Map),
        _ => {}
    }
    Some(match default {
        Value::Bool(_) => Ty::Bool,
        Value::Number(n) if n.is_f64() => Ty::Num,
        Value::Number(_) => Ty::Int,
        Value::String(_) => Ty::Str,
        Value::Array(_) => Ty::Array,
        Value::Object(_) => Ty::Record,
        Value::Null => match field {
            "tls_verify" => Ty::Bool,
            "tls_verify_depth" | "expires_in" => Ty::Int,
            "paths" | "sources" | "destinations" | "redirect_uris" | "filters" => Ty::Array,
            "pem" | "headers" => Ty::Record,
            _ => Ty::Str,
        },
    })
}

/// One entity's field and entity-level checks.
fn check_entity(
    def: &EntityDef,
    obj: &Map<String, Value>,
    nested: bool,
    fields: &mut Map<String, Value>,
    entity_errors: &mut Vec<String>,
) {
    let has = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
    let template = def.template();
    for (k, v) in obj {
        if matches!(k.as_str(), "_comment" | "_ignore") {
            continue;
        }
        if schema::nestable_children(def.name)
            .iter()
            .any(|(c, _)| c.name == k)
        {
            continue;
        }
        if def.name == "services" && k == "url" {
            if !v.is_string() {
                fields.insert(k.clone(), json!("expected a string"));
            }
            continue;
        }
        if matches!(k.as_str(), "created_at" | "updated_at") && def.has_field(k) {
            if !v.is_number() && !v.is_null() {
                fields.insert(k.clone(), json!("expected an integer"));
            }
            continue;
        }
        if k == "id" {
            if !v.as_str().is_some_and(load::is_valid_uuid) {
                fields.insert(k.clone(), json!("expected a valid UUID"));
            }
            continue;
        }
        if k == "ttl" && def.ttl {
            continue;
        }
        if def.is_foreign(k).is_some() {
            let ok = v.is_null() || v.is_string() || v.get("id").is_some_and(Value::is_string);
            if !ok {
                fields.insert(k.clone(), json!("expected a string"));
            }
            continue;
        }
        let Some(default) = template.get(k) else {
            fields.insert(k.clone(), json!("unknown field"));
            continue;
        };
        if v.is_null() {
            continue;
        }
        if let Some(ty) = field_type(def, k, default) {
            if !ty.matches(v) {
                fields.insert(k.clone(), json!(ty.message()));
            }
        }
    }
    for k in def.required {
        let given_by_url = def.name == "services" && *k == "host" && has("url");
        if !has(k) && !given_by_url && !fields.contains_key(*k) {
            fields.insert(k.to_string(), json!("required field missing"));
        }
    }
    if !nested {
        for f in def.foreign.iter().filter(|f| f.required) {
            if !has(f.field) {
                fields.insert(f.field.to_string(), json!("required field missing"));
            }
        }
    }
    match def.name {
        "consumers" if !has("username") && !has("custom_id") => entity_errors.push(
            "at least one of these fields must be non-empty: 'custom_id', 'username'".to_string(),
        ),
        "routes" => {
            let protocols: Vec<&str> = obj
                .get("protocols")
                .and_then(Value::as_array)
                .map(|p| p.iter().filter_map(Value::as_str).collect())
                .unwrap_or_else(|| vec!["http", "https"]);
            let any_of = |ks: &[&str]| ks.iter().any(|k| has(k));
            if protocols.contains(&"https") {
                if !any_of(&["methods", "hosts", "headers", "paths", "snis"]) {
                    entity_errors.push(
                        "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"
                            .to_string(),
                    );
                }
            } else if protocols.contains(&"http")
                && !any_of(&["methods", "hosts", "headers", "paths"])
            {
                entity_errors.push(
                    "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"
                        .to_string(),
                );
            }
        }
        _ => {}
    }
}

/// Kong 3.4–3.9's `flatten_errors=1` answer: `flatten_errors` drains every entity section from
/// the error table (hoisting what it can correlate with the input into `flattened_errors`), so
/// `fields` and `message` keep only the top-level string errors. An empty list is encoded by
/// Kong's cjson as `{}` (an empty Lua table), not `[]`.
pub fn flattened_error_body(fields: &Map<String, Value>, flattened: &[Value]) -> Value {
    let remaining: Map<String, Value> = fields
        .iter()
        .filter(|(_, v)| !v.is_array() && !v.is_object())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut body = error_body(&remaining);
    body["flattened_errors"] = if flattened.is_empty() {
        json!({})
    } else {
        Value::Array(flattened.to_vec())
    };
    body
}

/// Kong's error table for the reference phase, as JSON: a collection whose errors are all filed
/// by index becomes an array (holes `null`), otherwise an object keyed by name/id (and index).
pub fn ref_errors_json(errs: &load::RefErrors) -> Map<String, Value> {
    let mut out = Map::new();
    for (coll, by) in errs {
        let all_index = by.keys().all(|k| matches!(k, load::ErrKey::Index(_)));
        let v = if all_index {
            let max = by
                .keys()
                .filter_map(|k| match k {
                    load::ErrKey::Index(i) => Some(*i),
                    load::ErrKey::Key(_) => None,
                })
                .max()
                .unwrap_or(0);
            let mut a = vec![Value::Null; max];
            for (k, v) in by {
                if let load::ErrKey::Index(i) = k {
                    a[i - 1] = v.clone();
                }
            }
            Value::Array(a)
        } else {
            Value::Object(
                by.iter()
                    .map(|(k, v)| {
                        let key = match k {
                            load::ErrKey::Index(i) => i.to_string(),
                            load::ErrKey::Key(s) => s.clone(),
                        };
                        (key, v.clone())
                    })
                    .collect(),
            )
        };
        out.insert(coll.clone(), v);
    }
    out
}

/// A Lua table the way Penlight's `pretty.write(t, "")` prints it (Kong's error messages):
/// `{routes={["r-1"]={"invalid reference ..."}}}`. Keys sorted; an approximation of Penlight's
/// output, not byte-exact.
pub fn lua_pretty(v: &Value) -> String {
    fn is_ident(k: &str) -> bool {
        let mut c = k.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
    }
    fn quote(s: &str) -> String {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
    match v {
        Value::Null => "nil".into(),
        Value::String(s) => quote(s),
        Value::Array(a) => {
            let mut parts = Vec::new();
            let mut in_sequence = true;
            for (i, x) in a.iter().enumerate() {
                if x.is_null() {
                    in_sequence = false;
                    continue;
                }
                if in_sequence {
                    parts.push(lua_pretty(x));
                } else {
                    parts.push(format!("[{}]={}", i + 1, lua_pretty(x)));
                }
            }
            format!("{{{}}}", parts.join(","))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    let key = if is_ident(k) {
                        k.clone()
                    } else if let Ok(n) = k.parse::<u64>() {
                        format!("[{n}]")
                    } else {
                        format!("[{}]", quote(k))
                    };
                    format!("{key}={}", lua_pretty(&m[k]))
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// Kong's `errors:declarative_config(err_t)` body (code 14).
pub fn error_body(fields: &Map<String, Value>) -> Value {
    json!({
        "code": 14,
        "name": "invalid declarative configuration",
        "message": format!("declarative config is invalid: {}", lua_pretty(&Value::Object(fields.clone()))),
        "fields": fields,
    })
}

fn singular(collection: &str) -> Option<&'static str> {
    COLLECTIONS
        .iter()
        .find(|(c, _)| *c == collection)
        .map(|(_, s)| *s)
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
