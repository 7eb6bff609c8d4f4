//! History settings (docs/history.md): whether every export is also kept as a dated history
//! object, the retention that prunes them, and the import's pin to one of them.

use super::lookup::Lookup;
use super::{err, Fail};

/// The largest `cluster_fallback_history_keep`: a leader lists and ranks the whole history.
const MAX_KEEP: u64 = 1_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistorySettings {
    /// Off: only `config.json` is written, as Kong Enterprise does.
    pub enabled: bool,
    /// At most this many history objects remain after pruning (at least 1).
    pub keep: usize,
    /// Older ones are pruned (0: no age limit); the newest is always kept.
    pub max_age_ms: u64,
    /// `cluster_fallback_import_version`: the import downloads this history object (a full
    /// version id, `history::parse_version_id`) instead of `config.json`.
    pub import_version: Option<String>,
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings {
            enabled: true,
            keep: 50,
            max_age_ms: 30 * 86_400_000,
            import_version: None,
        }
    }
}

pub(super) fn parse_history(l: &Lookup<'_>) -> Result<HistorySettings, Fail> {
    let d = HistorySettings::default();
    let enabled = l.bool(
        "cluster_fallback_history",
        &["CONFIG_BRIDGE_HISTORY"],
        d.enabled,
    )?;
    let keep = l.uint(
        "cluster_fallback_history_keep",
        &["CONFIG_BRIDGE_HISTORY_KEEP"],
        d.keep as u64,
        1,
        MAX_KEEP,
    )?;
    // Ten years at most.
    let max_age_ms = l.seconds_ms(
        "cluster_fallback_history_max_age",
        &["CONFIG_BRIDGE_HISTORY_MAX_AGE"],
        d.max_age_ms / 1000,
        315_360_000,
    )?;
    let import_version = match l.string(
        "cluster_fallback_import_version",
        &["CONFIG_BRIDGE_IMPORT_VERSION"],
    )? {
        None => None,
        Some((id, field)) => {
            let id = id.trim().to_string();
            if crate::history::parse_version_id(&id).is_none() {
                return err(
                    field,
                    "must be a history version id such as 20261206T140000Z-0123456789abcdef (docs/history.md)",
                );
            }
            Some(id)
        }
    };
    Ok(HistorySettings {
        enabled,
        keep: usize::try_from(keep).unwrap_or(1),
        max_age_ms,
        import_version,
    })
}
