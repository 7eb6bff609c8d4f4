//! `export`: one export, by the filter's own engine — the same key layout, metadata
//! (`uploader`, `config-applied-at`, `config-sha256`), HEAD first, conditional PUT, conflict
//! rounds and retries — with a file (`config_source: filter`), a URL (`url`) or a Kong Admin API
//! (`kong_admin`, read into Kong's flat form) as the source. It ends when the engine reports the
//! upload, finds the same content already stored, or finds a newer config it must not overwrite.

use std::rc::Rc;

use config_bridge::document::validate_declarative_json;
use config_bridge::engine::{Effect, Level, Metric};

use super::{deadline, http, progress};
use crate::args::ExportArgs;
use crate::driver::Driver;
use crate::outcome::{Exit, Outcome, Res};
use crate::settings::Settings;
use crate::storage::Storage;
use crate::time::rfc3339;
use serde_json::json;

enum End {
    Exported(String),
    Unchanged(String),
    Newer(String),
    Empty(String),
    /// The store refused in a way no retry can fix (wrong keys, a missing permission).
    Refused(String),
}

pub fn run(args: &ExportArgs) -> Res<Outcome> {
    let common = &args.common;
    let deadline = deadline(common)?;
    let progress = progress(common);
    let mut settings = Settings::load(common)?;
    settings.set("cluster_fallback_config_export", true);
    settings.set("cluster_fallback_config_export_delay", 0);
    // An operator's one-shot export does not stand for election: it exports now (the conditional
    // write still never replaces a newer config).
    settings.set("election", false);
    // A failing source or store is asked again soon; the run ends at --timeout anyway.
    settings.set_default("config_poll_interval", 1);
    settings.set_default("retry_base_ms", 500);
    settings.set_default("retry_max_ms", 5000);
    match &args.node_id {
        Some(id) => settings.set("node_id", id.as_str()),
        // The filter's own fallbacks, then this host's name rather than a random id.
        None if !settings.has("node_id")
            && ["CONFIG_BRIDGE_NODE_ID", "HOSTNAME"]
                .iter()
                .all(|v| std::env::var_os(v).is_none()) =>
        {
            settings.set("node_id", default_node_id())
        }
        None => {}
    }
    let (cfg, document, source) = if let Some(path) = &args.from_file {
        let bytes = std::fs::read(path).map_err(|e| {
            Outcome::new(Exit::Local, format!("cannot read {}: {e}", path.display()))
        })?;
        validate_declarative_json(&bytes)
            .map_err(|why| Outcome::new(Exit::Invalid, format!("{} {why}", path.display())))?;
        settings.set("config_source", "filter");
        // The core checks the document as the filter checks its `config` setting; the engine
        // then gets the file's exact bytes (the setting would lose surrounding whitespace).
        let cfg = settings.parse(Some(&bytes))?;
        (cfg, Some(Rc::new(bytes)), path.display().to_string())
    } else if let Some(url) = &args.from_url {
        settings.set("config_source", "url");
        settings.set("config_url", url.as_str());
        (settings.parse(None)?, None, url.clone())
    } else if let Some(url) = &args.from_admin {
        settings.set("config_source", "kong_admin");
        settings.set("kong_admin_url", url.as_str());
        (
            settings.parse(None)?,
            None,
            format!("the Kong Admin API at {url}"),
        )
    } else {
        return Err(Outcome::new(
            Exit::Usage,
            "one of --from-file, --from-url, --from-admin is required",
        ));
    };

    let http = http(&cfg, common)?;
    let key = cfg.config_key();
    let history_on = cfg.history.enabled;
    let storage = Storage::new(&cfg, &http, progress, deadline);
    let object = storage.describe(&key);
    let mut exported_line = String::new();
    let mut last_problem: Option<(Exit, String)> = None;
    let mut driver = Driver::new(cfg, &http, progress);
    let end = driver.run(document, deadline, |fx| match fx {
        Effect::Log(_, line) if line.starts_with("exported config to") => {
            exported_line = line.clone();
            None
        }
        Effect::Metric(Metric::ExportsTotal, _) => {
            Some(End::Exported(std::mem::take(&mut exported_line)))
        }
        Effect::Log(_, line) if line.contains("already holds this config") => {
            Some(End::Unchanged(line.clone()))
        }
        Effect::Log(_, line) if line.contains("holds a newer config") => {
            Some(End::Newer(line.clone()))
        }
        Effect::Log(_, line)
            if line.contains("has no configuration yet") || line.contains("has no entities") =>
        {
            Some(End::Empty(line.clone()))
        }
        Effect::Log(Level::Error, line)
            if line.starts_with("export to ") && line.contains("no retry can fix this") =>
        {
            Some(End::Refused(line.clone()))
        }
        Effect::Log(Level::Warn, line) if line.starts_with("export to ") => {
            last_problem = Some((Exit::Storage, line.clone()));
            None
        }
        Effect::Log(Level::Warn, line) if line.starts_with("fetching the config from") => {
            // The URL source's verdict on a body that is no declarative configuration.
            let exit = if line.contains(": the answer ") {
                Exit::Invalid
            } else {
                Exit::Source
            };
            last_problem = Some((exit, line.clone()));
            None
        }
        _ => None,
    });
    // `stored`: the storage holds this config now (the history records it).
    let (outcome, uploaded, stored) = match end {
        Some(End::Exported(line)) => (Outcome::ok(line), true, true),
        Some(End::Unchanged(line)) => (Outcome::ok(line), false, true),
        Some(End::Newer(line)) => (Outcome::new(Exit::Skipped, line), false, false),
        Some(End::Refused(line)) => {
            let line = line
                .split_once("; next attempt in ")
                .map_or(line.as_str(), |(l, _)| l);
            return Ok(Outcome::new(Exit::Usage, line).field("object", object));
        }
        Some(End::Empty(line)) => {
            return Ok(
                Outcome::new(Exit::Nothing, format!("{source}: {line}")).field("object", object)
            );
        }
        None => {
            let (exit, line) =
                last_problem.unwrap_or((Exit::Source, format!("no configuration from {source}")));
            let line = super::without_retry_plan(&line);
            return Ok(
                Outcome::new(exit, format!("gave up after {} s: {line}", common.timeout))
                    .field("object", object),
            );
        }
    };
    let mut outcome = outcome
        .field("object", object.as_str())
        .field("source", source)
        .field("uploaded", uploaded);
    if history_on && stored {
        outcome = record_history(&mut driver, deadline, progress, outcome);
    }
    // What the storage holds now, as the other commands would show it (best effort).
    if uploaded {
        if let Ok(Some(meta)) = storage.head(&key) {
            outcome = outcome
                .field("sha256", meta.sha256_hex)
                .field("uploader", meta.uploader)
                .field("etag", meta.version)
                .field("applied_at", meta.applied_at.map(rfc3339));
        }
    }
    Ok(outcome)
}

/// After the export, the engine's history cycle (docs/history.md), as the filter's leader runs
/// it: the stored export recorded under `history/` unless the newest history object already
/// has its digest, then retention. History never fails an export: a failed cycle is a warning
/// and the `history` field says why.
fn record_history(
    driver: &mut Driver,
    deadline: std::time::Instant,
    progress: crate::outcome::Progress,
    outcome: Outcome,
) -> Outcome {
    let mut said = String::new();
    let mut failure = String::new();
    let end = driver.run(None, deadline, |fx| match fx {
        Effect::Log(_, line)
            if line.starts_with("history: recorded") || line.contains("already records") =>
        {
            said = line.clone();
            None
        }
        Effect::Log(_, line) if line.starts_with("history: pruned") => {
            progress.info(line);
            None
        }
        Effect::Log(Level::Warn | Level::Error, line) if line.starts_with("history: ") => {
            failure = line.clone();
            None
        }
        Effect::Metric(Metric::HistoryObjects, n) => Some(Ok(*n)),
        Effect::Metric(Metric::HistoryFailuresTotal, _) => Some(Err(())),
        _ => None,
    });
    match end {
        Some(Ok(objects)) => {
            progress.info(&said);
            outcome.field(
                "history",
                json!({"recorded": !said.contains("already records"), "message": said, "objects": objects}),
            )
        }
        failed => {
            let why = match failed {
                Some(_) => super::without_retry_plan(&failure).to_string(),
                None => "the history was not recorded before --timeout".to_string(),
            };
            progress.warn(&format!("{why} (the export itself is stored)"));
            outcome.field("history", json!({"recorded": false, "error": why}))
        }
    }
}

/// `config-bridge@<host name>` (Linux), else `config-bridge`: what `x-amz-meta-uploader` says
/// when neither `--node-id`, `node_id`, `CONFIG_BRIDGE_NODE_ID` nor `HOSTNAME` is set.
fn default_node_id() -> String {
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && h.len() <= 100 && h.bytes().all(|b| b.is_ascii_graphic()));
    match host {
        Some(h) => format!("config-bridge@{h}"),
        None => "config-bridge".to_string(),
    }
}
