//! Helpers shared by the xtask integration tests: the filter's JSON schema (Kong's meta.json) and
//! its own config parser, so that every check runs both.
#![allow(dead_code)] // each test crate uses its own subset

use config_bridge::settings::Config;
use serde_json::Value;
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

/// The workspace root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The meta.json `config_schema`, checked against the draft-4 metaschema and compiled.
pub(crate) fn validator() -> jsonschema::Validator {
    let schema = xtask::meta::config_schema().expect("meta.json shape");
    jsonschema::draft4::meta::validate(&schema).expect("config_schema is a valid draft-4 schema");
    jsonschema::draft4::new(&schema).expect("config_schema compiles")
}

/// Settings the examples may leave to the environment (Kong's env vars), as a node would have them.
/// None of them turns export/import on or names the storage: those must come from the example.
pub(crate) fn env() -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        ("AWS_REGION", "us-east-1"),
        ("CONFIG_BRIDGE_GATEWAY_VERSION", "3.9.1"),
    ]);
    move |k| vars.get(k).map(|v| v.to_string())
}

/// The filter's parser on the bytes a host hands to `on_configure`.
pub(crate) fn parser_accepts_bytes(bytes: &[u8]) -> Result<(), String> {
    Config::parse(bytes, &env())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

pub(crate) fn parser_accepts(config: &Value) -> Result<(), String> {
    parser_accepts_bytes(config.to_string().as_bytes())
}

pub(crate) fn schema_errors(v: &jsonschema::Validator, config: &Value) -> Vec<String> {
    v.iter_errors(config)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Fails with every problem found, one a line (tests collect them all before failing).
pub(crate) fn assert_no_problems(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// A Kubernetes container's `env:` as the process sees it (secrets as placeholders).
pub(crate) fn container_env(container: &Value) -> HashMap<String, String> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e["name"].as_str()?.to_string();
            let value = e["value"]
                .as_str()
                .unwrap_or("AKIDEXAMPLEFROMASECRET")
                .to_string();
            Some((name, value))
        })
        .collect()
}

/// A `KEY=value` env file (comments and blank lines skipped).
pub(crate) fn env_file(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The filter's parser with `mode` on and the rest from `env`, as the native tool runs it:
/// why it refuses them, if it does.
pub(crate) fn tool_settings_refused(
    what: &str,
    mode: &str,
    env: &HashMap<String, String>,
) -> Option<String> {
    let settings = format!(r#"{{"{mode}": "on", "config_source": "kong_admin"}}"#);
    let lookup = |k: &str| env.get(k).cloned();
    Config::parse(settings.as_bytes(), &lookup)
        .err()
        .map(|e| format!("{what}: the settings it gives are refused: {e}"))
}
