//! `history`: one gateway version's history of exports (docs/history.md), newest first — version
//! id, time, size, uploader, sha256, signed/encrypted — from the listing of
//! `<prefix>/<version>/history/` and a HEAD of each object (its metadata: `uploader`,
//! `config-applied-at`, `config-sha256`, the seal's key ids). The history object holding what
//! `config.json` holds is marked: that is the latest export.

use config_bridge::seal::{keys::valid_key_id, SealMeta};
use config_bridge::store::RemoteMeta;
use serde_json::{json, Value};

use super::{deadline, http, progress};
use crate::args::HistoryArgs;
use crate::outcome::{Exit, Outcome, Res};
use crate::pick::list_history;
use crate::settings::Settings;
use crate::storage::Storage;
use crate::time::{age, now_ms, rfc3339, utc_seconds};

pub fn run(args: &HistoryArgs) -> Res<Outcome> {
    let common = &args.common;
    let deadline = deadline(common)?;
    let progress = progress(common);
    let cfg = Settings::load(common)?.reading().parse(None)?;
    let http = http(&cfg, common)?;
    let storage = Storage::new(&cfg, &http, progress, deadline);
    let where_ = storage.describe(&cfg.history_prefix());
    let listed = list_history(&storage, &cfg)?;
    let latest = storage.head(&cfg.config_key())?;
    let latest_sha = latest.as_ref().and_then(|m| m.sha256_hex.clone());
    if listed.is_empty() {
        let why = if latest.is_some() {
            "the latest export exists; history is written by exports made with history on \
             (cluster_fallback_history, docs/history.md)"
        } else {
            "and no export either"
        };
        return Err(
            Outcome::new(Exit::Nothing, format!("no history under {where_} ({why})"))
                .field("history", where_)
                .field("count", 0)
                .field("versions", json!([])),
        );
    }
    let now = now_ms();
    let shown = listed.len().min(args.limit.max(1));
    let mut report = Outcome::ok(format!(
        "{} export(s) in the history{}, newest first",
        listed.len(),
        if shown < listed.len() {
            format!(" ({shown} shown: --limit)")
        } else {
            String::new()
        }
    ))
    .line(where_.as_str());
    let mut versions = Vec::new();
    for item in listed.iter().take(shown) {
        let entry = &item.entry;
        let id = entry.version_id();
        // Pruned between the listing and the HEAD: listed, without metadata.
        let meta = storage.head(&entry.key)?;
        let gone = meta.is_none();
        let meta = meta.unwrap_or_default();
        let is_latest = latest_sha.is_some() && meta.sha256_hex == latest_sha;
        let uploader = meta.uploader.clone().unwrap_or_else(|| "unknown".into());
        let sha = meta.sha256_hex.as_deref().unwrap_or("-");
        let name_matches = meta
            .sha256_hex
            .as_deref()
            .is_none_or(|s| s.starts_with(&entry.sha_prefix));
        report = report.line(format!(
            "  {id}  {}  {:>8} old  {:>9} bytes  {:<20}  sha256 {}  {}{}{}",
            utc_seconds(entry.uploaded_at_ms),
            age(now.saturating_sub(entry.uploaded_at_ms)),
            item.size,
            uploader,
            sha.get(..12).unwrap_or(sha),
            meta.seal.describe(),
            if !name_matches {
                "  (config-sha256 DIFFERS from its name: refused on import)"
            } else if gone {
                "  (gone: pruned since the listing)"
            } else {
                ""
            },
            if is_latest { "  <- latest" } else { "" },
        ));
        versions.push(version_json(item, &meta, &storage, now, is_latest, gone));
    }
    Ok(report
        .field("history", where_)
        .field("latest", storage.describe(&cfg.config_key()))
        .field("latest_sha256", latest_sha)
        .field("count", listed.len())
        .field("shown", shown)
        .field("versions", Value::Array(versions)))
}

/// One version in the `--json` form (native/README.md).
fn version_json(
    item: &crate::pick::Listed,
    meta: &RemoteMeta,
    storage: &Storage,
    now: u64,
    is_latest: bool,
    gone: bool,
) -> Value {
    let entry = &item.entry;
    let SealMeta {
        signature,
        signature_key,
        encryption_key,
    } = &meta.seal;
    let key_id = |k: &Option<String>| k.clone().filter(|id| valid_key_id(id));
    json!({
        "version_id": entry.version_id(),
        "object": storage.describe(&entry.key),
        "time": utc_seconds(entry.uploaded_at_ms),
        "age_seconds": now.saturating_sub(entry.uploaded_at_ms) / 1000,
        "bytes": item.size,
        "uploader": meta.uploader,
        "applied_at": meta.applied_at.map(rfc3339),
        "sha256": meta.sha256_hex,
        "sha256_matches_name": meta.sha256_hex.as_deref().is_none_or(|s| s.starts_with(&entry.sha_prefix)),
        "signed": signature.is_some(),
        "signature_key": if signature.is_some() { key_id(signature_key) } else { None },
        "encrypted": encryption_key.is_some(),
        "encryption_key": key_id(encryption_key),
        "sealed": meta.seal.describe(),
        "latest": is_latest,
        "exists": !gone,
    })
}
