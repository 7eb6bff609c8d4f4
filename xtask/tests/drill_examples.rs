//! `examples/drill/`: the scheduled restore rehearsals. The environments they give (the CronJob's
//! drill container, the systemd env file) are read by the filter's own parser as the native tool
//! reads them (import on); the scratch Kong runs the gateway version whose exports are
//! rehearsed; the drill applies to that scratch node on loopback, never elsewhere. (The command
//! lines themselves run against mocks in native/tests/history.rs.)

mod common;

use std::fs;

use common::{assert_no_problems, container_env, env_file, root, tool_settings_refused};
use serde_json::Value;

fn dir() -> std::path::PathBuf {
    root().join("examples/drill")
}

#[test]
fn the_drill_examples_settings_are_the_filters_and_rehearse_on_a_scratch_kong() {
    let mut problems = Vec::new();
    let cronjob: Value = serde_norway::from_str(
        &fs::read_to_string(dir().join("kubernetes/drill-cronjob.yaml")).unwrap(),
    )
    .unwrap();
    let pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let drill = pod["containers"][0].clone();
    let scratch = pod["initContainers"][0].clone();
    let env = container_env(&drill);
    problems.extend(tool_settings_refused(
        "drill-cronjob.yaml drill container",
        "cluster_fallback_config_import",
        &env,
    ));
    let version = env
        .get("CONFIG_BRIDGE_GATEWAY_VERSION")
        .cloned()
        .unwrap_or_default();
    if scratch["image"].as_str() != Some(format!("kong:{version}").as_str()) {
        problems.push(format!(
            "drill-cronjob.yaml: the scratch Kong {} is not the exports' gateway version {version}",
            scratch["image"]
        ));
    }
    if scratch["restartPolicy"] != "Always" {
        problems.push("drill-cronjob.yaml: the scratch Kong is not a native sidecar".into());
    }
    let args = drill["args"].to_string();
    for needle in ["\"drill\"", "\"--sample\"", "\"http://127.0.0.1:8001\""] {
        if !args.contains(needle) {
            problems.push(format!(
                "drill-cronjob.yaml: the drill args lack {needle}: {args}"
            ));
        }
    }
    if pod["restartPolicy"] != "Never"
        || cronjob["spec"]["jobTemplate"]["spec"]["backoffLimit"] != 0
    {
        problems.push("drill-cronjob.yaml: a failed drill must fail the Job at once".into());
    }

    let systemd = env_file(&dir().join("systemd/config-bridge-drill.env"));
    problems.extend(tool_settings_refused(
        "systemd/config-bridge-drill.env",
        "cluster_fallback_config_import",
        &systemd,
    ));
    let unit = fs::read_to_string(dir().join("systemd/config-bridge-drill.service")).unwrap();
    let version = systemd
        .get("CONFIG_BRIDGE_GATEWAY_VERSION")
        .cloned()
        .unwrap_or_default();
    for needle in [
        format!("kong:{version}"),
        "-p 127.0.0.1:8101:8001".to_string(),
        "--apply-to http://127.0.0.1:8101".to_string(),
        "EnvironmentFile=/etc/kong/config-bridge-drill.env".to_string(),
    ] {
        if !unit.contains(&needle) {
            problems.push(format!("config-bridge-drill.service lacks {needle}"));
        }
    }
    assert_no_problems(&problems);
}
