//! `status`: what the storage holds under the prefix — the gateway versions, the export of each
//! (age, size, uploader, sha256, from its listing entry and a HEAD), and the leader-election
//! registrations of each version, read with Kong's rules through the store
//! (`ObjectStore::election_candidate`: S3 key `<prefix>/<version>/election/<register_time>-<node_id>`
//! and LastModified; GCS object `<node_id>` with `timeCreated` and `updated`), fresh while
//! `now <= refreshed + interval + 5 s`, leader the fresh candidate with the smallest register
//! time (ties: the smaller node id).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use config_bridge::history;
use config_bridge::store::election_objects::lua_seconds;
use config_bridge::store::ListEntry;
use serde_json::{json, Value};

use super::{deadline, http, progress};
use crate::args::StatusArgs;
use crate::outcome::{Exit, Outcome, Res};
use crate::settings::Settings;
use crate::storage::Storage;
use crate::time::{age, now_ms, rfc3339, utc_seconds};

/// Kong's grace after the interval before a registration counts as stale.
const ELECTION_GRACE_MS: u64 = 5_000;

/// One registration under `election/`.
#[derive(Clone, Debug, PartialEq)]
struct Candidate {
    /// The first registration, ms since the epoch.
    register_time_ms: u64,
    node_id: String,
    refreshed_ms: u64,
    fresh: bool,
}

#[derive(Default)]
struct Version {
    export: Option<ListEntry>,
    candidates: Vec<Candidate>,
    /// History objects (docs/history.md): how many, and the newest one's time.
    history: usize,
    newest_history_ms: Option<u64>,
}

pub fn run(args: &StatusArgs) -> Res<Outcome> {
    let common = &args.common;
    let deadline = deadline(common)?;
    let progress = progress(common);
    let mut settings = Settings::load(common)?.reading();
    // Every version is listed: the core wants a gateway version for its key template only.
    if std::env::var_os("CONFIG_BRIDGE_GATEWAY_VERSION").is_none() {
        settings.set_default("gateway_version", "-");
    }
    let cfg = settings.parse(None)?;
    let http = http(&cfg, common)?;
    let storage = Storage::new(&cfg, &http, progress, deadline);
    let location = &cfg.storage.location;
    let prefix = if location.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", location.prefix)
    };
    let root = storage.describe(&prefix);
    let now = now_ms();
    let interval_ms = args.election_interval.saturating_mul(1000);

    let mut versions: BTreeMap<String, Version> = BTreeMap::new();
    let mut other = 0usize;
    let listing = storage.list(&prefix).map_err(|mut o| {
        // The election lists the same prefix: a refusal here is one for every exporting node
        // with these credentials (they lead blind and log an error: docs/election.md).
        if o.message.contains("HTTP 403") || o.message.contains("HTTP 401") {
            o = o
                .line("the election cannot complete with these credentials either: it needs s3:ListBucket (GCS: storage.objects.list) on the prefix")
                .field("election", "listing refused");
        }
        o
    })?;
    for entry in listing {
        let rest = entry
            .key
            .get(prefix.len()..)
            .unwrap_or_default()
            .to_string();
        match rest.split_once('/') {
            Some((version, "config.json")) => {
                versions.entry(version.to_string()).or_default().export = Some(entry);
            }
            Some((version, name))
                if name.starts_with("history/") && !name["history/".len()..].contains('/') =>
            {
                match history::parse_history_key(&entry.key) {
                    Some(h) => {
                        let v = versions.entry(version.to_string()).or_default();
                        v.history += 1;
                        v.newest_history_ms = v.newest_history_ms.max(Some(h.uploaded_at_ms));
                    }
                    None => other += 1,
                }
            }
            Some((version, name)) if name.starts_with("election/") => {
                let election_prefix = format!("{prefix}{version}/election/");
                match storage
                    .store
                    .borrow()
                    .election_candidate(&election_prefix, &entry)
                {
                    Ok(c) => {
                        let fresh = now <= c.refreshed_ms + interval_ms + ELECTION_GRACE_MS;
                        versions
                            .entry(version.to_string())
                            .or_default()
                            .candidates
                            .push(Candidate {
                                register_time_ms: c.register_time_ms,
                                node_id: c.node_id,
                                refreshed_ms: c.refreshed_ms,
                                fresh,
                            });
                    }
                    Err(why) => {
                        progress.debug(&format!("not an election registration: {why}"));
                        other += 1
                    }
                }
            }
            _ => other += 1,
        }
    }
    if versions.is_empty() {
        return Ok(Outcome::new(
            Exit::Nothing,
            format!("nothing under {root} (no exports, no election registrations)"),
        )
        .field("storage", root)
        .field("versions", json!([])));
    }

    let mut order: Vec<&String> = versions.keys().collect();
    order.sort_by(|a, b| version_order(b, a));
    let mut report = Outcome::ok(format!(
        "{} gateway version(s) under {root}{}",
        versions.len(),
        if other > 0 {
            format!(", {other} other object(s)")
        } else {
            String::new()
        }
    ))
    .line(root.as_str());
    let mut out = Vec::new();
    for name in order {
        let v = &versions[name];
        let mut item = json!({"version": name});
        match &v.export {
            Some(entry) => {
                let meta = storage.head(&entry.key)?;
                let applied = meta.as_ref().and_then(|m| m.applied_at);
                let since = applied.or(entry.modified_ms);
                let uploader = meta
                    .as_ref()
                    .and_then(|m| m.uploader.clone())
                    .unwrap_or_else(|| "unknown".into());
                let sha = meta.as_ref().and_then(|m| m.sha256_hex.clone());
                let sealed = meta.as_ref().map(|m| m.seal.describe()).unwrap_or_default();
                report = report.line(format!(
                    "  {name}: {} bytes, {}, uploaded by {uploader}, sha256 {}, {sealed}",
                    entry.size,
                    since
                        .map(|t| format!("{} old", age(now.saturating_sub(t))))
                        .unwrap_or_else(|| "age unknown".into()),
                    sha.as_deref()
                        .map(|s| s.get(..12).unwrap_or(s))
                        .unwrap_or("-")
                ));
                item["export"] = json!({
                    "object": storage.describe(&entry.key),
                    "bytes": entry.size,
                    "last_modified": entry.modified_ms.map(rfc3339),
                    "applied_at": applied.map(rfc3339),
                    "age_seconds": since.map(|t| now.saturating_sub(t) / 1000),
                    "uploader": meta.as_ref().and_then(|m| m.uploader.clone()),
                    "sha256": sha,
                    "sealed": sealed,
                    "etag": meta.and_then(|m| m.version),
                });
            }
            None => {
                report = report.line(format!("  {name}: no export"));
                item["export"] = Value::Null;
            }
        }
        if let Some(newest) = v.newest_history_ms {
            report = report.line(format!(
                "    history: {} export(s), the newest {} old (config-bridge history)",
                v.history,
                age(now.saturating_sub(newest))
            ));
            item["history"] = json!({"count": v.history, "newest": utc_seconds(newest)});
        }
        if !v.candidates.is_empty() {
            let leader = leader(&v.candidates);
            report = report.line(format!(
                "    election (interval {} s): {} candidate(s), leader {}",
                args.election_interval,
                v.candidates.len(),
                leader
                    .map(|c| c.node_id.as_str())
                    .unwrap_or("none (no fresh candidate)")
            ));
            let mut sorted: Vec<&Candidate> = v.candidates.iter().collect();
            sorted.sort_by(|a, b| by_seniority(a, b));
            for c in &sorted {
                let ago = age(now.saturating_sub(c.refreshed_ms));
                report = report.line(format!(
                    "      {:<14} {:<24} {}{}",
                    lua_seconds(c.register_time_ms),
                    c.node_id,
                    if c.fresh {
                        format!("fresh (refreshed {ago} ago)")
                    } else {
                        format!("stale (refreshed {ago} ago)")
                    },
                    if leader == Some(*c) {
                        "  <- leader"
                    } else {
                        ""
                    }
                ));
            }
            item["election"] = json!({
                "interval_seconds": args.election_interval,
                "leader": leader.map(|c| c.node_id.clone()),
                "candidates": sorted.iter().map(|c| json!({
                    "node_id": c.node_id,
                    "register_time": lua_seconds(c.register_time_ms),
                    "refreshed": rfc3339(c.refreshed_ms),
                    "fresh": c.fresh,
                })).collect::<Vec<_>>(),
            });
        }
        out.push(item);
    }
    Ok(report
        .field("storage", root)
        .field("versions", Value::Array(out))
        .field("other_objects", other))
}

/// Smallest register time first, ties by the smaller node id.
fn by_seniority(a: &Candidate, b: &Candidate) -> Ordering {
    a.register_time_ms
        .cmp(&b.register_time_ms)
        .then_with(|| a.node_id.cmp(&b.node_id))
}

fn leader(candidates: &[Candidate]) -> Option<&Candidate> {
    candidates
        .iter()
        .filter(|c| c.fresh)
        .min_by(|a, b| by_seniority(a, b))
}

/// `3.10.0` after `3.9.1`: numeric where both parts are numbers.
fn version_order(a: &str, b: &str) -> Ordering {
    let mut x = a.split(['.', '-']);
    let mut y = b.split(['.', '-']);
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => {
                let o = match (p.parse::<u64>(), q.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    _ => p.cmp(q),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(t: u64, id: &str, fresh: bool) -> Candidate {
        Candidate {
            register_time_ms: t,
            node_id: id.into(),
            refreshed_ms: 0,
            fresh,
        }
    }

    #[test]
    fn the_leader_is_the_oldest_fresh_candidate_ties_by_node_id() {
        let cs = [
            cand(10_000, "b", true),
            cand(10_000, "a", true),
            cand(5_000, "old-but-stale", false),
            cand(20_000, "young", true),
        ];
        assert_eq!(leader(&cs).map(|c| c.node_id.as_str()), Some("a"));
        assert_eq!(leader(&cs[2..3]), None);
    }

    #[test]
    fn versions_sort_numerically() {
        let mut v = vec!["3.9.1", "3.10.0", "3.4.2.0", "dev"];
        v.sort_by(|a, b| version_order(a, b));
        assert_eq!(v, ["3.4.2.0", "3.9.1", "3.10.0", "dev"]);
    }
}
