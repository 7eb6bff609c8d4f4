//! The history of exports (docs/history.md): how history objects are named, which of them
//! retention prunes, and which one a restore picks. Pure: no I/O, no clock (times are
//! arguments); the filter's history sub-machine (`engine/history.rs`) and the native tool's
//! `history` / `import --version` / `import --before` share it.
//!
//! Layout: every export also lands, unchanged and with the same metadata, at
//! `<prefix>/<version>/history/<YYYYMMDDTHHMMSSZ>-<first 16 hex digits of its SHA-256>.json`,
//! next to the latest object `<prefix>/<version>/config.json` that Kong Enterprise reads. The
//! timestamp is the UTC time of the export (whole seconds), so keys sort by time, and the listing
//! stores return (lexicographic) is oldest first.

use crate::store::timestamp::{basic_utc, basic_utc_ms};

/// The folder of history objects, next to `config.json`.
pub const HISTORY_DIR: &str = "history";
/// Hex digits of the SHA-256 in a key: 64 bits, enough to tell exports apart.
pub const SHA_PREFIX_LEN: usize = 16;
const EXTENSION: &str = ".json";
/// `YYYYMMDDTHHMMSSZ`.
const TIMESTAMP_LEN: usize = 16;
/// A version id: `<timestamp>-<sha prefix>`.
pub const VERSION_ID_LEN: usize = TIMESTAMP_LEN + 1 + SHA_PREFIX_LEN;

/// `<prefix>/<version>/history/` (no leading slash; the storage prefix may be empty), the prefix
/// to list.
pub fn history_prefix(storage_prefix: &str, gateway_version: &str) -> String {
    let parts = [storage_prefix, gateway_version, HISTORY_DIR]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>();
    let mut p = crate::text::join(&parts, "/");
    p.push('/');
    p
}

/// The key of the history object of an export stored at `uploaded_at_ms` with content digest
/// `sha256_hex` (64 lowercase hex digits, the `config-sha256` metadata), under `history_prefix`.
/// `None` when the digest is not hex.
pub fn history_key(history_prefix: &str, uploaded_at_ms: u64, sha256_hex: &str) -> Option<String> {
    let sha = sha256_hex.get(..SHA_PREFIX_LEN)?;
    if !is_lower_hex(sha) {
        return None;
    }
    Some(format!(
        "{history_prefix}{}-{sha}{EXTENSION}",
        basic_utc(uploaded_at_ms)
    ))
}

/// One history object, as its key names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub key: String,
    /// The export's time (whole seconds), ms since the epoch.
    pub uploaded_at_ms: u64,
    /// The first 16 hex digits of the stored bytes' SHA-256.
    pub sha_prefix: String,
}

impl HistoryEntry {
    /// `<timestamp>-<sha prefix>`: what the native tool shows and `--version` takes.
    pub fn version_id(&self) -> &str {
        let file = crate::text::rsplit_once_ascii(&self.key, b'/').map_or(&*self.key, |(_, f)| f);
        file.strip_suffix(EXTENSION).unwrap_or(file)
    }
}

/// A key as a history object, strictly: `.../history/<YYYYMMDDTHHMMSSZ>-<16 lowercase hex>.json`
/// (a real UTC instant); anything else (`config.json`, election objects, a stray upload, a
/// deeper folder) is `None` and never touched by pruning.
pub fn parse_history_key(key: &str) -> Option<HistoryEntry> {
    let (dir, file) = crate::text::rsplit_once_ascii(key, b'/').unwrap_or(("", key));
    if dir != HISTORY_DIR && !dir.ends_with("/history") {
        return None;
    }
    let (uploaded_at_ms, sha_prefix) = parse_version_id(file.strip_suffix(EXTENSION)?)?;
    Some(HistoryEntry {
        key: key.to_string(),
        uploaded_at_ms,
        sha_prefix,
    })
}

/// A full version id `<YYYYMMDDTHHMMSSZ>-<16 lowercase hex>` → (time in ms, sha prefix).
pub fn parse_version_id(id: &str) -> Option<(u64, String)> {
    if id.len() != VERSION_ID_LEN {
        return None;
    }
    let (time, sha) = id.split_once('-')?;
    let ms = basic_utc_ms(time)?;
    (sha.len() == SHA_PREFIX_LEN && is_lower_hex(sha)).then(|| (ms, sha.to_string()))
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Newest first: by time, then by key (two exports in one second: the order is the keys').
fn newest_first(a: &HistoryEntry, b: &HistoryEntry) -> std::cmp::Ordering {
    (b.uploaded_at_ms, &b.key).cmp(&(a.uploaded_at_ms, &a.key))
}

/// The newest entry (the one retention always keeps, the one a new export is compared with).
pub fn newest(entries: &[HistoryEntry]) -> Option<&HistoryEntry> {
    entries.iter().min_by(|a, b| newest_first(a, b))
}

/// Retention: the keys to delete now, oldest first.
///
/// Ranked newest first (rank 0 is the newest), an entry is *within retention* when its rank is
/// below `keep_count` and its age (`now_ms` − its time; an entry from the future has age 0) is
/// at most `keep_max_age_ms` (0: no age limit). Everything else is pruned, except rank 0, which
/// is never pruned (the newest export survives any age limit). So once a plan has been carried
/// out, at most `keep_count` entries remain; nothing within retention is ever in a plan; and at
/// most `max_deletes` keys are returned (the oldest first: an interrupted plan leaves the newest
/// ones), the next call continuing. `keep_count` 0 counts as 1.
pub fn prune_plan(
    entries: &[HistoryEntry],
    now_ms: u64,
    keep_count: usize,
    keep_max_age_ms: u64,
    max_deletes: usize,
) -> Vec<String> {
    prune_plan_partial(entries, 0, now_ms, keep_count, keep_max_age_ms, max_deletes)
}

/// `prune_plan` on a listing known to miss at least `unseen_newer` entries newer than all of
/// `entries` (a listing cut after its page limit: stores list oldest first). Their ranks count:
/// nothing that could be within retention is planned.
pub fn prune_plan_partial(
    entries: &[HistoryEntry],
    unseen_newer: usize,
    now_ms: u64,
    keep_count: usize,
    keep_max_age_ms: u64,
    max_deletes: usize,
) -> Vec<String> {
    let mut ranked: Vec<&HistoryEntry> = entries.iter().collect();
    crate::sort::sort_by(&mut ranked, |a, b| newest_first(a, b));
    // The same key listed twice (a store repeating a page) is one object.
    ranked.dedup_by(|a, b| a.key == b.key);
    let keep_count = keep_count.max(1);
    let mut plan: Vec<String> = ranked
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            let rank = unseen_newer.saturating_add(*i);
            let age = now_ms.saturating_sub(e.uploaded_at_ms);
            let young = keep_max_age_ms == 0 || age <= keep_max_age_ms;
            rank != 0 && !(rank < keep_count && young)
        })
        .map(|(_, e)| e.key.clone())
        .collect();
    // Oldest first.
    plan.reverse();
    plan.truncate(max_deletes);
    plan
}

/// Which history object a restore wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The newest history object.
    Latest,
    /// A version id (`<timestamp>-<sha prefix>`) or a prefix of one matching exactly one entry.
    Version(String),
    /// The newest export made at or before this time (ms since the epoch): "what we had then".
    Before(u64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectError {
    /// No entry matches (an empty history, a time before the oldest entry, an unknown id).
    NotFound,
    /// A version prefix matching this many entries.
    Ambiguous(usize),
    /// An empty version id, or one with characters no version id has.
    Invalid,
}

impl std::fmt::Display for SelectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SelectError::NotFound => write!(f, "no history object matches"),
            SelectError::Ambiguous(n) => {
                write!(f, "{n} history objects match; give more of the version id")
            }
            SelectError::Invalid => write!(
                f,
                "a version id looks like 20261206T140000Z-0123456789abcdef (or a prefix of one)"
            ),
        }
    }
}

/// The entry a selector picks, or why none.
pub fn resolve<'a>(
    entries: &'a [HistoryEntry],
    selector: &Selector,
) -> Result<&'a HistoryEntry, SelectError> {
    match selector {
        Selector::Latest => newest(entries).ok_or(SelectError::NotFound),
        Selector::Before(ms) => entries
            .iter()
            .filter(|e| e.uploaded_at_ms <= *ms)
            .min_by(|a, b| newest_first(a, b))
            .ok_or(SelectError::NotFound),
        Selector::Version(id) => {
            let id = id.trim();
            let valid = |b: u8| b.is_ascii_digit() || matches!(b, b'T' | b'Z' | b'-' | b'a'..=b'f');
            if id.is_empty() || id.len() > VERSION_ID_LEN || !id.bytes().all(valid) {
                return Err(SelectError::Invalid);
            }
            let mut matching: Vec<&HistoryEntry> = entries
                .iter()
                .filter(|e| e.version_id().starts_with(id))
                .collect();
            matching.dedup_by(|a, b| a.key == b.key);
            match matching.as_slice() {
                [] => Err(SelectError::NotFound),
                [one] => Ok(one),
                many => Err(SelectError::Ambiguous(many.len())),
            }
        }
    }
}

/// `resolve`, without the reason.
pub fn select<'a>(entries: &'a [HistoryEntry], selector: &Selector) -> Option<&'a HistoryEntry> {
    resolve(entries, selector).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    /// 2026-12-06T14:00:00Z.
    const T: u64 = 1_796_565_600_000;
    const MIN: u64 = 60_000;
    const DAY: u64 = 86_400_000;

    fn entry(at: u64, sha: &str) -> HistoryEntry {
        let key = history_key("p/3.9/history/", at, sha).unwrap();
        parse_history_key(&key).unwrap()
    }

    #[test]
    fn keys_name_time_and_digest_and_parse_back() {
        assert_eq!(history_prefix("kong/dp", "3.9.1"), "kong/dp/3.9.1/history/");
        assert_eq!(history_prefix("", "3.9.1"), "3.9.1/history/");
        let key = history_key("kong/dp/3.9.1/history/", T + 999, SHA).unwrap();
        assert_eq!(
            key,
            "kong/dp/3.9.1/history/20261206T140000Z-0123456789abcdef.json"
        );
        let e = parse_history_key(&key).unwrap();
        assert_eq!(e.uploaded_at_ms, T, "whole seconds");
        assert_eq!(e.sha_prefix, "0123456789abcdef");
        assert_eq!(e.version_id(), "20261206T140000Z-0123456789abcdef");
        assert_eq!(
            parse_version_id(e.version_id()),
            Some((T, e.sha_prefix.clone()))
        );
        let top = parse_history_key("history/20261206T140000Z-0123456789abcdef.json").unwrap();
        assert_eq!(top.uploaded_at_ms, T);
        assert_eq!(history_key("h/", T, "0123"), None, "short digest");
        assert_eq!(
            history_key("h/", T, &SHA.to_uppercase()),
            None,
            "not lowercase hex"
        );
    }

    #[test]
    fn parsing_is_strict() {
        for bad in [
            "kong/3.9/config.json",
            "kong/3.9/election/1796565600000-node-1",
            "kong/3.9/history/",
            "kong/3.9/history/20261206T140000Z-0123456789abcdef.json.tmp",
            "kong/3.9/history/20261206T140000Z-0123456789abcdef",
            "kong/3.9/history/20261206T140000Z-0123456789ABCDEF.json",
            "kong/3.9/history/20261206T140000Z-0123456789abcde.json",
            "kong/3.9/history/20261206T140000Z-0123456789abcdef0.json",
            "kong/3.9/history/20261206T140000Z_0123456789abcdef.json",
            "kong/3.9/history/20261306T140000Z-0123456789abcdef.json",
            "kong/3.9/history/20260431T140000Z-0123456789abcdef.json",
            "kong/3.9/history/20261206T140060Z-0123456789abcdef.json",
            "kong/3.9/history/x/20261206T140000Z-0123456789abcdef.json",
            "kong/3.9/myhistory/20261206T140000Z-0123456789abcdef.json",
            "kong/3.9/20261206T140000Z-0123456789abcdef.json",
            "kong/3.9/history/20261206T140000Z-0123456789abcdeg.json",
        ] {
            assert_eq!(parse_history_key(bad), None, "{bad}");
        }
        for bad in ["", "20261206T140000Z", "20261206T140000Z-", "x"] {
            assert_eq!(parse_version_id(bad), None, "{bad}");
        }
    }

    fn keys(v: &[&HistoryEntry]) -> Vec<String> {
        v.iter().map(|e| e.key.clone()).collect()
    }

    #[test]
    fn pruning_keeps_the_newest_by_count_and_age_and_deletes_oldest_first() {
        // 10 entries a minute apart, newest at T.
        let entries: Vec<HistoryEntry> = (0..10)
            .map(|i| entry(T - i * MIN, &format!("{i:x}{}", &SHA[1..])))
            .collect();
        let by_age: Vec<&HistoryEntry> = entries.iter().collect();
        // Count: keep 3 → the 7 oldest go, oldest first.
        let plan = prune_plan(&entries, T, 3, 0, 100);
        let mut expected = keys(&by_age[3..]);
        expected.reverse();
        assert_eq!(plan, expected);
        // Bounded: the 2 oldest first.
        assert_eq!(prune_plan(&entries, T, 3, 0, 2), expected[..2].to_vec());
        // Age: keep 50 but only 4 minutes → ranks 5.. go (age of rank 4 = 4 min: kept).
        let plan = prune_plan(&entries, T, 50, 4 * MIN, 100);
        let mut expected = keys(&by_age[5..]);
        expected.reverse();
        assert_eq!(plan, expected);
        // All too old: the newest stays anyway.
        let plan = prune_plan(&entries, T + 30 * DAY, 50, DAY, 100);
        assert_eq!(plan.len(), 9);
        assert!(!plan.contains(&entries[0].key));
        // keep_count 0 counts as 1; an empty history plans nothing.
        assert_eq!(prune_plan(&entries, T, 0, 0, 100).len(), 9);
        assert!(prune_plan(&[], T, 1, 1, 100).is_empty());
        // Order of the input does not matter; duplicates are one object.
        let mut shuffled = entries.clone();
        shuffled.reverse();
        shuffled.push(entries[9].clone());
        assert_eq!(
            prune_plan(&shuffled, T, 3, 0, 100),
            prune_plan(&entries, T, 3, 0, 100)
        );
    }

    #[test]
    fn a_cut_listing_plans_nothing_that_could_be_within_retention() {
        // The oldest 5 of a longer history: with 2 unseen newer ones and keep 4, ranks 2..=6;
        // ranks 2 and 3 (the two newest listed) may be within retention.
        let listed: Vec<HistoryEntry> = (0..5)
            .map(|i| entry(T - (10 + i) * MIN, &format!("{i:x}{}", &SHA[1..])))
            .collect();
        let plan = prune_plan_partial(&listed, 2, T, 4, 0, 100);
        assert_eq!(plan.len(), 3);
        assert!(!plan.contains(&listed[0].key) && !plan.contains(&listed[1].key));
        // Unseen newer: even the newest listed may go (it is not the newest overall).
        let plan = prune_plan_partial(&listed, 7, T, 4, 0, 100);
        assert_eq!(plan.len(), 5);
    }

    /// The properties over random histories: after carrying out plans until none is left, at
    /// most `keep` remain; nothing within retention was ever planned; the newest survives.
    #[test]
    fn pruning_properties_hold_on_random_histories() {
        let mut rng = crate::backoff::Rng::new(7);
        for _ in 0..300 {
            let n = (rng.next_u64() % 40) as usize;
            let mut entries: Vec<HistoryEntry> = (0..n)
                .map(|i| {
                    let at = T - (rng.next_u64() % (10 * DAY));
                    entry(at, &format!("{i:04x}{}", &SHA[4..]))
                })
                .collect();
            let keep = (rng.next_u64() % 10) as usize + 1;
            let max_age = [0, DAY, 3 * DAY][(rng.next_u64() % 3) as usize];
            let max_deletes = (rng.next_u64() % 5) as usize + 1;
            let newest_key = newest(&entries).map(|e| e.key.clone());
            let mut sorted: Vec<HistoryEntry> = entries.clone();
            sorted.sort_by(newest_first);
            let within: Vec<String> = sorted
                .iter()
                .take(keep)
                .filter(|e| max_age == 0 || T - e.uploaded_at_ms <= max_age)
                .map(|e| e.key.clone())
                .collect();
            loop {
                let plan = prune_plan(&entries, T, keep, max_age, max_deletes);
                assert!(plan.len() <= max_deletes);
                if plan.is_empty() {
                    break;
                }
                for k in &plan {
                    assert!(!within.contains(k), "{k} is within retention");
                    assert_ne!(Some(k), newest_key.as_ref());
                }
                entries.retain(|e| !plan.contains(&e.key));
            }
            assert!(entries.len() <= keep, "{} > {keep}", entries.len());
            for k in &within {
                assert!(entries.iter().any(|e| &e.key == k));
            }
            assert_eq!(newest(&entries).map(|e| e.key.clone()), newest_key);
        }
    }

    #[test]
    fn selection_by_latest_version_and_time() {
        let a = entry(T - DAY, SHA);
        let b = entry(T - 60 * MIN, &format!("fedcba9876543210{}", &SHA[16..]));
        let c = entry(T, &format!("ffff000011112222{}", &SHA[16..]));
        let entries = vec![b.clone(), c.clone(), a.clone()];
        assert_eq!(select(&entries, &Selector::Latest), Some(&c));
        assert_eq!(select(&[], &Selector::Latest), None);
        // "What we had yesterday at 14:00" = the newest export at or before it.
        assert_eq!(select(&entries, &Selector::Before(T - DAY)), Some(&a));
        assert_eq!(select(&entries, &Selector::Before(T - 1)), Some(&b));
        assert_eq!(select(&entries, &Selector::Before(T + DAY)), Some(&c));
        assert_eq!(
            resolve(&entries, &Selector::Before(T - DAY - 1)),
            Err(SelectError::NotFound)
        );
        // Versions: full id, unique prefix, ambiguous prefix, unknown, invalid.
        let id = b.version_id().to_string();
        assert_eq!(select(&entries, &Selector::Version(id.clone())), Some(&b));
        assert_eq!(
            select(&entries, &Selector::Version("20261205".into())),
            Some(&a)
        );
        assert_eq!(
            resolve(&entries, &Selector::Version("20261206T".into())),
            Err(SelectError::Ambiguous(2))
        );
        assert_eq!(
            resolve(
                &entries,
                &Selector::Version("20261206T130000Z-fedcba9876543210".into())
            ),
            Ok(&b)
        );
        assert_eq!(
            resolve(&entries, &Selector::Version("20261206T130000Z-0".into())),
            Err(SelectError::NotFound)
        );
        for bad in ["", "../config", "20261206T130000Z-FEDC", &format!("{id}0")] {
            assert_eq!(
                resolve(&entries, &Selector::Version(bad.to_string())),
                Err(SelectError::Invalid),
                "{bad}"
            );
        }
    }
}
