//! Which export a command reads: the latest (`<prefix>/<version>/config.json`, Kong Enterprise's
//! object) or one of the history (docs/history.md) — by version id, by a prefix of one, or the
//! newest made at or before a time. The naming, the listing's filter and the choice are the
//! core's (`config_bridge::history`); this lists the storage and says why nothing matched.

use config_bridge::history::{self, HistoryEntry, SelectError, Selector};
use config_bridge::settings::Config;

use crate::args::PickArgs;
use crate::outcome::{Exit, Outcome, Res};
use crate::storage::Storage;
use crate::time::{parse_time, rfc3339};

/// What the user asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pick {
    Latest,
    /// A full version id or a prefix of one.
    Version(String),
    /// The newest history object made at or before this time (ms since the epoch).
    Before(u64),
}

/// The object a pick names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Picked {
    pub key: String,
    /// The history entry (`None`: the latest object).
    pub entry: Option<HistoryEntry>,
}

impl Picked {
    /// `latest`, or the version id.
    pub fn name(&self) -> &str {
        self.entry
            .as_ref()
            .map(HistoryEntry::version_id)
            .unwrap_or("latest")
    }
}

impl Pick {
    /// `--version-id` / `--before`, else the settings' pin (`cluster_fallback_import_version`),
    /// else the latest.
    pub fn from_args(args: &PickArgs, cfg: &Config) -> Res<Pick> {
        if let Some(id) = &args.version_id {
            return Ok(Pick::Version(id.trim().to_string()));
        }
        if let Some(t) = &args.before {
            let ms =
                parse_time(t).map_err(|e| Outcome::new(Exit::Usage, format!("--before: {e}")))?;
            return Ok(Pick::Before(ms));
        }
        Ok(match &cfg.history.import_version {
            Some(id) => Pick::Version(id.clone()),
            None => Pick::Latest,
        })
    }

    /// A command-line reference (`diff A B`): `latest`, a version id or a prefix of one (8 digits
    /// and `T` first, as `history` lists them), else `None` (a file).
    pub fn from_reference(text: &str) -> Option<Pick> {
        if text == "latest" {
            return Some(Pick::Latest);
        }
        let b = text.as_bytes();
        let looks_like_id = b.len() >= 9
            && b.len() <= history::VERSION_ID_LEN
            && b[..8].iter().all(u8::is_ascii_digit)
            && b[8] == b'T'
            && b.iter()
                .all(|c| c.is_ascii_digit() || matches!(c, b'T' | b'Z' | b'-' | b'a'..=b'f'));
        looks_like_id.then(|| Pick::Version(text.to_string()))
    }
}

/// A history object as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub entry: HistoryEntry,
    pub size: u64,
}

/// The history under `<prefix>/<version>/history/`, newest first: only keys directly under it
/// that are history keys (`history::parse_history_key`).
pub fn list_history(storage: &Storage, cfg: &Config) -> Res<Vec<Listed>> {
    let prefix = cfg.history_prefix();
    let mut listed: Vec<Listed> = storage
        .list(&prefix)?
        .into_iter()
        .filter(|e| {
            e.key
                .strip_prefix(&prefix)
                .is_some_and(|rest| !rest.contains('/'))
        })
        .filter_map(|e| {
            Some(Listed {
                entry: history::parse_history_key(&e.key)?,
                size: e.size,
            })
        })
        .collect();
    listed.sort_by(|a, b| {
        (b.entry.uploaded_at_ms, &b.entry.key).cmp(&(a.entry.uploaded_at_ms, &a.entry.key))
    });
    listed.dedup_by(|a, b| a.entry.key == b.entry.key);
    Ok(listed)
}

/// The object `pick` names. A full version id needs no listing (read-only credentials without
/// `s3:ListBucket` can restore it); a prefix and `--before` list the history.
pub fn resolve(storage: &Storage, cfg: &Config, pick: &Pick) -> Res<Picked> {
    let prefix = cfg.history_prefix();
    let selector = match pick {
        Pick::Latest => {
            return Ok(Picked {
                key: cfg.config_key(),
                entry: None,
            })
        }
        Pick::Version(id) => {
            if history::parse_version_id(id).is_some() {
                let key = format!("{prefix}{id}.json");
                if let Some(entry) = history::parse_history_key(&key) {
                    return Ok(Picked {
                        key,
                        entry: Some(entry),
                    });
                }
            }
            Selector::Version(id.clone())
        }
        Pick::Before(ms) => Selector::Before(*ms),
    };
    let entries: Vec<HistoryEntry> = list_history(storage, cfg)?
        .into_iter()
        .map(|l| l.entry)
        .collect();
    let where_ = storage.describe(&prefix);
    match history::resolve(&entries, &selector) {
        Ok(entry) => Ok(Picked {
            key: entry.key.clone(),
            entry: Some(entry.clone()),
        }),
        Err(SelectError::NotFound) => {
            let what = match pick {
                Pick::Before(ms) => format!("no export at or before {}", rfc3339(*ms)),
                Pick::Version(id) => format!("no export with version id {id}"),
                Pick::Latest => "no export".into(),
            };
            let span = match (entries.last(), entries.first()) {
                (Some(oldest), Some(newest)) => format!(
                    " ({} export(s), from {} to {})",
                    entries.len(),
                    rfc3339(oldest.uploaded_at_ms),
                    rfc3339(newest.uploaded_at_ms)
                ),
                _ => " (it is empty)".into(),
            };
            Err(Outcome::new(
                Exit::Nothing,
                format!("{what} in the history {where_}{span}"),
            )
            .field("history", where_)
            .field("history_count", entries.len()))
        }
        Err(e @ (SelectError::Ambiguous(_) | SelectError::Invalid)) => Err(Outcome::new(
            Exit::Usage,
            format!("version id {}: {e}", shown(pick)),
        )),
    }
}

fn shown(pick: &Pick) -> String {
    match pick {
        Pick::Version(id) => format!("{id:?}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_latest_version_ids_or_files() {
        assert_eq!(Pick::from_reference("latest"), Some(Pick::Latest));
        for id in [
            "20261206T140000Z-0123456789abcdef",
            "20261206T14",
            "20261206T",
        ] {
            assert_eq!(
                Pick::from_reference(id),
                Some(Pick::Version(id.into())),
                "{id}"
            );
        }
        for file in [
            "./latest",
            "kong.json",
            "/tmp/20261206T140000Z-0123456789abcdef.json",
            "20261206",
            "20261206T140000Z-0123456789ABCDEF",
        ] {
            assert_eq!(Pick::from_reference(file), None, "{file}");
        }
    }
}
