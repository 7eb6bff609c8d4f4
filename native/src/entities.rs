//! The entities of a Kong declarative configuration, named as a person names them: one list per
//! entity type, each entity with its id (when it has one), a label (its name, or what stands for
//! one: a consumer's username, a target's address, a plugin's name and scope; the id when
//! nothing else) and its fields with references resolved to the label of what they point at.
//!
//! Both forms Kong reads are understood: the flat form the exports use (one array per type,
//! foreign keys as ids: `plugin/src/flat_form.rs`) and the nested form of hand-written files
//! (`services[].routes[]`, `consumers[].keyauth_credentials[]`, ...), whose nested entities get
//! their parent as a reference. Labels never use a field that can hold a secret (a key-auth
//! `key`, an OAuth2 token): such entities are labelled by id.

use std::collections::BTreeMap;

use config_bridge::flat_form::COLLECTIONS;
use serde_json::{Map, Value};

/// One entity.
#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    /// The entity type, as the declarative format names its array (`services`).
    pub kind: String,
    pub id: Option<String>,
    /// Unique within its type in one document (see `label_of`).
    pub label: String,
    /// The fields compared by a diff: references as `<type> <label>`, no `id`, no timestamps,
    /// no nested entities.
    pub fields: Map<String, Value>,
}

/// Fields that change without the configuration changing.
const VOLATILE: &[&str] = &["created_at", "updated_at"];

/// Foreign-key fields, and the type each one points at.
const REFERENCES: &[(&str, &str)] = &[
    ("service", "services"),
    ("route", "routes"),
    ("consumer", "consumers"),
    ("consumer_group", "consumer_groups"),
    ("upstream", "upstreams"),
    ("certificate", "certificates"),
    ("client_certificate", "certificates"),
    ("set", "key_sets"),
];

/// The reference a nested entity gets to its parent, by the parent's type.
const PARENT_FIELD: &[(&str, &str)] = &[
    ("services", "service"),
    ("routes", "route"),
    ("consumers", "consumer"),
    ("consumer_groups", "consumer_group"),
    ("upstreams", "upstream"),
    ("certificates", "certificate"),
    ("key_sets", "set"),
];

/// Types whose entities are a consumer's credentials: labelled by a non-secret field or the id,
/// with their consumer.
const CREDENTIALS: &[(&str, Option<&str>)] = &[
    ("acls", Some("group")),
    ("basicauth_credentials", Some("username")),
    ("hmacauth_credentials", Some("username")),
    ("keyauth_credentials", None),
    ("jwt_secrets", None),
    ("oauth2_credentials", Some("name")),
    ("oauth2_tokens", None),
];

/// Entity types that can be nested inside another entity in the nested form (besides the ones
/// `COLLECTIONS` names).
const EXTRA_TYPES: &[&str] = &["consumer_groups", "workspaces"];

/// The position of a type in Kong's dependency order (unknown types after, by name).
pub fn type_order(kind: &str) -> (usize, String) {
    let pos = COLLECTIONS
        .iter()
        .position(|c| c.name == kind)
        .unwrap_or(COLLECTIONS.len());
    (pos, kind.to_string())
}

fn is_entity_type(key: &str) -> bool {
    COLLECTIONS.iter().any(|c| c.name == key) || EXTRA_TYPES.contains(&key)
}

/// A raw entity before labelling: its type, the object, and its parent (type, index).
struct Raw<'a> {
    kind: String,
    obj: &'a Map<String, Value>,
    parent: Option<(String, usize)>,
}

/// The raw entities of one document, with an index by (type, id) for references.
struct Raws<'a> {
    list: Vec<Raw<'a>>,
    by_id: BTreeMap<(String, &'a str), usize>,
}

/// The entities of `doc`, per type (types in Kong's dependency order), each type's entities in
/// document order. Members starting with `_` are the document's, not entities.
pub fn entities(doc: &Value) -> Vec<Entity> {
    let Some(top) = doc.as_object() else {
        return Vec::new();
    };
    let mut list: Vec<Raw> = Vec::new();
    for (key, value) in top {
        if key.starts_with('_') {
            continue;
        }
        if let Some(items) = value.as_array() {
            for item in items {
                collect(key, item, None, &mut list);
            }
        }
    }
    let by_id = list
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some(((r.kind.clone(), str_field(r.obj, "id")?), i)))
        .collect();
    let raws = Raws { list, by_id };
    // Labels first (references resolve to them), made unique per type.
    let mut labels: Vec<String> = raws
        .list
        .iter()
        .map(|r| printable(&raws.base_label(r)))
        .collect();
    let mut seen: BTreeMap<(&str, String), usize> = BTreeMap::new();
    for (r, l) in raws.list.iter().zip(&labels) {
        *seen.entry((r.kind.as_str(), l.clone())).or_default() += 1;
    }
    for (r, l) in raws.list.iter().zip(labels.iter_mut()) {
        if seen[&(r.kind.as_str(), l.clone())] > 1 {
            // Two entities with one name (a hand-written file, or plugins without scope): the id
            // tells them apart, else nothing can.
            if let Some(id) = str_field(r.obj, "id") {
                *l = format!("{l} [{}]", printable(id));
            }
        }
    }
    let mut out: Vec<Entity> = raws
        .list
        .iter()
        .zip(&labels)
        .map(|(r, label)| Entity {
            kind: r.kind.clone(),
            id: str_field(r.obj, "id").map(str::to_string),
            label: label.clone(),
            fields: raws.fields(r, &labels),
        })
        .collect();
    // Stable: by type order, document order within a type.
    out.sort_by_key(|e| type_order(&e.kind));
    out
}

/// Adds `item` (an entity of `kind`) and the entities nested in it.
fn collect<'a>(
    kind: &str,
    item: &'a Value,
    parent: Option<(String, usize)>,
    raws: &mut Vec<Raw<'a>>,
) {
    let Some(obj) = item.as_object() else {
        return;
    };
    let index = raws.len();
    raws.push(Raw {
        kind: kind.to_string(),
        obj,
        parent,
    });
    for (key, value) in obj {
        if let (true, Some(list)) = (is_entity_type(key), value.as_array()) {
            for child in list.iter().filter(|c| c.is_object()) {
                collect(key, child, Some((kind.to_string(), index)), raws);
            }
        }
    }
}

/// At most this many characters of a name in a line.
const MAX_SHOWN: usize = 120;

/// A name from a document as one safe line: control characters (a forged line break in an
/// object from the bucket) as `?`, at most `MAX_SHOWN` characters.
pub fn printable(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_SHOWN)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().nth(MAX_SHOWN).is_some() {
        out.push('…');
    }
    out
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The id a reference holds: `"<id>"` (flat form) or `{"id": "<id>"}` (Admin API form).
fn reference_id(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => str_field(o, "id"),
        _ => None,
    }
}

fn references(field: &str) -> Option<&'static str> {
    REFERENCES
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, k)| *k)
}

impl Raws<'_> {
    fn get(&self, kind: &str, id: &str) -> Option<usize> {
        self.by_id.get(&(kind.to_string(), id)).copied()
    }

    /// What an entity is scoped to through `field` (its parent, or a reference), as
    /// `service orders`: the target's label when the document has it, else its id.
    fn scope(&self, raw: &Raw, field: &str) -> Option<String> {
        let target_kind = references(field)?;
        if let Some((pkind, pidx)) = &raw.parent {
            if pkind == target_kind {
                return Some(format!("{field} {}", self.base_label(&self.list[*pidx])));
            }
        }
        let id = raw.obj.get(field).and_then(reference_id)?;
        let name = match self.get(target_kind, id) {
            Some(i) => self.base_label(&self.list[i]),
            None => id.to_string(),
        };
        Some(format!("{field} {name}"))
    }

    /// The label before duplicates are told apart. Scopes recurse at most once: what a
    /// plugin, credential or target points at is labelled without a scope.
    fn base_label(&self, raw: &Raw) -> String {
        let obj = raw.obj;
        let id = || str_field(obj, "id").unwrap_or("(no id)").to_string();
        let scoped = |label: String, field: &str| match self.scope(raw, field) {
            Some(s) => format!("{label} ({s})"),
            None => label,
        };
        if let Some((_, field)) = CREDENTIALS.iter().find(|(k, _)| *k == raw.kind) {
            let label = field
                .and_then(|f| str_field(obj, f))
                .map(str::to_string)
                .unwrap_or_else(id);
            return scoped(label, "consumer");
        }
        match raw.kind.as_str() {
            "plugins" => match str_field(obj, "instance_name") {
                Some(instance) => instance.to_string(),
                None => {
                    let name = str_field(obj, "name")
                        .map(str::to_string)
                        .unwrap_or_else(id);
                    let scopes: Vec<String> = ["service", "route", "consumer", "consumer_group"]
                        .iter()
                        .filter_map(|f| self.scope(raw, f))
                        .collect();
                    if scopes.is_empty() {
                        format!("{name} (global)")
                    } else {
                        format!("{name} ({})", scopes.join(", "))
                    }
                }
            },
            "consumers" => str_field(obj, "username")
                .or_else(|| str_field(obj, "custom_id"))
                .map(str::to_string)
                .unwrap_or_else(id),
            "targets" => {
                let label = str_field(obj, "target")
                    .map(str::to_string)
                    .unwrap_or_else(id);
                scoped(label, "upstream")
            }
            "vaults" => str_field(obj, "prefix")
                .or_else(|| str_field(obj, "name"))
                .map(str::to_string)
                .unwrap_or_else(id),
            _ => str_field(obj, "name")
                .map(str::to_string)
                .unwrap_or_else(id),
        }
    }

    /// The fields a diff compares (see `Entity::fields`).
    fn fields(&self, raw: &Raw, labels: &[String]) -> Map<String, Value> {
        let mut out = Map::new();
        for (key, value) in raw.obj {
            if key == "id" || VOLATILE.contains(&key.as_str()) {
                continue;
            }
            if is_entity_type(key)
                && value
                    .as_array()
                    .is_some_and(|l| l.iter().any(Value::is_object))
            {
                continue; // nested entities are entities of their own
            }
            let value = match references(key) {
                Some(kind) => self.resolve(kind, value, labels),
                None => value.clone(),
            };
            out.insert(key.clone(), value);
        }
        if let Some((pkind, pidx)) = &raw.parent {
            if let Some((_, field)) = PARENT_FIELD.iter().find(|(k, _)| k == pkind) {
                out.insert(
                    (*field).to_string(),
                    Value::String(format!("{pkind} {}", labels[*pidx])),
                );
            }
        }
        out
    }

    /// A reference as `<type> <label>` when the document has its target, else its id.
    fn resolve(&self, kind: &str, value: &Value, labels: &[String]) -> Value {
        match reference_id(value) {
            Some(id) => match self.get(kind, id) {
                Some(i) => Value::String(format!("{kind} {}", labels[i])),
                None => Value::String(id.to_string()),
            },
            None => value.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn find<'a>(all: &'a [Entity], kind: &str, label: &str) -> &'a Entity {
        all.iter()
            .find(|e| e.kind == kind && e.label == label)
            .unwrap_or_else(|| panic!("{kind} {label} not in {all:#?}"))
    }

    #[test]
    fn flat_form_entities_are_labelled_and_references_resolved() {
        let doc = json!({
            "_format_version": "3.0", "_transform": false,
            "services": [{"id": "s1", "name": "orders", "host": "o", "created_at": 1}],
            "routes": [{"id": "r1", "name": "orders-r", "service": "s1", "paths": ["/o"]},
                       {"id": "r2", "service": {"id": "s1"}}],
            "consumers": [{"id": "c1", "username": "alice"}, {"id": "c2", "custom_id": "x-2"}],
            "plugins": [{"id": "p1", "name": "rate-limiting", "service": "s1", "config": {"minute": 5}},
                        {"id": "p2", "name": "cors"},
                        {"id": "p3", "name": "acl", "route": "r1", "consumer": "c1"},
                        {"id": "p4", "name": "acl", "instance_name": "acl-special"}],
            "keyauth_credentials": [{"id": "k1", "key": "SECRET-VALUE", "consumer": "c1"}],
            "upstreams": [{"id": "u1", "name": "up"}],
            "targets": [{"id": "t1", "target": "10.0.0.1:80", "upstream": "u1"}]
        });
        let all = entities(&doc);
        let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).collect();
        // Kong's dependency order.
        assert_eq!(
            kinds,
            [
                "services",
                "routes",
                "routes",
                "upstreams",
                "targets",
                "consumers",
                "consumers",
                "plugins",
                "plugins",
                "plugins",
                "plugins",
                "keyauth_credentials"
            ]
        );
        let svc = find(&all, "services", "orders");
        assert_eq!(svc.id.as_deref(), Some("s1"));
        assert!(!svc.fields.contains_key("created_at") && !svc.fields.contains_key("id"));
        assert_eq!(
            find(&all, "routes", "orders-r").fields["service"],
            "services orders"
        );
        // No name: the id; the Admin API's reference form reads the same.
        assert_eq!(
            find(&all, "routes", "r2").fields["service"],
            "services orders"
        );
        find(&all, "consumers", "alice");
        find(&all, "consumers", "x-2");
        find(&all, "plugins", "rate-limiting (service orders)");
        find(&all, "plugins", "cors (global)");
        find(&all, "plugins", "acl (route orders-r, consumer alice)");
        find(&all, "plugins", "acl-special");
        find(&all, "targets", "10.0.0.1:80 (upstream up)");
        // A key-auth credential is labelled by its id, never its key.
        let cred = find(&all, "keyauth_credentials", "k1 (consumer alice)");
        assert!(!cred.label.contains("SECRET"));
    }

    #[test]
    fn nested_entities_get_their_parent_and_duplicates_their_id() {
        let doc = json!({
            "_format_version": "3.0",
            "services": [{"name": "orders", "url": "http://o",
                          "routes": [{"name": "r", "paths": ["/o"],
                                      "plugins": [{"name": "cors"}]}],
                          "plugins": [{"name": "key-auth"}]}],
            "consumers": [{"username": "bob", "acls": [{"group": "admins"}]}],
            "routes": [{"id": "a", "name": "dup"}, {"id": "b", "name": "dup"}]
        });
        let all = entities(&doc);
        let route = find(&all, "routes", "r");
        assert_eq!(route.fields["service"], "services orders");
        assert!(!find(&all, "services", "orders")
            .fields
            .contains_key("routes"));
        assert_eq!(
            find(&all, "plugins", "cors (route r)").fields["route"],
            "routes r"
        );
        find(&all, "plugins", "key-auth (service orders)");
        find(&all, "acls", "admins (consumer bob)");
        find(&all, "routes", "dup [a]");
        find(&all, "routes", "dup [b]");
        assert!(entities(&json!([1, 2])).is_empty());
        // A forged line break in a name stays on its line; long names are cut.
        let hostile = entities(&json!({"services": [{"name": "a\n~ services  forged"},
                                                    {"name": "x".repeat(500)}]}));
        assert_eq!(hostile[0].label, "a?~ services  forged");
        assert_eq!(hostile[1].label.chars().count(), MAX_SHOWN + 1);
    }
}
