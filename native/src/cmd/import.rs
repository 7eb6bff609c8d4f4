//! `import`: the last export, validated, written to the file Kong's `declarative_config` names
//! (hybrid-mode DPs, nginx, Envoy: before the gateway starts) or applied through a Kong Admin API.
//!
//! Never over a configuration the node has: `--skip-if-exists` (Kong's persisted LMDB), the CP
//! probe (`--cp-probe`: any answer below 500 means the source of truth is up), and with
//! `--admin-url` the filter's own import sub-machine (`/status` hash, the bootstrap marker),
//! driven by the same engine, which also disables exporting config-bridge filters in the
//! document and posts with Kong's retry rules (413, 429 + Retry-After, 5xx). A file gets the
//! object byte for byte.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use config_bridge::engine::{Effect, Level, Metric};
use config_bridge::http::OutboundRequest;
use config_bridge::http_url::HttpUrl;

use super::{call_timeout, deadline, http, progress};
use crate::args::ImportArgs;
use crate::driver::Driver;
use crate::http::Http;
use crate::outcome::{Exit, Outcome, Progress, Res};
use crate::pick::{resolve, Pick};
use crate::settings::Settings;
use crate::storage::{open_export, Storage};
use crate::time::{age, now_ms, rfc3339};

/// One GET to the CP, at most this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(args: &ImportArgs) -> Res<Outcome> {
    let common = &args.common;
    let deadline = deadline(common)?;
    let progress = progress(common);
    let mut settings = Settings::load(common)?.reading();
    let probe = match &args.cp_probe {
        Some(raw) => Some(
            HttpUrl::parse(raw)
                .map_err(|e| Outcome::new(Exit::Usage, format!("--cp-probe: {e}")))?,
        ),
        None => None,
    };
    // Checked before anything is skipped: a broken init container must not go unnoticed
    // until the day it is needed.
    if let Some(url) = &args.admin_url {
        settings.set("kong_admin_url", url.as_str());
        settings.set("import_grace_period", 0);
        settings.set("import_check_interval", 0.2);
        settings.set("import_max_bytes", args.max_bytes);
        if let Some(p) = &args.cp_probe {
            settings.set("import_probe_url", p.as_str());
        }
    }
    let cfg = settings.parse(None)?;
    let mode = file_mode(&args.file_mode)?;
    let pick = Pick::from_args(&args.pick, &cfg)?;

    for path in &args.skip_if_exists {
        if path.exists() {
            return Ok(Outcome::new(
                Exit::Skipped,
                format!(
                    "{} exists (a persisted configuration); not importing",
                    path.display()
                ),
            )
            .field("reason", "persisted")
            .field("path", path.display().to_string()));
        }
    }
    let mut http = http(&cfg, common)?;
    if let Some(url) = &probe {
        http = http.with_unverified_origin(url, PROBE_TIMEOUT.min(call_timeout(&cfg, common)));
    }
    if args.admin_url.is_some() {
        // The engine's import downloads the pinned history object (`import_key`): the pick,
        // resolved to its full version id, becomes that pin.
        let cfg = match &pick {
            Pick::Latest => cfg,
            _ => {
                let storage = Storage::new(&cfg, &http, progress, deadline);
                let picked = resolve(&storage, &cfg, &pick)?;
                settings.set("cluster_fallback_import_version", picked.name());
                settings.parse(None)?
            }
        };
        return Ok(through_admin_api(
            cfg,
            &http,
            progress,
            deadline,
            common.timeout,
        ));
    }
    if let Some(url) = &probe {
        if let Some(status) = answers(&http, url, progress) {
            return Ok(Outcome::new(
                Exit::Skipped,
                format!("the source of truth answers ({url}: HTTP {status}); not importing"),
            )
            .field("reason", "cp-up")
            .field("probe_status", status));
        }
    }
    let Some(out) = &args.out else {
        return Err(Outcome::new(
            Exit::Usage,
            "--out or --admin-url is required",
        ));
    };
    let storage = Storage::new(&cfg, &http, progress, deadline);
    let picked = resolve(&storage, &cfg, &pick)?;
    let where_ = storage.describe(&picked.key);
    let version_id = picked.entry.as_ref().map(|e| e.version_id().to_string());
    let object = storage.get(&picked.key, "nothing to import")?;
    let object = match open_export(&cfg, &picked, object, args.max_bytes) {
        Ok(o) => o,
        Err(why) => {
            return Ok(
                Outcome::new(Exit::Invalid, format!("{where_} is not applied: {why}"))
                    .field("object", where_)
                    .field("version_id", version_id),
            )
        }
    };
    write_atomically(out, &object.body, mode)
        .map_err(|e| Outcome::new(Exit::Local, format!("cannot write {}: {e}", out.display())))?;
    let uploader = object
        .meta
        .uploader
        .clone()
        .unwrap_or_else(|| "unknown".into());
    let applied = object.applied_at();
    let age_text = applied
        .map(|(t, _)| format!("{} old", age(now_ms().saturating_sub(t))))
        .unwrap_or_else(|| "age unknown".into());
    let mut outcome = Outcome::ok(format!(
        "imported {where_} to {} ({age_text}, {} bytes, uploaded by {uploader})",
        out.display(),
        object.body.len()
    ))
    .field("object", where_)
    .field("version_id", version_id)
    .field("out", out.display().to_string())
    .field("bytes", object.body.len())
    .field("uploader", uploader)
    .field("sha256", config_bridge::document::sha256_hex(&object.body));
    if let Some((t, source)) = applied {
        outcome = outcome
            .field("applied_at", rfc3339(t))
            .field("age_seconds", now_ms().saturating_sub(t) / 1000)
            .field("age_from", source);
    }
    Ok(outcome)
}

/// The CP probe: one GET; `Some(status)` when it answers below 500 (up).
fn answers(http: &Http, url: &HttpUrl, progress: Progress) -> Option<u16> {
    let request = OutboundRequest {
        upstream: url.upstream(),
        method: "GET".into(),
        path: url.path_and_query.clone(),
        authority: url.authority(),
        scheme: url.scheme.clone(),
        headers: Vec::new(),
        body: Rc::default(),
    };
    match http.send(&request) {
        Ok(resp) if resp.status < 500 => Some(resp.status),
        Ok(resp) => {
            progress.info(&format!("the CP probe answered HTTP {}: down", resp.status));
            None
        }
        Err(e) => {
            progress.info(&format!("the CP probe failed ({e}): down"));
            None
        }
    }
}

/// How the engine's import sub-machine ended.
enum End {
    Applied,
    Skipped(&'static str, String),
    Nothing(String),
    Invalid(String),
}

/// The filter's import, run by the engine against the Admin API until it ends or `deadline`.
fn through_admin_api(
    cfg: config_bridge::settings::Config,
    http: &Http,
    progress: Progress,
    deadline: Instant,
    timeout_s: f64,
) -> Outcome {
    let where_ = config_bridge::store::for_settings(&cfg.storage).describe(&cfg.import_key());
    let admin = cfg
        .import_settings
        .as_ref()
        .map(|s| s.admin.url.to_string())
        .unwrap_or_default();
    let mut applied_line = String::new();
    let mut last_error = String::new();
    let mut last_problem: Option<(Exit, String)> = None;
    let mut driver = Driver::new(cfg, http, progress);
    let end = driver.run(None, deadline, |fx| match fx {
        Effect::Log(_, line) if line.starts_with("fallback config applied") => {
            applied_line = line.clone();
            None
        }
        Effect::Metric(Metric::ImportsTotal, _) => Some(End::Applied),
        Effect::Log(Level::Error, line) => {
            last_error = line.clone();
            None
        }
        Effect::Metric(Metric::ImportFailuresTotal, _) => {
            Some(End::Invalid(std::mem::take(&mut last_error)))
        }
        Effect::Log(_, line) if line.contains("the node has a configuration") => {
            Some(End::Skipped(
                "configured",
                format!("the node at {admin} already has a configuration; not importing"),
            ))
        }
        Effect::Log(_, line) if line.contains("source of truth answers") => Some(End::Skipped(
            "cp-up",
            "the source of truth answers (--cp-probe); not importing".into(),
        )),
        Effect::Log(_, line) if line.contains("does not exist yet") => Some(End::Nothing(format!(
            "{where_} does not exist: nothing to import"
        ))),
        Effect::Log(Level::Warn, line) => {
            let exit = if line.contains("downloading") {
                Exit::Storage
            } else {
                Exit::Source
            };
            last_problem = Some((exit, line.clone()));
            None
        }
        _ => None,
    });
    let outcome = match end {
        Some(End::Applied) => Outcome::ok(applied_line),
        Some(End::Skipped(reason, line)) => {
            Outcome::new(Exit::Skipped, line).field("reason", reason)
        }
        Some(End::Nothing(line)) => Outcome::new(Exit::Nothing, line),
        Some(End::Invalid(line)) => {
            // The engine's plan for the next export is not this run's.
            let line = [
                "; waiting for a newer export",
                "; this export is not tried again",
            ]
            .iter()
            .fold(line.as_str(), |l, tail| l.strip_suffix(tail).unwrap_or(l))
            .to_string();
            Outcome::new(Exit::Invalid, line)
        }
        None => {
            let (exit, line) = last_problem.unwrap_or((
                Exit::Source,
                format!("no answer from the Admin API at {admin}"),
            ));
            let line = super::without_retry_plan(&line);
            Outcome::new(exit, format!("gave up after {timeout_s} s: {line}"))
        }
    };
    outcome.field("object", where_).field("admin_url", admin)
}

fn file_mode(octal: &str) -> Res<u32> {
    u32::from_str_radix(octal, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| Outcome::new(Exit::Usage, "--file-mode must be octal, e.g. 600 or 640"))
}

/// A temporary file in the same directory, synced, then renamed over `path`: Kong never reads
/// a half-written configuration, and a crash leaves the old file (or none).
pub(super) fn write_atomically(path: &Path, body: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("--out must name a file"))?;
    let tmp = dir.join(format!(
        ".{}.config-bridge-{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        let mut file = options.open(&tmp)?;
        file.write_all(body)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            // The rename itself survives a crash once the directory is synced.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    #[cfg(not(unix))]
    let _ = mode;
    written
}
