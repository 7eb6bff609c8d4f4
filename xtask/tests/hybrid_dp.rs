//! `examples/kong/hybrid-dp/`: the CP's exporter and the DP's importer are the native tool, whose
//! settings are the filter's (same names, same environment variables). Every environment those
//! examples give (Kubernetes `env:` lists, systemd env files) is read by the filter's own parser
//! as the tool reads it, with export (CP) or import (DP) on; the exporter reads the CP's own Admin
//! API on loopback, which the CP's `admin_listen` serves in plain HTTP.

mod common;

use std::fs;

use common::{assert_no_problems, container_env, root, tool_settings_refused};
use serde_json::Value;

fn dir() -> std::path::PathBuf {
    root().join("examples/kong/hybrid-dp")
}

fn env_file(name: &str) -> std::collections::HashMap<String, String> {
    common::env_file(&dir().join(name))
}

#[test]
fn the_hybrid_exporter_and_importer_settings_are_the_filters() {
    let mut problems = Vec::new();

    // The CP: a sidecar in the Helm release, reading the pod's loopback Admin API.
    let cp: Value = serde_norway::from_str(
        &fs::read_to_string(dir().join("kubernetes/cp-values.yaml")).unwrap(),
    )
    .unwrap();
    let listen = cp["env"]["admin_listen"].as_str().unwrap_or_default();
    if !listen
        .split(',')
        .any(|l| l.split_whitespace().next() == Some("127.0.0.1:8001") && !l.contains(" ssl"))
    {
        problems.push(format!(
            "cp-values.yaml: admin_listen {listen:?} has no plain-HTTP 127.0.0.1:8001 for the sidecar"
        ));
    }
    let sidecar = cp["deployment"]["sidecarContainers"]
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or(Value::Null);
    if !sidecar
        .to_string()
        .contains("config-bridge export --from-admin http://127.0.0.1:8001")
    {
        problems
            .push("cp-values.yaml: the sidecar does not export from http://127.0.0.1:8001".into());
    }
    problems.extend(tool_settings_refused(
        "cp-values.yaml sidecar",
        "cluster_fallback_config_export",
        &container_env(&sidecar),
    ));

    // The CP host: a systemd timer.
    let service = fs::read_to_string(dir().join("systemd/config-bridge-export.service")).unwrap();
    if !service.contains("config-bridge export --from-admin http://127.0.0.1:8001") {
        problems
            .push("config-bridge-export.service: not an export from the CP's own Admin API".into());
    }
    problems.extend(tool_settings_refused(
        "systemd/config-bridge-export.env",
        "cluster_fallback_config_export",
        &env_file("systemd/config-bridge-export.env"),
    ));

    // The DPs: the init container and the ExecStartPre script's env file.
    let dp: Value =
        serde_norway::from_str(&fs::read_to_string(dir().join("kubernetes/kong-dp.yaml")).unwrap())
            .unwrap();
    let init = dp["spec"]["template"]["spec"]["initContainers"][0].clone();
    if !init.to_string().contains("config-bridge import") {
        problems
            .push("kong-dp.yaml: the first init container is not `config-bridge import`".into());
    }
    problems.extend(tool_settings_refused(
        "kong-dp.yaml init container",
        "cluster_fallback_config_import",
        &container_env(&init),
    ));
    problems.extend(tool_settings_refused(
        "systemd/config-bridge.env",
        "cluster_fallback_config_import",
        &env_file("systemd/config-bridge.env"),
    ));
    // Both sides name the same object.
    let cp_env = container_env(&sidecar);
    let dp_env = container_env(&init);
    for var in [
        "KONG_CLUSTER_FALLBACK_CONFIG_STORAGE",
        "CONFIG_BRIDGE_GATEWAY_VERSION",
    ] {
        if cp_env.get(var) != dp_env.get(var) {
            problems.push(format!(
                "{var}: the CP exports to {:?}, the DP imports from {:?}",
                cp_env.get(var),
                dp_env.get(var)
            ));
        }
    }
    assert_no_problems(&problems);
}
