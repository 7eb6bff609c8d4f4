//! Keeps `xtask/config_bridge.meta.json` (Kong's config_schema for the filter) in step with the
//! filter's own parser, `config_bridge::settings::Config::parse`:
//! * the schema is a valid draft-4 schema (Kong validates schemas with lua-resty-ljsonschema, draft 4);
//! * every example filter config (`plugin/examples/*.json`, `examples/**/*filter*.json`) and every
//!   valid variant below is accepted by BOTH the schema and the parser;
//! * every invalid config below is rejected by the parser, and by the schema unless it is marked as
//!   something JSON Schema cannot express (then the schema must accept it, so the list stays honest).

mod common;

use common::{assert_no_problems, parser_accepts, root, schema_errors, validator};
use serde_json::{json, Value};
use std::{fs, path::PathBuf};

fn example_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(dir) = fs::read_dir(root().join("plugin/examples")) {
        files.extend(
            dir.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json")),
        );
    }
    let mut stack = vec![root().join("examples")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()) {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".json") && name.contains("filter") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_example_config_passes_the_schema_and_the_parser() {
    let v = validator();
    let files = example_files();
    assert!(
        !files.is_empty(),
        "no example filter configs found under plugin/examples or examples/"
    );
    for file in files {
        let config: Value = serde_json::from_slice(&fs::read(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", file.display()));
        let errors = schema_errors(&v, &config);
        assert!(
            errors.is_empty(),
            "{}: rejected by the schema: {errors:?}",
            file.display()
        );
        if let Err(e) = parser_accepts(&config) {
            panic!("{}: rejected by the parser: {e}", file.display());
        }
    }
}

/// A complete, valid exporter config (everything in the file, nothing from the environment).
fn base() -> Value {
    json!({
        "cluster_fallback_config_export": "on",
        "cluster_fallback_config_import": "off",
        "cluster_fallback_config_storage": "s3://kong-backup/dp",
        "cluster_fallback_config_export_delay": 30,
        "gateway_version": "3.9.1",
        "aws_access_key_id": "AKIDEXAMPLE",
        "aws_secret_access_key": "secret",
        "aws_region": "eu-west-1",
        "config": {"_format_version": "3.0", "services": []}
    })
}

fn with(changes: Value) -> Value {
    let mut v = base();
    for (k, val) in changes.as_object().unwrap() {
        if val.is_null() {
            v.as_object_mut().unwrap().remove(k);
        } else {
            v[k] = val.clone();
        }
    }
    v
}

#[test]
fn valid_variants_pass_the_schema_and_the_parser() {
    let v = validator();
    let variants = vec![
        base(),
        with(
            json!({"cluster_fallback_config_export": true, "cluster_fallback_config_import": false}),
        ),
        with(
            json!({"cluster_fallback_config_export": " ON ", "cluster_fallback_config_import": "Yes"}),
        ),
        with(
            json!({"cluster_fallback_config_export": "false", "cluster_fallback_config_import": "1", "config": null}),
        ),
        with(json!({"cluster_fallback_config_export_delay": "2.5"})),
        with(json!({"cluster_fallback_config_export_delay": 0})),
        with(json!({"cluster_fallback_config_storage": "S3://my.bucket-1//a//b/"})),
        // The node's own Admin API (every Kong example): no `config`.
        with(json!({"config_source": "kong_admin", "config": null,
                    "kong_admin_url": "http://127.0.0.1:8001", "kong_admin_dump_interval": 30})),
        with(json!({"config_source": "kong_admin", "config": null})),
        // GCS (Kong 3.5+ validates the chain against the schema before the filter sees it).
        with(
            json!({"cluster_fallback_config_storage": "gcs://kong-backups/fallback",
                    "aws_access_key_id": null, "aws_secret_access_key": null, "aws_region": null}),
        ),
        with(
            json!({"cluster_fallback_config_storage": " gs://kong_backups ",
                    "aws_access_key_id": null, "aws_secret_access_key": null, "aws_region": null,
                    "gcs_endpoint": "http://fake-gcs:4443"}),
        ),
        with(
            json!({"cluster_fallback_config_storage": "GCS://kong-backups/a/b/",
                    "aws_access_key_id": null, "aws_secret_access_key": null, "aws_region": null}),
        ),
        with(json!({"cluster_fallback_export_s3_config": {
            "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "arn:aws:kms:eu-west-1:1:key/abc",
            "StorageClass": "STANDARD_IA", "ACL": "bucket-owner-full-control", "BucketKeyEnabled": true,
            "Metadata": {"team": "gw", "Env_1": "prod"}, "Tagging": {"a": "b c"}, "CacheControl": "no-cache"
        }})),
        with(json!({"cluster_fallback_export_s3_config": "{\"StorageClass\":\"GLACIER_IR\"}"})),
        with(json!({"cluster_fallback_export_s3_config": {"Tagging": "a=b&c=d"}})),
        with(json!({"config": "{\"_format_version\":\"3.0\"}"})),
        with(
            json!({"config_source": "url", "config": null, "config_url": "http://kong-cp:8001/config",
                    "config_url_upstream": "kong-cp:8001", "config_poll_interval": 0.5}),
        ),
        with(
            json!({"node_id": "dp-1.example", "storage_endpoint": "http://minio:9000/",
                    "storage_upstream": "minio:9000", "s3_force_path_style": "on", "s3_conditional_writes": false,
                    "aws_session_token": "token"}),
        ),
        with(
            json!({"tick_period_ms": 500, "call_timeout_ms": "2000", "lease_ttl_ms": 1000,
                    "retry_base_ms": 10, "retry_max_ms": 10}),
        ),
        // Credentials, region and version left to the environment (AWS_*, CONFIG_BRIDGE_GATEWAY_VERSION).
        with(
            json!({"aws_access_key_id": null, "aws_secret_access_key": null, "aws_region": null, "gateway_version": null}),
        ),
        with(json!({"strict_config": true, "shared_data_namespace": "kv"})),
        with(json!({"strict_config": "off", "shared_data_namespace": "*"})),
        with(json!({"shared_data_namespace": " kong_wasm-1.kv "})),
        // A Kong 3.4 filter chain upgraded to 3.5+: the whole configuration is a JSON string.
        Value::String(base().to_string()),
    ];
    for config in variants {
        let errors = schema_errors(&v, &config);
        assert!(
            errors.is_empty(),
            "schema rejects a config the filter accepts: {config}\n{errors:?}"
        );
        if let Err(e) = parser_accepts(&config) {
            panic!("parser rejects {config}: {e}");
        }
    }
}

/// How far JSON Schema (draft 4) can follow the parser on an invalid config.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Schema {
    Rejects,
    /// Not expressible; the reason is in the case's comment.
    CannotExpress,
}
use Schema::*;

#[test]
fn invalid_configs_are_rejected_by_the_parser_and_the_schema() {
    let v = validator();
    let cases: Vec<(&str, Value, Schema)> = vec![
        ("top level is an array", json!([1]), Rejects),
        ("top level a string that is no object", json!("on"), Rejects),
        // A string is opaque to the schema (Kong 3.4 chains carried into 3.5+): the filter checks it.
        (
            "top level a string holding an invalid object",
            Value::String(with(json!({"cluster_fallback_config_exprot": "on"})).to_string()),
            CannotExpress,
        ),
        (
            "unknown setting",
            with(json!({"cluster_fallback_config_exprot": "on"})),
            Rejects,
        ),
        (
            "bad boolean",
            with(json!({"cluster_fallback_config_export": "maybe"})),
            Rejects,
        ),
        (
            "number as boolean",
            with(json!({"cluster_fallback_config_import": 3})),
            Rejects,
        ),
        (
            "export and import both off",
            with(
                json!({"cluster_fallback_config_export": "off", "cluster_fallback_config_import": false}),
            ),
            Rejects,
        ),
        // Both absent: the environment (KONG_CLUSTER_FALLBACK_CONFIG_EXPORT) may still turn one on.
        (
            "export and import both absent",
            with(
                json!({"cluster_fallback_config_export": null, "cluster_fallback_config_import": null}),
            ),
            CannotExpress,
        ),
        (
            "unknown storage scheme",
            with(json!({"cluster_fallback_config_storage": "ftp://bucket/p"})),
            Rejects,
        ),
        (
            "kong_admin source with a config",
            with(json!({"config_source": "kong_admin"})),
            Rejects,
        ),
        (
            "GCS bucket with upper case",
            with(json!({"cluster_fallback_config_storage": "gcs://Kong-Backups/p"})),
            Rejects,
        ),
        (
            "a scheme that only looks like GCS",
            with(json!({"cluster_fallback_config_storage": "gcss://kong-backups/p"})),
            Rejects,
        ),
        (
            "storage not a string",
            with(json!({"cluster_fallback_config_storage": 12})),
            Rejects,
        ),
        (
            "bucket with upper case",
            with(json!({"cluster_fallback_config_storage": "s3://Bucket/p"})),
            Rejects,
        ),
        (
            "prefix with ..",
            with(json!({"cluster_fallback_config_storage": "s3://bucket/a/../b"})),
            CannotExpress,
        ),
        (
            "negative delay",
            with(json!({"cluster_fallback_config_export_delay": -1})),
            Rejects,
        ),
        (
            "negative delay as string",
            with(json!({"cluster_fallback_config_export_delay": "-5"})),
            Rejects,
        ),
        (
            "delay not a number",
            with(json!({"cluster_fallback_config_export_delay": "soon"})),
            Rejects,
        ),
        (
            "delay too long",
            with(json!({"cluster_fallback_config_export_delay": 86401})),
            Rejects,
        ),
        // Draft 4 has no numeric range for strings.
        (
            "delay too long as string",
            with(json!({"cluster_fallback_config_export_delay": "86401"})),
            CannotExpress,
        ),
        (
            "unknown s3 config parameter",
            with(json!({"cluster_fallback_export_s3_config": {"Bogus": "x"}})),
            Rejects,
        ),
        (
            "s3 parameter set by the filter",
            with(json!({"cluster_fallback_export_s3_config": {"ContentType": "text/plain"}})),
            Rejects,
        ),
        (
            "bad storage class",
            with(json!({"cluster_fallback_export_s3_config": {"StorageClass": "FAST"}})),
            Rejects,
        ),
        (
            "s3 parameter not a string",
            with(json!({"cluster_fallback_export_s3_config": {"SSECustomerKey": 5.5}})),
            Rejects,
        ),
        (
            "BucketKeyEnabled not a boolean",
            with(json!({"cluster_fallback_export_s3_config": {"BucketKeyEnabled": "yes"}})),
            Rejects,
        ),
        (
            "reserved metadata key",
            with(json!({"cluster_fallback_export_s3_config": {"Metadata": {"Uploader": "x"}}})),
            Rejects,
        ),
        (
            "metadata key with a space",
            with(json!({"cluster_fallback_export_s3_config": {"Metadata": {"a b": "x"}}})),
            Rejects,
        ),
        (
            "s3 config an array",
            with(json!({"cluster_fallback_export_s3_config": [1]})),
            Rejects,
        ),
        // A JSON string holding the parameters (Kong 3.4 style) is opaque to the schema.
        (
            "s3 config string with an unknown parameter",
            with(json!({"cluster_fallback_export_s3_config": "{\"Bogus\":\"x\"}"})),
            CannotExpress,
        ),
        (
            "unknown config_source",
            with(json!({"config_source": "ftp"})),
            Rejects,
        ),
        (
            "config without _format_version",
            with(json!({"config": {"services": []}})),
            Rejects,
        ),
        ("config an array", with(json!({"config": [1]})), Rejects),
        (
            "config string that is not JSON",
            with(json!({"config": "{not json"})),
            CannotExpress,
        ),
        (
            "export from filter without config",
            with(json!({"config": null})),
            Rejects,
        ),
        (
            "url source without config_url",
            with(json!({"config_source": "url", "config": null})),
            Rejects,
        ),
        (
            "url source with config",
            with(json!({"config_source": "url", "config_url": "http://cp:8001/config"})),
            Rejects,
        ),
        (
            "config_url not http",
            with(json!({"config_source": "url", "config": null, "config_url": "ftp://cp/config"})),
            Rejects,
        ),
        (
            "gateway_version with a slash",
            with(json!({"gateway_version": "3/9"})),
            Rejects,
        ),
        (
            "gateway_version a number",
            with(json!({"gateway_version": 3.9})),
            Rejects,
        ),
        (
            "gateway_version ..",
            with(json!({"gateway_version": ".."})),
            Rejects,
        ),
        (
            "node_id with a space",
            with(json!({"node_id": "has space"})),
            Rejects,
        ),
        (
            "region with a space",
            with(json!({"aws_region": "eu west"})),
            Rejects,
        ),
        (
            "access key with a slash",
            with(json!({"aws_access_key_id": "AK/ID"})),
            Rejects,
        ),
        (
            "secret not a string",
            with(json!({"aws_secret_access_key": 7})),
            Rejects,
        ),
        (
            "endpoint without scheme",
            with(json!({"storage_endpoint": "minio:9000"})),
            Rejects,
        ),
        (
            "bad path-style boolean",
            with(json!({"s3_force_path_style": "perhaps"})),
            Rejects,
        ),
        (
            "tick period zero",
            with(json!({"tick_period_ms": 0})),
            Rejects,
        ),
        (
            "timeout not a number",
            with(json!({"call_timeout_ms": "x"})),
            Rejects,
        ),
        (
            "fractional milliseconds",
            with(json!({"retry_base_ms": 1.5})),
            Rejects,
        ),
        (
            "strict_config not a boolean",
            with(json!({"strict_config": "maybe"})),
            Rejects,
        ),
        (
            "shared_data_namespace with a slash",
            with(json!({"shared_data_namespace": "a/b"})),
            Rejects,
        ),
        (
            "shared_data_namespace too long",
            with(json!({"shared_data_namespace": "x".repeat(65)})),
            Rejects,
        ),
        // Cross-field comparisons need $data, which no JSON Schema draft has.
        (
            "lease shorter than two ticks",
            with(json!({"tick_period_ms": 1000, "lease_ttl_ms": 1500})),
            CannotExpress,
        ),
        (
            "retry max below retry base",
            with(json!({"retry_base_ms": 5000, "retry_max_ms": 1000})),
            CannotExpress,
        ),
    ];
    let mut problems = Vec::new();
    for (name, config, schema) in &cases {
        if parser_accepts(config).is_ok() {
            problems.push(format!(
                "{name}: the parser ACCEPTS it (fix the case or the parser)"
            ));
        }
        let schema_rejects = !v.is_valid(config);
        match (schema, schema_rejects) {
            (Rejects, false) => problems.push(format!("{name}: the schema accepts it")),
            (CannotExpress, true) => problems.push(format!(
                "{name}: the schema now rejects it: mark it Rejects"
            )),
            _ => {}
        }
    }
    assert_no_problems(&problems);
}

#[test]
fn the_schema_describes_exactly_the_settings_the_parser_accepts() {
    let schema = xtask::meta::config_schema().unwrap();
    let mut described: Vec<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut accepted: Vec<&str> = config_bridge::settings::SETTINGS.to_vec();
    described.sort_unstable();
    accepted.sort_unstable();
    assert_eq!(
        described, accepted,
        "config_bridge.meta.json properties vs config::SETTINGS"
    );
    for (name, prop) in schema["properties"].as_object().unwrap() {
        assert!(
            prop["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{name} has no description"
        );
    }
}
