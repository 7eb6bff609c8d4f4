//! Election registration objects as Kong Enterprise names them (docs/election.md), so a mixed fleet
//! of Kong Enterprise and config-bridge nodes sees the same candidates: S3 keys
//! `<register_time>-<node_id>` with the register time in seconds as Lua's `tostring` prints
//! `ngx.now()`; GCS objects named `<node_id>` (the store's timestamps carry the times).

use super::ListEntry;

/// One candidate read back from a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionCandidate {
    pub node_id: String,
    /// The node's first registration, ms since the epoch (smallest leads).
    pub register_time_ms: u64,
    /// The last refresh (the object's modification time), ms since the epoch.
    pub refreshed_ms: u64,
}

/// A listed registration as a candidate. `parse` reads `(register_time_ms, node_id)` from the
/// object's name below `election_prefix` (each store names them its own way); the refresh is the
/// entry's modification time, which the store calls `modified` (for the error).
pub fn candidate<'e>(
    election_prefix: &str,
    entry: &'e ListEntry,
    modified: &str,
    parse: impl FnOnce(&'e str) -> Result<(u64, &'e str), String>,
) -> Result<ElectionCandidate, String> {
    let name = entry
        .key
        .strip_prefix(election_prefix)
        .unwrap_or(&entry.key);
    let (register_time_ms, node_id) = parse(name)?;
    let refreshed_ms = entry
        .modified_ms
        .ok_or_else(|| format!("no {modified} for {}", crate::json::quoted(name)))?;
    Ok(ElectionCandidate {
        node_id: node_id.to_string(),
        register_time_ms,
        refreshed_ms,
    })
}

/// Seconds with up to three decimals, trailing zeros dropped: what Lua's `tostring(ngx.now())`
/// prints (`%.14g`, exact for 10-digit epoch seconds with milliseconds).
pub fn lua_seconds(ms: u64) -> String {
    let (secs, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        return secs.to_string();
    }
    let mut s = format!("{secs}.{frac:03}");
    while s.ends_with('0') {
        s.pop();
    }
    s
}

/// Parses `\d+\.?\d*` seconds into ms (digits past the third decimal are dropped).
pub fn parse_lua_seconds(text: &str) -> Option<u64> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = int.parse().ok()?;
    let mut ms = 0u64;
    for (i, b) in frac.bytes().take(3).enumerate() {
        ms += u64::from(b - b'0') * [100, 10, 1].get(i).copied().unwrap_or(0);
    }
    secs.checked_mul(1000)?.checked_add(ms)
}

/// The S3 registration key name (without the prefix).
pub fn s3_name(node_id: &str, register_time_ms: u64) -> String {
    format!("{}-{node_id}", lua_seconds(register_time_ms))
}

/// Kong's `^(\d+\.?\d*)-(.+)$` on an S3 key name: `(register_time_ms, node_id)`.
pub fn parse_s3_name(name: &str) -> Option<(u64, &str)> {
    let end = name
        .bytes()
        .position(|b| !(b.is_ascii_digit() || b == b'.'))?;
    // `split_at_checked`: `split_at`'s panic brings `str`'s slicing error message and `char`'s
    // `Debug` (~3 KB; BENCHMARKS.md, "Issue 25, lean8").
    let (time, rest) = name.split_at_checked(end)?;
    // At most one dot, as the pattern allows.
    if time.bytes().filter(|&b| b == b'.').count() > 1 {
        return None;
    }
    let node = rest.strip_prefix('-')?;
    if node.is_empty() {
        return None;
    }
    Some((parse_lua_seconds(time)?, node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_formatting_drops_trailing_zeros() {
        assert_eq!(lua_seconds(1_733_012_345_123), "1733012345.123");
        assert_eq!(lua_seconds(1_733_012_345_120), "1733012345.12");
        assert_eq!(lua_seconds(1_733_012_345_100), "1733012345.1");
        assert_eq!(lua_seconds(1_733_012_345_000), "1733012345");
        assert_eq!(lua_seconds(1_733_012_345_005), "1733012345.005");
    }

    #[test]
    fn s3_names_round_trip_and_parse_like_kong() {
        let name = s3_name("6f1c-node-a", 1_733_012_345_120);
        assert_eq!(name, "1733012345.12-6f1c-node-a");
        assert_eq!(
            parse_s3_name(&name),
            Some((1_733_012_345_120, "6f1c-node-a"))
        );
        assert_eq!(
            parse_s3_name("1733012345-n"),
            Some((1_733_012_345_000, "n"))
        );
        assert_eq!(
            parse_s3_name("1733012345.-n"),
            Some((1_733_012_345_000, "n"))
        );
        assert_eq!(
            parse_s3_name("1733012345.1234-n"),
            Some((1_733_012_345_123, "n"))
        );
        for bad in [
            "",
            "-n",
            "abc-n",
            "1733012345",
            "1733012345-",
            "1.2.3-n",
            ".5-n",
        ] {
            assert_eq!(parse_s3_name(bad), None, "{bad:?}");
        }
    }
}
