//! A model of Kong Enterprise's fallback-config election, written here from its documented
//! behaviour (docs/election.md, "Kong Enterprise's protocol"), for mixed-fleet tests: Kong
//! Enterprise nodes sharing a bucket with config-bridge nodes in the harness, on S3
//! (`tests/tests/election.rs`) and GCS (`tests/tests/gcs_election.rs`).
//!
//! What the model does, as Kong Enterprise does:
//! * a node's first round comes after a random 0–5 s delay, then one round per interval;
//! * a round registers (first time: the register time is `now`) or refreshes the registration,
//!   then lists the candidates once; a failed registration or listing leaves the node's
//!   leadership as it was;
//! * the leader is the fresh candidate (`now <= refreshed + interval + 5 s`, the reader's clock)
//!   with the smallest register time, ties broken by the smaller node id.
//!
//! The stores differ ([`KongStore`]): on S3 ([`S3Election`]) the registration is the empty
//! `text/plain` object `<prefix>/<version>/election/<register time>-<node id>` (the register
//! time in seconds as Lua prints `ngx.now()`), PUT again every round with the
//! `cluster_fallback_export_s3_config` headers, freshness from `LastModified`, one
//! ListObjectsV2 page of up to 1,000 keys; Kong Enterprise joins an empty prefix
//! (`s3://bucket/`) with a leading `/`. On GCS ([`GcsElection`]) it is
//! `<prefix>/<version>/election/<node id>`, created once and refreshed by a metadata update,
//! register time `timeCreated`, freshness `updated`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use host_harness::http::{CallContext, Handler, HttpRequest, HttpResponse};
use host_harness::mocks::gcs::MockGcs;
use host_harness::mocks::s3::MockS3;
use host_harness::{NodeId, NodeSpec, World};

use crate::native_sigv4::Signer;

/// Kong's freshness margin past the interval.
pub const FRESH_MARGIN: Duration = Duration::from_secs(5);
/// The most keys Kong Enterprise reads in one election listing (one ListObjectsV2 page).
pub const S3_PAGE: usize = 1_000;

/// One registration as a Kong Enterprise node reads it from a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub node_id: String,
    /// Milliseconds since the epoch (S3: parsed from the key; GCS: `timeCreated`).
    pub register_time_ms: u64,
    /// S3 `LastModified`, GCS `updated`.
    pub refreshed: SystemTime,
}

/// Kong Enterprise's rule: among the fresh candidates, the smallest register time, then the
/// smaller node id.
pub fn leader(candidates: &[Candidate], now: SystemTime, interval: Duration) -> Option<String> {
    candidates
        .iter()
        .filter(|c| now <= c.refreshed + interval + FRESH_MARGIN)
        .min_by(|a, b| (a.register_time_ms, &a.node_id).cmp(&(b.register_time_ms, &b.node_id)))
        .map(|c| c.node_id.clone())
}

/// Where Kong Enterprise keeps its registrations.
pub trait KongStore {
    /// Registers (the first round) or refreshes `node_id`'s registration; `false` on failure.
    fn register(&self, node_id: &str, register_time_ms: u64, first: bool, now: SystemTime) -> bool;
    /// One election listing as Kong Enterprise reads it (by `node_id`); `None` on failure.
    fn candidates(&self, node_id: &str, now: SystemTime) -> Option<Vec<Candidate>>;
}

/// One Kong Enterprise node's election.
#[derive(Debug)]
pub struct KongNode {
    pub node_id: String,
    register_time_ms: Option<u64>,
    next_round: SystemTime,
    /// Whether the node exports (set at each completed round).
    pub leads: bool,
    /// The leader its last completed round chose.
    pub view: Option<String>,
    /// A stopped node (killed) runs no more rounds; its registration goes stale.
    pub stopped: bool,
}

impl KongNode {
    /// A node started at `now`, its first round `first_delay` later (Kong: random, 0–5 s).
    pub fn new(node_id: &str, now: SystemTime, first_delay: Duration) -> KongNode {
        KongNode {
            node_id: node_id.to_string(),
            register_time_ms: None,
            next_round: now + first_delay,
            leads: false,
            view: None,
            stopped: false,
        }
    }

    /// Runs a round if one is due at `now`.
    pub fn tick(&mut self, store: &dyn KongStore, now: SystemTime, interval: Duration) {
        if self.stopped || now < self.next_round {
            return;
        }
        self.next_round = now + interval;
        let first = self.register_time_ms.is_none();
        let register_time_ms = *self.register_time_ms.get_or_insert_with(|| ms(now));
        if !store.register(&self.node_id, register_time_ms, first, now) {
            return;
        }
        let Some(candidates) = store.candidates(&self.node_id, now) else {
            return;
        };
        let Some(chosen) = leader(&candidates, now, interval) else {
            return;
        };
        self.leads = chosen == self.node_id;
        self.view = Some(chosen);
    }

    /// Stops the node (as a killed process): no more rounds, no more exports.
    pub fn stop(&mut self) {
        self.stopped = true;
        self.leads = false;
    }
}

/// Milliseconds since the epoch.
pub fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// Seconds as Lua prints `ngx.now()` (`tostring` of a number with millisecond resolution): up to
/// three decimals, trailing zeros and a bare point dropped.
pub fn lua_seconds(ms: u64) -> String {
    let text = format!("{}.{:03}", ms / 1000, ms % 1000);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Kong's `^(\d+\.?\d*)-(.+)$` on an S3 registration's name: (register time ms, node id).
pub fn parse_s3_name(name: &str) -> Option<(u64, String)> {
    let (time, node) = name.split_once('-')?;
    let (secs, frac) = time.split_once('.').unwrap_or((time, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if secs.is_empty() || !digits(secs) || !digits(frac) || node.is_empty() {
        return None;
    }
    let frac_ms: u64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    Some((secs.parse::<u64>().ok()? * 1000 + frac_ms, node.to_string()))
}

/// Kong Enterprise's election prefix: the storage prefix, the gateway version and `election/`
/// joined with `/`, an empty prefix included (`s3://bucket/` gives `/3.9.1/election/`).
pub fn election_prefix(storage_prefix: &str, gateway_version: &str) -> String {
    format!("{storage_prefix}/{gateway_version}/election/")
}

/// Kong Enterprise's S3 election in a mock S3, through signed requests (path-style, as Kong
/// sends them).
pub struct S3Election<'a> {
    pub s3: &'a MockS3,
    pub signer: Signer<'a>,
    pub bucket: &'a str,
    /// `election_prefix(..)`.
    pub prefix: String,
    /// The `cluster_fallback_export_s3_config` headers Kong adds to its election objects.
    pub extra_headers: Vec<(String, String)>,
}

impl S3Election<'_> {
    /// Kong Enterprise's export of a config: a `PUT` of `key` (`application/json`,
    /// `x-amz-meta-uploader`, the s3-config headers, no conditional headers); `true` on 200.
    pub fn export(&self, node_id: &str, key: &str, body: &[u8], now: SystemTime) -> bool {
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("x-amz-meta-uploader".to_string(), node_id.to_string()),
        ];
        headers.extend(self.extra_headers.iter().cloned());
        let path = format!("/{}/{}", self.bucket, encode_key(key));
        self.call(node_id, "PUT", &path, headers, body, now).status == 200
    }

    fn call(
        &self,
        node_id: &str,
        method: &str,
        path: &str,
        headers: Vec<(String, String)>,
        body: &[u8],
        now: SystemTime,
    ) -> HttpResponse {
        let host = "s3.kong-ee.test";
        let mut all = vec![("host".to_string(), host.to_string())];
        all.extend(headers);
        let signed = self
            .signer
            .sign(method, &format!("http://{host}{path}"), &all, body, now);
        let mut req = HttpRequest::new(method, path).with_body(body.to_vec());
        req.authority = host.to_string();
        for (k, v) in all.iter().chain(&signed) {
            req = req.with_header(k, v);
        }
        self.s3
            .handle(&req, &CallContext::new(now, node_id, host))
            .response()
            .cloned()
            .unwrap_or_else(|| HttpResponse::new(599))
    }
}

/// An S3 key in a path: every byte but the unreserved ones and `/` percent-encoded.
fn encode_key(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl KongStore for S3Election<'_> {
    fn register(
        &self,
        node_id: &str,
        register_time_ms: u64,
        _first: bool,
        now: SystemTime,
    ) -> bool {
        // The same key every round: the register time is the first round's.
        let key = format!("{}{}-{node_id}", self.prefix, lua_seconds(register_time_ms));
        let mut headers = vec![("content-type".to_string(), "text/plain".to_string())];
        headers.extend(self.extra_headers.iter().cloned());
        let path = format!("/{}/{}", self.bucket, encode_key(&key));
        self.call(node_id, "PUT", &path, headers, b"", now).status == 200
    }

    fn candidates(&self, node_id: &str, now: SystemTime) -> Option<Vec<Candidate>> {
        // One page: no continuation token is followed.
        let path = format!(
            "/{}?list-type=2&max-keys={S3_PAGE}&prefix={}",
            self.bucket,
            encode_key(&self.prefix).replace('/', "%2F")
        );
        let resp = self.call(node_id, "GET", &path, Vec::new(), b"", now);
        if resp.status != 200 {
            return None;
        }
        let xml = resp.text();
        let mut out = Vec::new();
        for item in xml.split("<Contents>").skip(1) {
            let key = xml_tag(item, "Key")?;
            let refreshed = iso_time(&xml_tag(item, "LastModified")?)?;
            // A key that does not parse is skipped (Kong logs it).
            if let Some((register_time_ms, node_id)) =
                parse_s3_name(key.strip_prefix(&self.prefix).unwrap_or(&key))
            {
                out.push(Candidate {
                    node_id,
                    register_time_ms,
                    refreshed,
                });
            }
        }
        Some(out)
    }
}

fn xml_tag(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml.get(start..)?.find(&format!("</{name}>"))?;
    Some(
        xml.get(start..end)?
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// `2026-01-01T00:00:05.000Z` (S3's `LastModified`).
fn iso_time(s: &str) -> Option<SystemTime> {
    let n = |from: usize, len: usize| s.get(from..from + len)?.parse::<i64>().ok();
    let (y, m, d) = (n(0, 4)?, n(5, 2)?, n(8, 2)?);
    let (hh, mm, ss) = (n(11, 2)?, n(14, 2)?, n(17, 2)?);
    let millis = s
        .get(19..)
        .and_then(|r| r.strip_prefix('.'))
        .and_then(|r| r.get(..3))
        .and_then(|r| r.parse::<u64>().ok())
        .unwrap_or(0);
    // Days since the epoch of a civil date (proleptic Gregorian).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3_600 + mm * 60 + ss).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
}

/// Kong Enterprise's GCS election in a mock GCS.
pub struct GcsElection<'a> {
    pub gcs: &'a MockGcs,
    pub bucket: &'a str,
    /// `election_prefix(..)`.
    pub prefix: String,
}

impl KongStore for GcsElection<'_> {
    fn register(
        &self,
        node_id: &str,
        _register_time_ms: u64,
        first: bool,
        now: SystemTime,
    ) -> bool {
        let name = format!("{}{node_id}", self.prefix);
        if first {
            self.gcs
                .put_object(self.bucket, &name, b"", "text/plain", now);
            return true;
        }
        // A metadata update: `timeCreated` stays, `updated` moves.
        self.gcs
            .patch_metadata(self.bucket, &name, "kong", "refresh", now)
            .is_some()
    }

    fn candidates(&self, _node_id: &str, _now: SystemTime) -> Option<Vec<Candidate>> {
        Some(
            self.gcs
                .objects(self.bucket)
                .into_iter()
                .filter_map(|o| {
                    let node_id = o.name.strip_prefix(&self.prefix)?.to_string();
                    Some(Candidate {
                        node_id,
                        register_time_ms: ms(o.created),
                        refreshed: o.updated,
                    })
                })
                .collect(),
        )
    }
}

/// A mixed fleet: config-bridge nodes in the harness (`ours`: node, node id) and Kong Enterprise
/// nodes of the model sharing one store.
pub struct MixedFleet {
    pub ours: Vec<(NodeId, String)>,
    pub kong: Vec<KongNode>,
    pub interval: Duration,
}

impl MixedFleet {
    /// Starts config-bridge node `node-<i>` (harness name `n<i>`, 2 workers) with `filter`.
    pub fn add_ours(&mut self, world: &mut World, i: u64, filter: &serde_json::Value) {
        let node = world
            .add_node(
                NodeSpec::new(&format!("n{i}"), &crate::plugin_module())
                    .workers(2)
                    .seed(i)
                    .filter(filter.to_string()),
            )
            .unwrap_or_else(|e| panic!("starting n{i}: {e:#}"));
        self.ours.push((node, format!("node-{i}")));
    }

    /// Every node that believes it leads: ours by the leader gauge, Kong's by its last round.
    pub fn leaders(&self, world: &World) -> Vec<String> {
        let ours = self
            .ours
            .iter()
            .filter(|(n, _)| world.metric(*n, "config_bridge_election_leader") == Some(1))
            .map(|(_, id)| id.clone());
        let kong = self
            .kong
            .iter()
            .filter(|k| k.leads)
            .map(|k| k.node_id.clone());
        ours.chain(kong).collect()
    }

    /// Advances the world a second and runs the Kong nodes' due rounds; the virtual time.
    pub fn step(&mut self, world: &mut World, store: &dyn KongStore) -> SystemTime {
        world.advance(Duration::from_secs(1));
        let now = UNIX_EPOCH + Duration::from_nanos(world.clock().guest_wall_nanos());
        for k in &mut self.kong {
            k.tick(store, now, self.interval);
        }
        now
    }

    /// The check of a settled fleet: exactly one node leads, and every running Kong node's last
    /// round chose it.
    pub fn agreed_leader(&self, world: &World) -> Result<String, String> {
        let leaders = self.leaders(world);
        let [leader] = leaders.as_slice() else {
            return Err(format!("leaders {leaders:?}"));
        };
        for k in self.kong.iter().filter(|k| !k.stopped) {
            if k.view.as_ref() != Some(leader) {
                return Err(format!(
                    "{} leads, {}'s last round chose {:?}",
                    leader, k.node_id, k.view
                ));
            }
        }
        Ok(leader.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_times_print_and_parse_as_kong_writes_them() {
        assert_eq!(lua_seconds(1_796_113_536_120), "1796113536.12");
        assert_eq!(lua_seconds(1_796_113_536_000), "1796113536");
        assert_eq!(lua_seconds(1_796_113_536_007), "1796113536.007");
        assert_eq!(
            parse_s3_name("1796113536.12-6f1c-node"),
            Some((1_796_113_536_120, "6f1c-node".to_string()))
        );
        assert_eq!(parse_s3_name("x-node"), None);
        assert_eq!(election_prefix("", "3.9.1"), "/3.9.1/election/");
        assert_eq!(
            iso_time("2026-01-01T00:00:05.250Z"),
            Some(UNIX_EPOCH + Duration::from_millis(1_767_225_605_250))
        );
    }

    #[test]
    fn the_oldest_fresh_candidate_leads_ties_by_node_id() {
        let t = UNIX_EPOCH + Duration::from_secs(1_000);
        let c = |id: &str, reg: u64, refreshed: u64| Candidate {
            node_id: id.into(),
            register_time_ms: reg,
            refreshed: UNIX_EPOCH + Duration::from_secs(refreshed),
        };
        let i = Duration::from_secs(10);
        let all = [c("b", 5, 990), c("a", 5, 990), c("old", 1, 984)];
        // "old" was refreshed 16 s ago: stale (10 + 5 s).
        assert_eq!(leader(&all, t, i), Some("a".into()));
        assert_eq!(leader(&all[2..], t, i), None);
    }
}
