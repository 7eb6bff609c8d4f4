//! What changed between two Kong declarative configurations: entities added, removed and
//! changed, by type and label (`entities`), with the names of the fields that changed — never
//! their values, which can be secrets (credentials, plugin configuration, certificate keys).
//!
//! Entities are paired by id first (a renamed entity is one entity that changed), then by label
//! (an entity deleted and created again with the same name is one entity whose id changed).
//! The result is ordered by Kong's dependency order of types, then label: the same two documents
//! always give the same output.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::entities::{entities, printable, type_order, Entity};

/// Nested fields are named down to this depth (`config.minute`); deeper changes are named by
/// their ancestor at this depth.
const FIELD_DEPTH: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

impl ChangeKind {
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
        }
    }

    fn sign(self) -> char {
        match self {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Changed => '~',
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub kind: ChangeKind,
    pub entity_type: String,
    /// The label in B (in A for a removed entity).
    pub name: String,
    /// The label in A, when a changed entity was renamed.
    pub previous_name: Option<String>,
    pub id: Option<String>,
    /// Changed: the fields that differ (`host`, `config.minute`, `id`), sorted.
    pub fields: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Diff {
    pub changes: Vec<Change>,
    pub unchanged: usize,
    /// Document members (`_format_version`, `_transform`, ...) whose values differ.
    pub document_fields: Vec<String>,
}

impl Diff {
    pub fn count(&self, kind: ChangeKind) -> usize {
        self.changes.iter().filter(|c| c.kind == kind).count()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.document_fields.is_empty()
    }

    /// `2 added, 1 removed, 3 changed, 40 unchanged`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} added, {} removed, {} changed, {} unchanged",
            self.count(ChangeKind::Added),
            self.count(ChangeKind::Removed),
            self.count(ChangeKind::Changed),
            self.unchanged
        );
        if !self.document_fields.is_empty() {
            s.push_str(&format!(
                "; document: {} changed",
                self.document_fields.join(", ")
            ));
        }
        s
    }

    /// One line per change: `+ services  billing`, `~ plugins  cors (global): config.origins`.
    pub fn lines(&self) -> Vec<String> {
        let width = self
            .changes
            .iter()
            .map(|c| c.entity_type.len())
            .max()
            .unwrap_or(0);
        let mut out: Vec<String> = self
            .document_fields
            .iter()
            .map(|f| format!("~ {:<width$}  {f}", "_document"))
            .collect();
        out.extend(self.changes.iter().map(|c| {
            let mut line = format!("{} {:<width$}  {}", c.kind.sign(), c.entity_type, c.name);
            if let Some(prev) = &c.previous_name {
                line.push_str(&format!(" (was {prev})"));
            }
            if !c.fields.is_empty() {
                line.push_str(&format!(": {}", c.fields.join(", ")));
            }
            line
        }));
        out
    }

    /// The `--json` form (documented in native/README.md).
    pub fn to_json(&self) -> Value {
        let mut per_type: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
        for c in &self.changes {
            per_type.entry(&c.entity_type).or_default()[c.kind as usize] += 1;
        }
        json!({
            "summary": {
                "added": self.count(ChangeKind::Added),
                "removed": self.count(ChangeKind::Removed),
                "changed": self.count(ChangeKind::Changed),
                "unchanged": self.unchanged,
            },
            "by_type": per_type.iter().map(|(k, [a, r, c])| {
                ((*k).to_string(), json!({"added": a, "removed": r, "changed": c}))
            }).collect::<Map<String, Value>>(),
            "document_fields_changed": self.document_fields,
            "changes": self.changes.iter().map(|c| {
                let mut o = json!({
                    "change": c.kind.name(),
                    "type": c.entity_type,
                    "name": c.name,
                    "id": c.id,
                });
                if c.kind == ChangeKind::Changed {
                    o["fields"] = json!(c.fields);
                    o["previous_name"] = json!(c.previous_name);
                }
                o
            }).collect::<Vec<_>>(),
        })
    }
}

/// What changed from `a` to `b`.
pub fn diff(a: &Value, b: &Value) -> Diff {
    let old = entities(a);
    let new = entities(b);
    let mut out = Diff {
        document_fields: document_fields(a, b),
        ..Diff::default()
    };
    // Per type: pair by id, then by label.
    let kinds: BTreeSet<(usize, String)> = old
        .iter()
        .chain(&new)
        .map(|e| type_order(&e.kind))
        .collect();
    for (_, kind) in kinds {
        let olds: Vec<&Entity> = old.iter().filter(|e| e.kind == kind).collect();
        let news: Vec<&Entity> = new.iter().filter(|e| e.kind == kind).collect();
        let mut paired_old = vec![false; olds.len()];
        let mut pairs: Vec<(usize, Option<usize>)> = Vec::new(); // (new index, old index)
        let old_by_id: BTreeMap<&str, usize> = olds
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((e.id.as_deref()?, i)))
            .collect();
        let old_by_label: BTreeMap<&str, usize> = olds
            .iter()
            .enumerate()
            .map(|(i, e)| (e.label.as_str(), i))
            .collect();
        let mut unpaired_new = Vec::new();
        for (j, e) in news.iter().enumerate() {
            match e.id.as_deref().and_then(|id| old_by_id.get(id)) {
                Some(&i) if !paired_old[i] => {
                    paired_old[i] = true;
                    pairs.push((j, Some(i)));
                }
                _ => unpaired_new.push(j),
            }
        }
        for j in unpaired_new {
            match old_by_label.get(news[j].label.as_str()) {
                Some(&i) if !paired_old[i] => {
                    paired_old[i] = true;
                    pairs.push((j, Some(i)));
                }
                _ => pairs.push((j, None)),
            }
        }
        let mut changes: Vec<Change> = Vec::new();
        for (j, i) in pairs {
            let n = news[j];
            let Some(i) = i else {
                changes.push(change(ChangeKind::Added, n, None, Vec::new()));
                continue;
            };
            let o = olds[i];
            let mut fields = BTreeSet::new();
            changed_fields(&o.fields, &n.fields, "", 1, &mut fields);
            if o.id != n.id {
                fields.insert("id".to_string());
            }
            if fields.is_empty() && o.label == n.label {
                out.unchanged += 1;
            } else {
                let previous = (o.label != n.label).then(|| o.label.clone());
                changes.push(change(
                    ChangeKind::Changed,
                    n,
                    previous,
                    fields.into_iter().collect(),
                ));
            }
        }
        for (i, o) in olds.iter().enumerate() {
            if !paired_old[i] {
                changes.push(change(ChangeKind::Removed, o, None, Vec::new()));
            }
        }
        changes.sort_by(|x, y| x.name.cmp(&y.name).then(x.kind.cmp(&y.kind)));
        out.changes.extend(changes);
    }
    out
}

fn change(kind: ChangeKind, e: &Entity, previous: Option<String>, fields: Vec<String>) -> Change {
    Change {
        kind,
        entity_type: e.kind.clone(),
        name: e.label.clone(),
        previous_name: previous,
        id: e.id.clone(),
        fields,
    }
}

/// The names of the fields that differ, as dotted paths down to `FIELD_DEPTH`.
fn changed_fields(
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    path: &str,
    depth: usize,
    out: &mut BTreeSet<String>,
) {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for key in keys {
        let (x, y) = (a.get(key), b.get(key));
        if x == y || (is_nullish(x) && is_nullish(y)) {
            continue;
        }
        let name = format!("{path}{}", printable(key));
        match (x, y) {
            (Some(Value::Object(x)), Some(Value::Object(y))) if depth < FIELD_DEPTH => {
                changed_fields(x, y, &format!("{name}."), depth + 1, out);
            }
            _ => {
                out.insert(name);
            }
        }
    }
}

/// A field left out and a `null` one mean the same to Kong (its own exports keep nulls, the
/// flat form read from an Admin API drops them).
fn is_nullish(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null))
}

/// The document's own members (`_format_version`, `_transform`, ...) that differ.
fn document_fields(a: &Value, b: &Value) -> Vec<String> {
    let members = |v: &Value| -> BTreeMap<String, Value> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| k.starts_with('_'))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (x, y) = (members(a), members(b));
    let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
    keys.into_iter()
        .filter(|k| x.get(*k) != y.get(*k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        json!({
            "_format_version": "3.0",
            "services": [
                {"id": "s1", "name": "orders", "host": "orders.internal", "port": 80},
                {"id": "s2", "name": "legacy", "host": "legacy.internal"},
                {"id": "s3", "name": "invoicing", "host": "inv.internal"}
            ],
            "routes": [{"id": "r1", "name": "orders", "service": "s1", "paths": ["/orders"]}],
            "plugins": [{"id": "p1", "name": "rate-limiting", "service": "s1",
                         "config": {"minute": 5, "policy": "local", "redis": {"password": "hunter2"}}}],
            "consumers": [{"id": "c1", "username": "alice", "created_at": 1}]
        })
    }

    #[test]
    fn identical_documents_have_no_changes() {
        let d = diff(&base(), &base());
        assert!(d.is_empty(), "{d:#?}");
        assert_eq!(d.unchanged, 6);
        assert_eq!(d.summary(), "0 added, 0 removed, 0 changed, 6 unchanged");
        assert!(d.lines().is_empty());
    }

    #[test]
    fn additions_removals_changes_renames_and_recreations_by_type_and_name() {
        let mut b = base();
        // A new service; legacy removed; orders' port changed; invoicing renamed (same id).
        b["services"] = json!([
            {"id": "s1", "name": "orders", "host": "orders.internal", "port": 8080},
            {"id": "s3", "name": "billing", "host": "inv.internal"},
            {"id": "s4", "name": "search", "host": "search.internal"}
        ]);
        // A nested secret and a limit changed: field names only.
        b["plugins"][0]["config"]["minute"] = json!(10);
        b["plugins"][0]["config"]["redis"]["password"] = json!("correct horse");
        // alice deleted and created again (new id, timestamps), same content otherwise.
        b["consumers"] = json!([{"id": "c9", "username": "alice", "created_at": 2}]);
        b["_transform"] = json!(false);
        let d = diff(&base(), &b);
        assert_eq!(
            d.lines(),
            [
                "~ _document  _transform",
                "~ services   billing (was invoicing): name",
                "- services   legacy",
                "~ services   orders: port",
                "+ services   search",
                "~ consumers  alice: id",
                "~ plugins    rate-limiting (service orders): config.minute, config.redis",
            ]
        );
        assert_eq!(d.unchanged, 1); // the route: its service is still "orders"
        let text = format!("{:?}{}", d, d.to_json());
        assert!(!text.contains("hunter2") && !text.contains("correct horse"));
        let j = d.to_json();
        assert_eq!(j["summary"]["added"], 1);
        assert_eq!(j["summary"]["changed"], 4);
        assert_eq!(j["by_type"]["services"]["removed"], 1);
        assert_eq!(j["changes"][0]["previous_name"], "invoicing");
        assert_eq!(j["changes"][1]["change"], "removed");
        assert_eq!(j["changes"][1]["id"], "s2");
        // Backwards: the mirror image.
        let back = diff(&b, &base());
        assert_eq!(back.count(ChangeKind::Added), 1);
        assert_eq!(back.count(ChangeKind::Removed), 1);
        assert_eq!(back.count(ChangeKind::Changed), 4);
    }

    #[test]
    fn without_ids_entities_pair_by_name_and_nulls_equal_absent_fields() {
        let a = json!({"_format_version": "3.0",
            "services": [{"name": "a", "url": "http://a", "routes": [{"name": "ra", "paths": ["/a"]}]}]});
        let b = json!({"_format_version": "3.0",
            "services": [{"name": "a", "url": "http://a", "retries": null,
                          "routes": [{"name": "ra", "paths": ["/a", "/b"]}]}],
            "routes": []});
        let d = diff(&a, &b);
        assert_eq!(d.lines(), ["~ routes  ra: paths"]);
        // A route moved to another service is a changed reference.
        let c = json!({"_format_version": "3.0",
            "services": [{"name": "a", "url": "http://a"}, {"name": "z", "url": "http://z",
                          "routes": [{"name": "ra", "paths": ["/a"]}]}]});
        assert_eq!(
            diff(&a, &c).lines(),
            ["+ services  z", "~ routes    ra: service"]
        );
    }
}
