//! Which config is newer: this node's, or the one in storage? Decided when the node reads the
//! stored object (a HEAD) and finds other content there, in this order (docs/election.md, "Which
//! config is newer"):
//!
//! 1. the stored config is one this node held before its current one → ours is newer;
//! 2. the stored object superseded ours (`config-supersedes` names our config) → the stored one
//!    is newer;
//! 3. both carry Kong's logical time (the newest `updated_at` of their entities) and they differ
//!    → the later one is newer;
//! 4. otherwise → the first-seen times decide (node clocks).
//!
//! Rule 2 is what keeps a node restarted from a stale cache or bootstrap file from overwriting a
//! newer export: its config was exported once and replaced since. A reload with a new config is
//! not named there and is exported. ("A node still on the config it started with keeps another
//! node's export" cannot tell the two apart: a reload looks like a start to the filter.)

use crate::node_lock::HELD_MAX;
use crate::store::{lineage, RemoteMeta};

/// A stored logical time this far past this node's clock is not believed (a hostile or broken
/// writer must not block every later export).
const LOGICAL_TIME_SLACK_MS: u64 = 3_600_000;

/// What this node knows of the config it is about to export.
#[derive(Debug)]
pub(super) struct Ours<'a> {
    pub hash: &'a str,
    /// Content hashes of the configs the node held, oldest first (`NodeRecord::held`).
    pub held: &'a [String],
    pub updated_at_ms: Option<u64>,
    pub seen_at: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Ours is newer: write it (why, for the log).
    Replace(&'static str),
    /// The stored config stays (why, for the log).
    Keep(&'static str),
}

/// Rules 1–4 above, for a stored object whose content differs from ours.
pub(super) fn decide(ours: &Ours<'_>, stored: &RemoteMeta, now: u64) -> Verdict {
    let before_ours = ours
        .held
        .iter()
        .position(|h| h == ours.hash)
        .map_or(ours.held, |i| ours.held.get(..i).unwrap_or_default());
    if let Some(theirs) = stored.sha256_hex.as_deref() {
        if before_ours.iter().any(|h| h == theirs) {
            return Verdict::Replace("this node held the stored config before its current one");
        }
    }
    if lineage::names(&stored.supersedes, ours.hash) {
        return Verdict::Keep("it superseded this config (config-supersedes)");
    }
    let believable = stored
        .updated_at_ms
        .filter(|&t| t <= now.saturating_add(LOGICAL_TIME_SLACK_MS));
    if let (Some(mine), Some(theirs)) = (ours.updated_at_ms, believable) {
        if mine > theirs {
            return Verdict::Replace("its entities were updated after the stored config's");
        }
        if mine < theirs {
            return Verdict::Keep("the stored config's entities were updated later");
        }
    }
    match stored.applied_at {
        Some(t) if t > ours.seen_at => Verdict::Keep("it was first seen later (node clocks)"),
        _ => Verdict::Replace(
            "it was first seen earlier (node clocks) or by a writer without config-bridge metadata",
        ),
    }
}

/// Records that a root context of this node now holds `hash` (`prev`: what that root context
/// held before). New content goes last; content held before moves last again only when this root
/// context was up to date (a rollback), not when it lags behind another one (workers are
/// reconfigured one after the other).
pub(super) fn note_held(held: &mut Vec<String>, hash: &str, prev: Option<&str>) {
    if held.last().is_some_and(|h| h == hash) {
        return;
    }
    match held.iter().position(|h| h == hash) {
        Some(i) => {
            if prev.is_some() && prev == held.last().map(String::as_str) {
                held.remove(i);
                held.push(hash.to_string());
            }
        }
        None => {
            held.push(hash.to_string());
            if held.len() > HELD_MAX {
                held.remove(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(hashes: &[&str]) -> Vec<String> {
        hashes.iter().map(|h| h.to_string()).collect()
    }

    fn stored(hash: &str, uploader: &str, applied_at: u64, updated: Option<u64>) -> RemoteMeta {
        RemoteMeta {
            sha256_hex: Some(hash.into()),
            uploader: Some(uploader.into()),
            applied_at: Some(applied_at),
            updated_at_ms: updated,
            ..Default::default()
        }
    }

    const NOW: u64 = 1_800_000_000_000;

    fn ours<'a>(hash: &'a str, held: &'a [String], updated: Option<u64>) -> Ours<'a> {
        Ours {
            hash,
            held,
            updated_at_ms: updated,
            seen_at: NOW,
        }
    }

    /// The case: node-3 restarts from a cache holding C2 while node-1 exported C5. Where
    /// both carry Kong's logical time the stored C5 stays; without it, and without C5 naming C2
    /// in `config-supersedes` (next test), the first-seen times decide (node-3 saw C2 "now",
    /// later: it replaces C5).
    #[test]
    fn a_node_restarted_from_a_stale_config_keeps_the_stored_one_by_logical_time() {
        let h = held(&["C2"]);
        let c5 = stored("C5", "node-1", NOW - 60_000, Some(5_000));
        assert!(matches!(
            decide(&ours("C2", &h, Some(2_000)), &c5, NOW),
            Verdict::Keep(_)
        ));
        let c5 = stored("C5", "node-1", NOW - 60_000, None);
        assert!(matches!(
            decide(&ours("C2", &h, None), &c5, NOW),
            Verdict::Replace(_)
        ));
        // A config seen later on another node stays.
        let c5 = stored("C5", "node-1", NOW + 1, None);
        assert!(matches!(
            decide(&ours("C2", &h, None), &c5, NOW),
            Verdict::Keep(_)
        ));
        // Once it sees a change (C6) its config is newer than what it held before.
        let h = held(&["C2", "C6"]);
        assert!(matches!(
            decide(
                &ours("C6", &h, None),
                &stored("C2", "node-3", NOW, None),
                NOW
            ),
            Verdict::Replace(_)
        ));
    }

    /// The same without Kong's logical time: C5's `config-supersedes` names C2 (C2 was exported
    /// and replaced since), so C5 stays although node-3 saw C2 later by its clock. A reload with a
    /// config never exported (C6) replaces C5, as does a rollback to C2 on a node that held C5.
    #[test]
    fn a_config_the_stored_object_superseded_does_not_replace_it() {
        let hex = |c: char| c.to_string().repeat(64);
        let (c2, c5, c6) = (hex('2'), hex('5'), hex('6'));
        let mut c5_meta = stored(&c5, "node-1", NOW - 60_000, None);
        c5_meta.supersedes = ["444444444444", "333333333333", "222222222222"]
            .map(String::from)
            .to_vec();
        let stale = held(&[&c2]);
        assert_eq!(
            decide(&ours(&c2, &stale, None), &c5_meta, NOW),
            Verdict::Keep("it superseded this config (config-supersedes)")
        );
        // Before Kong's logical time: the writer of C5 knew C2 and replaced it.
        assert!(matches!(
            decide(&ours(&c2, &stale, Some(NOW)), &c5_meta, NOW),
            Verdict::Keep(_)
        ));
        let reloaded = held(&[&c6]);
        assert!(matches!(
            decide(&ours(&c6, &reloaded, None), &c5_meta, NOW),
            Verdict::Replace(_)
        ));
        let rollback = held(&[&c5, &c2]);
        assert!(matches!(
            decide(&ours(&c2, &rollback, None), &c5_meta, NOW),
            Verdict::Replace(_)
        ));
    }

    #[test]
    fn logical_time_decides_and_is_not_believed_far_in_the_future() {
        let h = held(&["B"]);
        // Kong Enterprise's object (no metadata) is replaced.
        assert!(matches!(
            decide(&ours("B", &h, None), &RemoteMeta::default(), NOW),
            Verdict::Replace(_)
        ));
        // Kong's logical time shows ours is newer, even against a later first-seen time.
        assert!(matches!(
            decide(
                &ours("B", &h, Some(9_000)),
                &stored("A", "node-1", NOW + 1, Some(8_000)),
                NOW
            ),
            Verdict::Replace(_)
        ));
        // A logical time far in the future is not believed (nor does it block anything).
        assert!(matches!(
            decide(
                &ours("B", &h, Some(9_000)),
                &stored("A", "node-3", NOW - 1, Some(NOW + 7_200_000)),
                NOW
            ),
            Verdict::Replace(_)
        ));
    }

    #[test]
    fn a_runtime_change_replaces_what_the_node_held_before_even_with_an_older_logical_time() {
        // The change deleted the most recently updated entity: its newest updated_at is older.
        let h = held(&["A", "B"]);
        assert!(matches!(
            decide(
                &ours("B", &h, Some(1_000)),
                &stored("A", "node-1", NOW + 1, Some(2_000)),
                NOW
            ),
            Verdict::Replace(_)
        ));
        // A config never held here, with later entities: a node ahead of this one wrote it.
        assert!(matches!(
            decide(
                &ours("B", &h, Some(1_000)),
                &stored("C", "node-1", NOW - 1, Some(2_000)),
                NOW
            ),
            Verdict::Keep(_)
        ));
        // Nothing else decides between two live configs: the first-seen times, as before.
        let c = stored("C", "node-1", NOW + 1, None);
        assert!(matches!(
            decide(&ours("B", &h, None), &c, NOW),
            Verdict::Keep(_)
        ));
        let c = stored("C", "node-1", NOW - 1, None);
        assert!(matches!(
            decide(&ours("B", &h, None), &c, NOW),
            Verdict::Replace(_)
        ));
        // A config held *after* ours (this node lags behind itself) is no reason to replace.
        let h = held(&["B", "C"]);
        assert!(matches!(
            decide(
                &ours("B", &h, None),
                &stored("C", "node-1", NOW + 1, None),
                NOW
            ),
            Verdict::Keep(_)
        ));
    }

    #[test]
    fn held_configs_keep_their_order_across_lagging_workers_and_rollbacks() {
        let mut h = Vec::new();
        note_held(&mut h, "A", None); // worker 1 starts
        note_held(&mut h, "A", None); // worker 2 starts
        assert_eq!(h, ["A"]);
        note_held(&mut h, "B", Some("A")); // worker 1 changes
        note_held(&mut h, "A", None); // a restarted worker 2 that still reads A: lags
        assert_eq!(h, ["A", "B"]);
        note_held(&mut h, "B", Some("A")); // worker 2 catches up
        assert_eq!(h, ["A", "B"]);
        note_held(&mut h, "A", Some("B")); // a rollback on an up-to-date worker
        assert_eq!(h, ["B", "A"]);
        for i in 0..40 {
            let prev = h.last().cloned();
            note_held(&mut h, &format!("X{i}"), prev.as_deref());
        }
        assert_eq!(h.len(), HELD_MAX);
        assert_eq!(h.last().map(String::as_str), Some("X39"));
    }
}
