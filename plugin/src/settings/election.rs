//! Election settings: Kong's interval (and its environment variable), and our switch to turn the
//! election off for a single backup node (docs/election.md).

use super::lookup::Lookup;
use super::{err, Fail};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionSettings {
    /// Off: every exporting node uploads (conditional writes still keep the newest config).
    pub enabled: bool,
    pub interval_ms: u64,
}

/// Kong's default: 600 s. Seconds are allowed (fast failover), hours at most.
pub(super) fn parse_election(l: &Lookup) -> Result<ElectionSettings, Fail> {
    let enabled = l.bool("election", &["CONFIG_BRIDGE_ELECTION"], true)?;
    let interval_ms = l.seconds_ms(
        "cluster_fallback_election_interval",
        &[
            "KONG_CLUSTER_FALLBACK_ELECTION_INTERVAL",
            "DP_RESILIENCE_ELECTION_INTERVAL",
        ],
        600,
        86_400,
    )?;
    if interval_ms < 1_000 {
        return err(
            "cluster_fallback_election_interval",
            "must be at least 1 second",
        );
    }
    Ok(ElectionSettings {
        enabled,
        interval_ms,
    })
}
