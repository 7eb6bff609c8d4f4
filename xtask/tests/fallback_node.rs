//! `examples/kong/fallback-node/`: each bootstrap config names its Kong versions, carries the filter
//! config in the shape those versions accept (a JSON string on 3.4, an object on 3.5+), which the
//! schema and the filter's parser accept with import on and export off; it holds exactly one
//! service, tagged `config-bridge-bootstrap` (how the importer tells a bootstrap from a real
//! config), with no route, and nothing points at the Admin API port.

mod common;

use std::fs;

use common::{assert_no_problems, parser_accepts, root, schema_errors, validator};
use config_bridge::engine::BOOTSTRAP_TAG;
use serde_json::Value;

fn bootstrap(name: &str) -> (String, Value) {
    let path = root().join("examples/kong/fallback-node").join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Value = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    (text, doc)
}

#[test]
fn every_bootstrap_config_imports_only_and_is_told_apart_by_its_tag() {
    let schema = validator();
    let mut problems = Vec::new();
    for (name, versions, string_config, namespace) in [
        ("bootstrap-3.4.yaml", "3.4", true, "kv"),
        ("bootstrap-3.5-3.6.yaml", "3.5, 3.6", false, "kv"),
        ("bootstrap-3.7-3.9.yaml", "3.7, 3.8, 3.9", false, "*"),
    ] {
        let (text, doc) = bootstrap(name);
        if !text
            .lines()
            .next()
            .unwrap_or("")
            .contains(&format!("Kong {versions}"))
        {
            problems.push(format!("{name}: the first line must name Kong {versions}"));
        }
        let services = doc["services"].as_array().cloned().unwrap_or_default();
        if services.len() != 1 {
            problems.push(format!(
                "{name}: exactly one service (the bootstrap's), found {}",
                services.len()
            ));
        }
        let tagged = services
            .first()
            .and_then(|s| s["tags"].as_array())
            .is_some_and(|t| t.iter().any(|x| x == BOOTSTRAP_TAG));
        if !tagged {
            problems.push(format!(
                "{name}: the service must be tagged {BOOTSTRAP_TAG}"
            ));
        }
        if doc.get("routes").is_some() || services.iter().any(|s| s.get("routes").is_some()) {
            problems.push(format!(
                "{name}: no route may lead to the bootstrap service"
            ));
        }
        if text.contains(":8001") && !text.contains("kong_admin_url") {
            problems.push(format!(
                "{name}: only kong_admin_url may name the Admin API"
            ));
        }
        if services.iter().any(|s| {
            s["url"]
                .as_str()
                .is_some_and(|u| u.contains(":8001") || u.contains(":8444"))
        }) {
            problems.push(format!("{name}: a service points at the Admin API"));
        }
        let filters = doc["filter_chains"][0]["filters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let Some(filter) = filters.iter().find(|f| f["name"] == "config_bridge") else {
            problems.push(format!("{name}: no config_bridge filter"));
            continue;
        };
        let config = &filter["config"];
        if config.is_string() != string_config {
            problems.push(format!(
                "{name}: Kong {versions} needs the filter config as a {}",
                if string_config {
                    "JSON string"
                } else {
                    "JSON object"
                }
            ));
        }
        let object: Value = match config {
            Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
            v => v.clone(),
        };
        for (key, want) in [
            ("cluster_fallback_config_import", "on"),
            ("cluster_fallback_config_export", "off"),
            ("shared_data_namespace", namespace),
        ] {
            if object[key] != want {
                problems.push(format!(
                    "{name}: {key} must be {want:?}, is {}",
                    object[key]
                ));
            }
        }
        if let Err(e) = parser_accepts(config) {
            problems.push(format!("{name}: the filter refuses it: {e}"));
        }
        for e in schema_errors(&schema, config) {
            problems.push(format!("{name}: meta.json: {e}"));
        }
    }
    assert_no_problems(&problems);
}
