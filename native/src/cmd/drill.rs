//! `drill`: the disaster-recovery rehearsal. Downloads the last export, validates it as an import
//! would, reports its age, size, uploader and version, and compares its entities (ids per entity
//! type) with a live Kong Admin API read by the filter's own `kong_admin` source (`/status`, the
//! collections page by page into Kong's flat form). Exits non-zero with one line on a stale,
//! invalid or different backup.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use config_bridge::document::sha256_hex;
use config_bridge::engine::source::kong_admin::KongAdmin;
use config_bridge::engine::source::PollResult;
use config_bridge::engine::{config_post_request, flattened_errors};
use config_bridge::settings::KongAdminSettings;
use config_bridge::settings::{Config, SourceConfig};
use serde_json::{json, Map, Value};

use super::import::write_atomically;
use super::{deadline, http, progress, version_of_key};
use crate::args::DrillArgs;
use crate::http::Http;
use crate::outcome::{Exit, Outcome, Res};
use crate::pick::{list_history, Picked};
use crate::settings::Settings;
use crate::storage::{open_export, Storage};
use crate::time::{age, now_ms, rfc3339, utc_seconds};

/// Ids listed per entity type in a difference, at most.
const SHOWN_IDS: usize = 5;

/// A drill's verdict: the first problem's exit code, every problem's reason.
type Problems = Vec<(Exit, String)>;

pub fn run(args: &DrillArgs) -> Res<Outcome> {
    let outcome = match rehearse(args) {
        Ok(o) | Err(o) => o,
    };
    Ok(match &args.report {
        Some(path) => write_report(path, outcome),
        None => outcome,
    })
}

fn rehearse(args: &DrillArgs) -> Res<Outcome> {
    let common = &args.common;
    let deadline = deadline(common)?;
    let progress = progress(common);
    let mut settings = Settings::load(common)?.reading();
    if let Some(url) = &args.compare_admin {
        settings.set("config_source", "kong_admin");
        settings.set("kong_admin_url", url.as_str());
    }
    let cfg = settings.parse(None)?;
    if let Some(max) = args.max_age {
        if !max.is_finite() || max < 0.0 {
            return Err(Outcome::new(
                Exit::Usage,
                "--max-age must be a number of seconds",
            ));
        }
    }
    let http = http(&cfg, common)?;
    let storage = Storage::new(&cfg, &http, progress, deadline);
    let (report, mut problems) = check_latest(args, &cfg, &http, &storage, deadline)?;
    let report = if args.sample > 0 {
        check_history(args, &cfg, &http, &storage, report, &mut problems)?
    } else {
        report
    };
    Ok(finish(report, problems))
}

/// The latest export: downloaded, its age, validated as an import does, compared with a live
/// Admin API (`--compare-admin`), applied to a scratch node (`--apply-to`).
fn check_latest(
    args: &DrillArgs,
    cfg: &Config,
    http: &Http,
    storage: &Storage,
    deadline: Instant,
) -> Res<(Outcome, Problems)> {
    let common = &args.common;
    let key = cfg.config_key();
    let where_ = storage.describe(&key);
    let object = storage.get(&key, "there is no backup to restore")?;

    let size = object.body.len();
    let sha = sha256_hex(&object.body);
    let verified = object.meta.sha256_hex.as_ref().map(|m| *m == sha);
    let uploader = object
        .meta
        .uploader
        .clone()
        .unwrap_or_else(|| "unknown".into());
    let mut report = Outcome::ok("")
        .line(format!("object    {where_}"))
        .line(format!(
            "size      {size} bytes, sha256 {sha} ({})",
            match verified {
                Some(true) => "matches its config-sha256 metadata",
                Some(false) => "DOES NOT match its config-sha256 metadata",
                None => "no config-sha256 metadata",
            }
        ))
        .field("object", where_.as_str())
        .field("bytes", size)
        .field("sha256", sha.as_str())
        .field("sha256_verified", verified)
        .field("uploader", uploader.as_str())
        .field("gateway_version", version_of_key(&key));
    let mut problems: Problems = Vec::new();
    let now = now_ms();
    match object.applied_at() {
        Some((t, from)) => {
            let age_ms = now.saturating_sub(t);
            report = report
                .line(format!(
                    "age       {} (since {}, from {from})",
                    age(age_ms),
                    rfc3339(t)
                ))
                .field("age_seconds", age_ms / 1000)
                .field("age_from", from)
                .field("applied_at", rfc3339(t));
            if let Some(max) = args.max_age {
                if age_ms as f64 > max * 1000.0 {
                    problems.push((
                        Exit::Stale,
                        format!(
                            "stale: the export is {} old (--max-age {max} s)",
                            age(age_ms)
                        ),
                    ));
                }
            }
        }
        None => {
            report =
                report.line("age       unknown (no config-applied-at metadata, no Last-Modified)");
            if args.max_age.is_some() {
                problems.push((Exit::Stale, "stale: the export's age is unknown".into()));
            }
        }
    }
    report = report.line(format!("uploader  {uploader}"));
    // Sealed exports: verified and decrypted before anything parses them.
    let sealed = object.meta.seal.describe();
    report = report
        .line(format!("sealed    {sealed}"))
        .field("sealed", sealed.as_str());
    let latest = Picked {
        key: key.clone(),
        entry: None,
    };
    let object = match open_export(cfg, &latest, object, args.max_bytes) {
        Ok(o) => o,
        Err(why) => return Ok((report, vec![(Exit::Invalid, format!("invalid: {why}"))])),
    };
    // Valid JSON now (the core's check): the tree is only for the report and the comparison.
    let doc: Value = serde_json::from_slice(&object.body).unwrap_or(Value::Null);
    let format_version = doc
        .get("_format_version")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let backup = entity_ids(&doc);
    report = report
        .line(format!(
            "version   gateway {}, _format_version {format_version}",
            version_of_key(&key)
        ))
        .line(format!("entities  {}", counts_line(&backup)))
        .field("format_version", format_version)
        .field("entities", counts_json(&backup));

    if let SourceConfig::KongAdmin(admin) = &cfg.source {
        let url = admin.url.to_string();
        let live = read_admin(admin.clone(), http, deadline)?;
        let live_ids = live
            .as_deref()
            .map(|doc| entity_ids(&serde_json::from_slice(doc).unwrap_or(Value::Null)))
            .unwrap_or_default();
        let diff = compare(&backup, &live_ids);
        if diff.is_empty() {
            report = report.line(format!(
                "compare   {url}: the same {} entities in {} types",
                backup.values().map(BTreeSet::len).sum::<usize>(),
                backup.values().filter(|ids| !ids.is_empty()).count()
            ));
        } else {
            let note = if live.is_some() {
                ""
            } else {
                " (the node has no configuration)"
            };
            report = report.line(format!("compare   {url}: differs{note}"));
            for (kind, (missing, extra)) in &diff {
                report = report.line(format!(
                    "          {kind}: {} not in the backup{}, {} only in the backup{}",
                    missing.len(),
                    sample(missing),
                    extra.len(),
                    sample(extra)
                ));
            }
            let summary = diff
                .iter()
                .map(|(kind, (missing, extra))| {
                    format!("{kind} -{} +{}", missing.len(), extra.len())
                })
                .collect::<Vec<_>>()
                .join(", ");
            problems.push((
                Exit::Different,
                format!(
                    "different: the backup differs from {url} (live -missing +extra: {summary})"
                ),
            ));
        }
        let differences: Map<String, Value> = diff
            .iter()
            .map(|(kind, (missing, extra))| {
                (
                    kind.clone(),
                    json!({"not_in_backup": missing, "only_in_backup": extra}),
                )
            })
            .collect();
        report = report.field(
            "compare",
            json!({"admin_url": url, "live_has_configuration": live.is_some(),
                   "same": diff.is_empty(), "differences": differences}),
        );
    }
    if let Some(url) = &args.apply_to {
        let (line, problem) = apply_to(common, url, &object.body, http)?;
        report = report.line(line.clone()).field("apply", line);
        problems.extend(problem);
    }
    Ok((report, problems))
}

/// `--sample N`: that many history exports (docs/history.md), spread evenly from the oldest to
/// the newest, each downloaded, checked as an import would (`open_export`: its name's digest,
/// its seal, validation) and applied to `--apply-to`. A bad one is exit 22; none at all, 11.
fn check_history(
    args: &DrillArgs,
    cfg: &Config,
    http: &Http,
    storage: &Storage,
    mut report: Outcome,
    problems: &mut Problems,
) -> Res<Outcome> {
    let where_ = storage.describe(&cfg.history_prefix());
    let listed = list_history(storage, cfg)?;
    let chosen = sample_indices(listed.len(), args.sample);
    report = report.line(format!(
        "history   {} export(s) under {where_}, {} checked (--sample {})",
        listed.len(),
        chosen.len(),
        args.sample
    ));
    if listed.is_empty() {
        problems.push((
            Exit::Nothing,
            format!(
                "nothing: no history under {where_} (--sample {}; docs/history.md)",
                args.sample
            ),
        ));
    }
    let mut sampled = Vec::new();
    for i in chosen {
        let entry = &listed[i].entry;
        let id = entry.version_id();
        let picked = Picked {
            key: entry.key.clone(),
            entry: Some(entry.clone()),
        };
        let object = match storage.get(&entry.key, "pruned since the listing") {
            Ok(o) => o,
            // Pruned between the listing and the download: not a fault of the backup.
            Err(o) if o.exit == Exit::Nothing => {
                report = report.line(format!("  {id}: gone (pruned since the listing)"));
                sampled.push(json!({"version_id": id, "exists": false}));
                continue;
            }
            Err(o) => return Err(o),
        };
        let stored_sha = sha256_hex(&object.body);
        let uploader = object.meta.uploader.clone();
        let sealed = object.meta.seal.describe();
        let mut item = json!({
            "version_id": id,
            "object": storage.describe(&entry.key),
            "time": utc_seconds(entry.uploaded_at_ms),
            "bytes": object.body.len(),
            "sha256": stored_sha,
            "uploader": uploader,
            "sealed": sealed,
            "exists": true,
        });
        match open_export(cfg, &picked, object, args.max_bytes) {
            Err(why) => {
                report = report.line(format!("  {id}: INVALID: {why}"));
                item["valid"] = json!(false);
                item["problem"] = json!(why);
                problems.push((
                    Exit::HistoryInvalid,
                    format!("invalid: history {id}: {why}"),
                ));
            }
            Ok(object) => {
                let doc: Value = serde_json::from_slice(&object.body).unwrap_or(Value::Null);
                let ids = entity_ids(&doc);
                let mut line = format!(
                    "  {id}: valid, {} bytes, {}, uploaded by {}",
                    object.body.len(),
                    counts_line(&ids),
                    uploader.as_deref().unwrap_or("unknown")
                );
                item["valid"] = json!(true);
                item["entities"] = counts_json(&ids);
                if let Some(url) = &args.apply_to {
                    let (applied, problem) = apply_to(&args.common, url, &object.body, http)?;
                    line.push_str(&format!("; {}", applied.trim_start_matches("apply     ")));
                    item["apply"] = json!(applied);
                    if let Some((exit, why)) = problem {
                        // Kong refusing a history export is that export's fault (22); an
                        // unreachable node stays 14.
                        let exit = if exit == Exit::Invalid {
                            Exit::HistoryInvalid
                        } else {
                            exit
                        };
                        item["problem"] = json!(why);
                        problems.push((exit, format!("history {id}: {why}")));
                    }
                }
                report = report.line(line);
            }
        }
        sampled.push(item);
    }
    Ok(report.field(
        "history",
        json!({"prefix": where_, "count": listed.len(), "sample": args.sample, "sampled": sampled}),
    ))
}

/// `n` of `len` entries listed newest first, spread evenly from the oldest (always included) to
/// the newest; all of them when `n >= len`. Indices into the newest-first list, oldest first.
fn sample_indices(len: usize, n: usize) -> Vec<usize> {
    let n = n.min(len);
    let mut out: Vec<usize> = (0..n).map(|i| len - 1 - i * len / n).collect();
    out.dedup();
    out
}

/// `--report FILE`: the `--json` object, written atomically; a report that cannot be written
/// fails a passing drill (exit 1): a CronJob must not read an old report as today's.
fn write_report(path: &Path, outcome: Outcome) -> Outcome {
    let text = format!("{}\n", outcome.to_json("drill"));
    match write_atomically(path, text.as_bytes(), 0o644) {
        Ok(()) => outcome,
        Err(e) => {
            let why = format!("cannot write the report {}: {e}", path.display());
            let mut outcome = outcome;
            if outcome.exit == Exit::Ok {
                outcome.exit = Exit::Local;
                outcome.message = why;
            } else {
                outcome.message = format!("{}; {why}", outcome.message);
            }
            outcome
        }
    }
}

/// `--apply-to`: the backup posted as is to a scratch node, as a restore would load it.
fn apply_to(
    common: &crate::args::Common,
    url: &str,
    body: &[u8],
    http: &Http,
) -> Res<(String, Option<(Exit, String)>)> {
    // The Admin API's settings (URL, token) as the filter parses them.
    let mut settings = Settings::load(common)?.reading();
    settings.set("config_source", "kong_admin");
    settings.set("kong_admin_url", url);
    let SourceConfig::KongAdmin(admin) = settings.parse(None)?.source else {
        return Err(Outcome::new(
            Exit::Usage,
            "--apply-to needs an Admin API URL",
        ));
    };
    let request = config_post_request(&admin, body.to_vec());
    Ok(match http.send(&request) {
        Ok(resp) if (200..=299).contains(&resp.status) => (
            format!("apply     {url}: loaded (HTTP {})", resp.status),
            None,
        ),
        Ok(resp) if resp.status == 400 => (
            format!("apply     {url}: refused"),
            Some((
                Exit::Invalid,
                format!(
                    "invalid: {url} refused the backup: {}",
                    flattened_errors(&resp.body)
                ),
            )),
        ),
        Ok(resp) => (
            format!("apply     {url}: HTTP {}", resp.status),
            Some((
                Exit::Source,
                format!("{url} answered POST /config with HTTP {}", resp.status),
            )),
        ),
        Err(e) => (
            format!("apply     {url}: unreachable"),
            Some((Exit::Source, format!("{url}: {e}"))),
        ),
    })
}

/// The report with its verdict: passed, or the first problem's exit code and every reason.
fn finish(report: Outcome, problems: Vec<(Exit, String)>) -> Outcome {
    let reasons: Vec<&str> = problems.iter().map(|(_, r)| r.as_str()).collect();
    let mut report = report.field("problems", reasons.clone());
    match problems.first() {
        None => {
            report.message = "drill passed: the backup can be restored".into();
        }
        Some((exit, _)) => {
            report.exit = *exit;
            report.message = format!("drill FAILED: {}", reasons.join("; "));
        }
    }
    report
}

/// The live configuration, read by the filter's `kong_admin` source (`None`: the node has none).
fn read_admin(settings: KongAdminSettings, http: &Http, deadline: Instant) -> Res<Option<Vec<u8>>> {
    let url = settings.url.to_string();
    let fail = |why: String| Outcome::new(Exit::Source, format!("reading {url}: {why}"));
    let mut admin = KongAdmin::new(settings);
    loop {
        // A page is written into the flat form a slice per step between requests.
        let result = match admin.step(now_ms()) {
            PollResult::Unchanged => match admin.poll(now_ms()) {
                Some(request) => {
                    let resp = http.send(&request).map_err(&fail)?;
                    admin.on_response(resp, now_ms())
                }
                None if admin.busy() => PollResult::Unchanged,
                None => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    PollResult::Unchanged
                }
            },
            other => other,
        };
        match result {
            PollResult::Fetched(doc) => return Ok(Some(doc)),
            PollResult::Failed(why) => return Err(fail(why)),
            PollResult::Note(note)
                if note.contains("no configuration") || note.contains("no entities") =>
            {
                return Ok(None)
            }
            PollResult::Note(_) | PollResult::Unchanged => {}
        }
        if Instant::now() >= deadline {
            return Err(fail("no consistent configuration before --timeout".into()));
        }
    }
}

/// Entity ids per entity type (the arrays of a declarative configuration; `_` keys and
/// `workspaces`, which the flat form read from an Admin API does not carry, left out). An
/// entity without an id gets a placeholder that matches nothing.
fn entity_ids(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let Some(obj) = doc.as_object() else {
        return BTreeMap::new();
    };
    obj.iter()
        .filter(|(k, _)| !k.starts_with('_') && k.as_str() != "workspaces")
        .filter_map(|(k, v)| Some((k, v.as_array()?)))
        .map(|(kind, list)| {
            let ids = list
                .iter()
                .enumerate()
                .map(|(i, e)| match e.get("id").and_then(Value::as_str) {
                    Some(id) => id.to_string(),
                    None => format!("(no id: entry {i})"),
                })
                .collect();
            (kind.clone(), ids)
        })
        .collect()
}

type Diff = BTreeMap<String, (Vec<String>, Vec<String>)>;

/// Per entity type: ids live but not in the backup, ids in the backup but not live.
fn compare(
    backup: &BTreeMap<String, BTreeSet<String>>,
    live: &BTreeMap<String, BTreeSet<String>>,
) -> Diff {
    let empty = BTreeSet::new();
    let kinds: BTreeSet<&String> = backup.keys().chain(live.keys()).collect();
    kinds
        .into_iter()
        .filter_map(|kind| {
            let b = backup.get(kind).unwrap_or(&empty);
            let l = live.get(kind).unwrap_or(&empty);
            let missing: Vec<String> = l.difference(b).cloned().collect();
            let extra: Vec<String> = b.difference(l).cloned().collect();
            (!missing.is_empty() || !extra.is_empty()).then(|| (kind.clone(), (missing, extra)))
        })
        .collect()
}

fn sample(ids: &[String]) -> String {
    if ids.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = ids.iter().take(SHOWN_IDS).map(String::as_str).collect();
    let more = if ids.len() > SHOWN_IDS { ", ..." } else { "" };
    format!(" ({}{more})", shown.join(", "))
}

fn counts_line(ids: &BTreeMap<String, BTreeSet<String>>) -> String {
    let parts: Vec<String> = ids
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k} {}", v.len()))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn counts_json(ids: &BTreeMap<String, BTreeSet<String>>) -> Value {
    Value::Object(
        ids.iter()
            .map(|(k, v)| (k.clone(), json!(v.len())))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_are_compared_by_id_per_type() {
        let backup = entity_ids(&json!({
            "_format_version": "3.0", "workspaces": [{"id": "w"}],
            "services": [{"id": "s1"}, {"id": "s2"}], "routes": [{"name": "no-id"}], "plugins": []
        }));
        assert_eq!(counts_line(&backup), "routes 1, services 2");
        let live = entity_ids(&json!({"services": [{"id": "s1"}, {"id": "s3"}], "consumers": []}));
        let diff = compare(&backup, &live);
        assert_eq!(
            diff.get("services"),
            Some(&(vec!["s3".to_string()], vec!["s2".to_string()]))
        );
        assert_eq!(diff.get("routes").map(|d| d.1.len()), Some(1));
        assert!(!diff.contains_key("plugins") && !diff.contains_key("consumers"));
        assert!(compare(&live, &live).is_empty());
        assert_eq!(sample(&[]), "");
        let many: Vec<String> = (0..7).map(|i| i.to_string()).collect();
        assert_eq!(sample(&many), " (0, 1, 2, 3, 4, ...)");
    }

    #[test]
    fn history_samples_spread_from_the_oldest() {
        // Newest first: index 9 is the oldest.
        assert_eq!(sample_indices(10, 1), [9]);
        assert_eq!(sample_indices(10, 2), [9, 4]);
        assert_eq!(sample_indices(10, 3), [9, 6, 3]);
        assert_eq!(sample_indices(3, 5), [2, 1, 0]);
        assert_eq!(sample_indices(0, 3), Vec::<usize>::new());
        assert_eq!(sample_indices(4, 0), Vec::<usize>::new());
    }
}
