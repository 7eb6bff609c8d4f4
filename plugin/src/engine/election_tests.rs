//! The election machine against a small S3 bucket simulation (ListObjectsV2 pages, LastModified
//! on the store's clock, a `Date` header), several nodes, a virtual clock.

use std::collections::BTreeMap;

use super::*;
use crate::engine::effects::Effect;
use crate::node_lock::fake::{CasRules, FakeStore};
use crate::settings::Config;
use crate::store::timestamp::rfc3339_ms;

const PREFIX: &str = "kong/3.9.1/election/";
const INTERVAL: u64 = 10_000;
const T0: u64 = 1_796_113_536_000;
const CALL_TIMEOUT: u64 = 2_000;
/// The second round of a node (its first refresh after registering).
const SETTLE_MS: u64 = 6_000;

fn store() -> Box<dyn ObjectStore> {
    let v = serde_json::json!({
        "cluster_fallback_config_export": true,
        "cluster_fallback_config_storage": "s3://bucket-1/kong",
        "gateway_version": "3.9.1",
        "aws_access_key_id": "AKID",
        "aws_secret_access_key": "SECRETKEY",
        "aws_region": "us-east-1",
        "storage_endpoint": "http://127.0.0.1:9000",
        "config": {"_format_version": "3.0"},
    });
    let cfg = Config::parse(v.to_string().as_bytes(), &|_| None).unwrap();
    crate::store::for_settings(&cfg.storage)
}

/// Objects by key with their LastModified (store clock); the store's clock runs `skew` ms
/// ahead of the nodes'.
#[derive(Default)]
struct Bucket {
    objects: BTreeMap<String, u64>,
    page_size: usize,
    skew: i64,
    /// Answer every request with this status instead (a store outage).
    down: Option<u16>,
    /// Answer listings with this status (a policy without s3:ListBucket).
    list_refused: Option<u16>,
    /// Every listing page says it is truncated and hands out the same token.
    repeat_token: bool,
    requests: Vec<(String, String)>,
}

fn http_date(ms: u64) -> String {
    // Only what the tests need: a fixed day, the time of day from `ms`.
    let day_start = 1_796_083_200_000; // 2026-12-01T00:00:00Z
    let s = (ms - day_start) / 1000;
    format!(
        "Tue, 01 Dec 2026 {:02}:{:02}:{:02} GMT",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn rfc3339(ms: u64) -> String {
    let day_start = 1_796_083_200_000;
    let s = (ms - day_start) / 1000;
    format!(
        "2026-12-01T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms % 1000
    )
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            page_size: 1000,
            ..Bucket::default()
        }
    }

    fn store_now(&self, now: u64) -> u64 {
        now.saturating_add_signed(self.skew)
    }

    fn handle(&mut self, req: &OutboundRequest, now: u64) -> HttpResponse {
        self.requests.push((req.method.clone(), req.path.clone()));
        let store_now = self.store_now(now);
        let headers = vec![("date".to_string(), http_date(store_now))];
        let resp = |status: u16, body: String| HttpResponse {
            status,
            headers: headers.clone(),
            body: body.into_bytes(),
        };
        if let Some(status) = self.down {
            return resp(
                status,
                "<Error><Code>ServiceUnavailable</Code></Error>".into(),
            );
        }
        let path = req.path.strip_prefix("/bucket-1").unwrap().to_string();
        match req.method.as_str() {
            "PUT" => {
                assert_eq!(req.header("content-type"), Some("text/plain"));
                assert!(req.body.is_empty());
                self.objects
                    .insert(path.trim_start_matches('/').to_string(), store_now);
                resp(200, String::new())
            }
            "DELETE" => {
                self.objects.remove(path.trim_start_matches('/'));
                resp(204, String::new())
            }
            "GET" if self.list_refused.is_some() => resp(
                self.list_refused.unwrap_or(403),
                "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>".into(),
            ),
            "GET" if self.repeat_token => resp(
                200,
                "<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>same</NextContinuationToken></ListBucketResult>".into(),
            ),
            "GET" => {
                let query = path.split_once('?').unwrap().1;
                let param = |name: &str| {
                    query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                        .map(|v| v.replace("%2F", "/"))
                };
                let prefix = param("prefix").unwrap();
                let after = param("continuation-token");
                let keys: Vec<(&String, &u64)> = self
                    .objects
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix))
                    .filter(|(k, _)| after.as_ref().is_none_or(|a| k.as_str() > a.as_str()))
                    .take(self.page_size + 1)
                    .collect();
                let truncated = keys.len() > self.page_size;
                let page = &keys[..keys.len().min(self.page_size)];
                let mut xml = String::from("<ListBucketResult>");
                for (k, m) in page {
                    xml += &format!(
                        "<Contents><Key>{k}</Key><LastModified>{}</LastModified><Size>0</Size></Contents>",
                        rfc3339(**m)
                    );
                }
                xml += &format!("<IsTruncated>{truncated}</IsTruncated>");
                if truncated {
                    xml += &format!(
                        "<NextContinuationToken>{}</NextContinuationToken>",
                        page.last().unwrap().0
                    );
                }
                xml += "</ListBucketResult>";
                resp(200, xml)
            }
            m => panic!("unexpected {m}"),
        }
    }
}

struct Node {
    id: String,
    election: Election,
    shared: FakeStore,
    store: Box<dyn ObjectStore>,
    logs: Vec<(Level, String)>,
}

impl Node {
    fn new(id: &str, seed: u64) -> Node {
        Node::with_shared(id, seed, FakeStore::new(CasRules::Ngx))
    }

    fn with_shared(id: &str, seed: u64, shared: FakeStore) -> Node {
        let settings = ElectionSettings {
            enabled: true,
            interval_ms: INTERVAL,
        };
        Node {
            id: id.into(),
            election: Election::new(settings, PREFIX.into(), "reg".into(), seed, CALL_TIMEOUT),
            shared,
            store: store(),
            logs: Vec::new(),
        }
    }

    /// Polls and answers until the machine waits for its next round.
    fn step(&mut self, bucket: &mut Bucket, now: u64) {
        let mut fx = Effects::default();
        let mut request = self.election.poll(
            now,
            &self.id,
            self.store.as_ref(),
            &mut self.shared,
            &mut fx,
        );
        while let Some(r) = request {
            let response = bucket.handle(&r.unwrap(), now);
            self.election.on_answer(
                response,
                now,
                &self.id,
                self.store.as_ref(),
                &mut self.shared,
                &mut fx,
            );
            request = self.election.follow_up(now, self.store.as_ref());
        }
        self.collect(fx);
    }

    fn collect(&mut self, fx: Effects) {
        for e in fx.0 {
            if let Effect::Log(level, line) = e {
                self.logs.push((level, line));
            }
        }
    }

    fn leads(&self, now: u64) -> bool {
        self.election.is_leader(now)
    }
}

/// Runs every node's due work each second from `from` to `to`.
fn run(nodes: &mut [Node], bucket: &mut Bucket, from: u64, to: u64) {
    let mut now = from;
    while now <= to {
        for n in nodes.iter_mut() {
            n.step(bucket, now);
        }
        now += 1000;
    }
}

fn leaders(nodes: &[Node], now: u64) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| n.leads(now))
        .map(|n| n.id.clone())
        .collect()
}

#[test]
fn a_single_node_registers_under_kongs_name_and_leads() {
    let mut bucket = Bucket::new();
    let mut a = Node::new("node-a", 0);
    assert!(!a.leads(T0));
    a.step(&mut bucket, T0 + 123);
    let keys: Vec<&String> = bucket.objects.keys().collect();
    assert_eq!(keys, [&format!("{PREFIX}1796113536.123-node-a")]);
    // Alone: nobody else can be leading, so it leads at its first round (no settle round).
    let settled = T0 + 123;
    assert!(a.leads(settled));
    assert!(a
        .logs
        .iter()
        .any(|(_, l)| l == "election: this node now leads the export"));
    // Re-registers the same key every three quarters of the interval (refreshing LastModified).
    let round = INTERVAL / 4 * 3;
    bucket.requests.clear();
    a.step(&mut bucket, settled + round - 1);
    assert!(bucket.requests.is_empty());
    a.step(&mut bucket, settled + round);
    assert_eq!(bucket.requests.len(), 2, "{:?}", bucket.requests);
    assert_eq!(bucket.objects.len(), 1);
    assert_eq!(bucket.objects.values().next(), Some(&(settled + round)));
}

#[test]
fn the_first_round_waits_a_random_spread_of_at_most_five_seconds() {
    let mut bucket = Bucket::new();
    let mut a = Node::new("node-a", 3_456);
    a.step(&mut bucket, T0);
    a.step(&mut bucket, T0 + 3_455);
    assert!(bucket.objects.is_empty());
    a.step(&mut bucket, T0 + 3_456);
    assert_eq!(bucket.objects.len(), 1);
    // The register time lives in shared data: a worker taking over the lease keeps the node's
    // place (same key, no new spread).
    let shared = a.shared.clone();
    let mut b = Node::with_shared("node-a", 4_999, shared);
    b.step(&mut bucket, T0 + 4_000);
    assert_eq!(bucket.objects.len(), 1, "{:?}", bucket.objects);
    b.step(&mut bucket, T0 + 4_000 + SETTLE_MS);
    assert!(b.leads(T0 + 4_000 + SETTLE_MS));
}

#[test]
fn the_oldest_fresh_candidate_leads_and_ties_go_to_the_smaller_node_id() {
    let mut bucket = Bucket::new();
    let mut nodes = vec![
        Node::new("node-b", 0),
        Node::new("node-a", 0),
        Node::new("node-c", 0),
    ];
    nodes[2].step(&mut bucket, T0); // node-c registers first
    run(&mut nodes, &mut bucket, T0 + 1000, T0 + 8000);
    assert_eq!(leaders(&nodes, T0 + 8000), ["node-c"]);

    // Same register time: the smaller node id. node-b registers and lists first and sees only
    // itself: it leads. node-a, first in line, leads only once node-b has refreshed (and so
    // listed, and stepped down) since node-a registered: never two leaders.
    let mut bucket = Bucket::new();
    let mut nodes = vec![Node::new("node-b", 0), Node::new("node-a", 0)];
    let mut handed_over = None;
    for at in (T0..=T0 + 20_000).step_by(1000) {
        run(&mut nodes, &mut bucket, at, at);
        let l = leaders(&nodes, at);
        assert!(l.len() <= 1, "two leaders at +{}", at - T0);
        if at == T0 {
            assert_eq!(l, ["node-b"]);
        }
        if l == ["node-a"] && handed_over.is_none() {
            handed_over = Some(at - T0);
        }
    }
    assert_eq!(leaders(&nodes, T0 + 20_000), ["node-a"]);
    // node-b's next round (¾ interval) and node-a's check after it.
    let took = handed_over.unwrap();
    assert!(
        took <= INTERVAL / 4 * 3 + 5_000,
        "handed over after {took} ms"
    );
}

#[test]
fn a_kong_enterprise_registration_counts_and_wins_when_older() {
    let mut bucket = Bucket::new();
    // What Kong Enterprise writes: `<ngx.now()>-<node uuid>`.
    let kong = format!("{PREFIX}1796113530.5-0f0c8e9c-6b1f-4b7e-9d3e-2f6a1c2b3d4e");
    bucket.objects.insert(kong, T0 - 500);
    let mut a = Node::new("node-a", 0);
    a.step(&mut bucket, T0);
    assert!(!a.leads(T0));
    assert!(a.logs.iter().any(|(_, l)| l
        == "election: leader is 0f0c8e9c-6b1f-4b7e-9d3e-2f6a1c2b3d4e (2 fresh candidate(s))"));
    // Kong's node stops refreshing: gone after interval + 5 s, node-a leads (it looks again
    // just after that deadline, not a whole interval later).
    run(
        std::slice::from_mut(&mut a),
        &mut bucket,
        T0 + 1000,
        T0 + INTERVAL + 7_000,
    );
    assert!(a.leads(T0 + INTERVAL + 7_000));
    let stale_at = T0 - 500 + INTERVAL + FRESHNESS_GRACE_MS;
    let took_over = a
        .logs
        .iter()
        .position(|(_, l)| l == "election: this node now leads the export");
    assert!(took_over.is_some());
    // A newer Kong registration does not win.
    bucket
        .objects
        .insert(format!("{PREFIX}1796113599-kong-node"), stale_at);
    a.step(&mut bucket, T0 + 2 * INTERVAL);
    assert!(a.leads(T0 + 2 * INTERVAL));
}

#[test]
fn malformed_keys_are_skipped_with_one_line_each() {
    let mut bucket = Bucket::new();
    for name in ["notatime-x", "12.3.4-x", "1796113530", "1796113530-"] {
        bucket.objects.insert(format!("{PREFIX}{name}"), T0);
    }
    let mut a = Node::new("node-a", 0);
    a.step(&mut bucket, T0);
    a.step(&mut bucket, T0 + INTERVAL);
    assert!(a.leads(T0 + INTERVAL));
    let skipped = a
        .logs
        .iter()
        .filter(|(_, l)| l.starts_with("election: skipping"))
        .count();
    assert_eq!(skipped, 4, "{:?}", a.logs);
}

#[test]
fn listings_past_one_page_are_followed() {
    let mut bucket = Bucket::new();
    bucket.page_size = 1000;
    // 2,500 fresh registrations, all younger than node-a's except the last page's one.
    for i in 0..2_499u64 {
        bucket
            .objects
            .insert(format!("{PREFIX}1796113540.{:03}-n{i:04}", i % 1000), T0);
    }
    // The oldest registration (1970) sorts after every `1796…` key: on the last page.
    bucket.objects.insert(format!("{PREFIX}999-zz-oldest"), T0);
    let mut a = Node::new("node-a", 0);
    a.step(&mut bucket, T0);
    let lists = bucket.requests.iter().filter(|(m, _)| m == "GET").count();
    assert_eq!(lists, 3);
    assert!(!a.leads(T0));
    assert!(a
        .logs
        .iter()
        .any(|(_, l)| l.contains("leader is zz-oldest (2501 fresh")));
}

#[test]
fn a_failed_round_leaves_leadership_as_it_was_until_it_would_go_stale() {
    let mut bucket = Bucket::new();
    let mut a = Node::new("node-a", 0);
    let t = T0;
    a.step(&mut bucket, t);
    assert!(a.leads(t));
    bucket.down = Some(503);
    let round = t + INTERVAL / 4 * 3;
    a.step(&mut bucket, round);
    assert!(a.leads(round));
    assert!(a
        .logs
        .iter()
        .any(|(l, m)| *l == Level::Warn && m.contains("leadership unchanged")));
    // Others count node-a until its last refresh + interval + 5 s: it stops leading earlier,
    // by the margin (skew noise, the `Date` resolution, a call timeout), counted from the send.
    let others_drop_it = t + INTERVAL + FRESHNESS_GRACE_MS;
    assert!(!a.leads(others_drop_it - 1));
    assert!(!a.leads(others_drop_it - leader_margin_ms(CALL_TIMEOUT)));
    assert!(a.leads(others_drop_it - leader_margin_ms(CALL_TIMEOUT) - 1));
    // The store is back: the next retry (a second later) restores leadership.
    bucket.down = None;
    run(
        std::slice::from_mut(&mut a),
        &mut bucket,
        round + 1000,
        round + 2000,
    );
    assert!(a.leads(round + 2000));
    assert!(a.leads(others_drop_it));
}

#[test]
fn a_resigning_leader_hands_over_within_one_interval() {
    let mut bucket = Bucket::new();
    let mut nodes = vec![Node::new("node-a", 0), Node::new("node-b", 0)];
    run(&mut nodes, &mut bucket, T0, T0 + 8000);
    assert_eq!(leaders(&nodes, T0 + 8000), ["node-a"]);
    // node-a stops (on_done): its registration is deleted.
    let key = nodes[0].election.resign().unwrap();
    assert!(!nodes[0].leads(T0 + 8000));
    let del = nodes[0].store.delete(&key, T0 + 8000).unwrap();
    bucket.handle(&del, T0 + 8000);
    assert_eq!(bucket.objects.len(), 1);
    let mut b = nodes.pop().unwrap();
    let mut at = T0 + 8000;
    while !b.leads(at) {
        at += 1000;
        b.step(&mut bucket, at);
    }
    // Within one interval of the withdrawal (the follower's next round).
    assert!(at <= T0 + 8000 + INTERVAL, "took over at +{} ms", at - T0);
}

#[test]
fn a_killed_leader_is_replaced_within_interval_plus_five_seconds_of_its_last_refresh() {
    let mut bucket = Bucket::new();
    let mut nodes = vec![
        Node::new("node-a", 0),
        Node::new("node-b", 0),
        Node::new("node-c", 0),
    ];
    run(&mut nodes, &mut bucket, T0, T0 + 25_000);
    assert_eq!(leaders(&nodes, T0 + 25_000), ["node-a"]);
    let last_refresh = *bucket
        .objects
        .iter()
        .find(|(k, _)| k.ends_with("-node-a"))
        .unwrap()
        .1;
    nodes.remove(0); // killed: no more rounds, no resign
    let mut at = T0 + 25_000;
    while leaders(&nodes, at).is_empty() {
        at += 1000;
        run(&mut nodes, &mut bucket, at, at);
    }
    assert_eq!(leaders(&nodes, at), ["node-b"]);
    let bound = last_refresh + INTERVAL + FRESHNESS_GRACE_MS + FOLLOWER_CHECK_MARGIN_MS + 1000;
    assert!(
        at <= bound,
        "took over {} ms after the bound",
        at.saturating_sub(bound)
    );
}

#[test]
fn the_leader_deletes_long_stale_registrations() {
    let mut bucket = Bucket::new();
    let dead = format!("{PREFIX}1796000000-long-gone");
    bucket
        .objects
        .insert(dead.clone(), T0 - cleanup_after_ms(INTERVAL) - 60_000);
    let recent = format!("{PREFIX}1796113000-recently-gone");
    bucket.objects.insert(recent.clone(), T0 - 60_000);
    let mut a = Node::new("node-a", 0);
    a.step(&mut bucket, T0);
    assert!(a.leads(T0));
    assert!(!bucket.objects.contains_key(&dead));
    assert!(
        bucket.objects.contains_key(&recent),
        "kept: within the safety margin"
    );
}

#[test]
fn clock_skew_is_reported_and_freshness_is_judged_on_the_stores_clock() {
    let mut bucket = Bucket::new();
    // The store (and the other node) run 30 s ahead of node-a's clock.
    bucket.skew = 30_000;
    bucket
        .objects
        .insert(format!("{PREFIX}1796113500-node-0"), T0 + 30_000 - INTERVAL);
    let mut a = Node::new("node-a", 0);
    a.step(&mut bucket, T0);
    // On node-a's own clock node-0 would look fresh (refreshed in its "future"); on the store's
    // clock it refreshed exactly one interval ago: still fresh, and older: it leads.
    assert!(!a.leads(T0));
    assert!(a
        .logs
        .iter()
        .any(|(l, m)| *l == Level::Warn && m.contains("30000 ms behind the store's")));
    // 6 s later on the store's clock node-0 is stale: node-a leads at its check.
    run(
        std::slice::from_mut(&mut a),
        &mut bucket,
        T0 + 1000,
        T0 + 8000,
    );
    assert!(a.leads(T0 + 8000));
}

#[test]
fn rfc3339_helper_matches_the_parser() {
    assert_eq!(rfc3339_ms(&rfc3339(T0 + 42)), Some(T0 + 42));
}

/// node-a leads, then cannot refresh (its requests fail: `down`) until node-b has taken over.
/// Returns both nodes, the bucket, the failing one and the time node-b leads.
fn node_b_takes_over_from_a_cut_off_node_a() -> (Node, Node, Bucket, Bucket, u64) {
    let mut bucket = Bucket::new();
    let mut nodes = vec![Node::new("node-a", 0), Node::new("node-b", 0)];
    run(&mut nodes, &mut bucket, T0, T0 + 8000);
    assert_eq!(leaders(&nodes, T0 + 8000), ["node-a"]);
    let mut a = nodes.remove(0);
    let mut b = nodes.remove(0);
    let mut down = Bucket::new();
    down.down = Some(503);
    let mut at = T0 + 8000;
    while !b.leads(at) {
        at += 1000;
        a.step(&mut down, at);
        b.step(&mut bucket, at);
        assert!(!(a.leads(at) && b.leads(at)), "two leaders at +{}", at - T0);
    }
    (a, b, bucket, down, at)
}

#[test]
fn a_leader_whose_registration_went_stale_waits_for_the_successor_to_step_down() {
    // node-a cannot refresh for a while (its requests fail): it lapses, node-b takes over.
    let (mut a, mut b, mut bucket, _, at) = node_b_takes_over_from_a_cut_off_node_a();
    // node-a is back: it is older and takes over again, but never while node-b still leads.
    a_leads_again(&mut a, &mut b, &mut bucket, at);
}

/// Steps both nodes each second until node-a leads (at most a minute), never two leaders.
fn a_leads_again(a: &mut Node, b: &mut Node, bucket: &mut Bucket, mut at: u64) {
    for _ in 0..60 {
        at += 1000;
        a.step(bucket, at);
        b.step(bucket, at);
        assert!(!(a.leads(at) && b.leads(at)), "two leaders at +{}", at - T0);
        if a.leads(at) {
            return;
        }
    }
    panic!("node-a does not lead again");
}

#[test]
fn registrations_of_one_node_count_once_and_a_reset_node_keeps_its_first_place() {
    let mut bucket = Bucket::new();
    let mut a = Node::new("node-a", 0);
    a.step(&mut bucket, T0);
    assert!(a.leads(T0));
    // A restart wipes shared data: the node starts over and registers a second key.
    let mut again = Node::new("node-a", 0);
    let at = T0 + 20_000;
    again.step(&mut bucket, at);
    assert!(again
        .logs
        .iter()
        .any(|(_, l)| l == "election: leader is node-a (1 fresh candidate(s))"));
    assert!(again
        .logs
        .iter()
        .any(|(_, l)| l.contains("keeps its first registration")));
    assert!(again.leads(at), "alone");
    // The newer key is deleted, the first one is refreshed from now on.
    let keys: Vec<&String> = bucket.objects.keys().collect();
    assert_eq!(keys, [&format!("{PREFIX}1796113536-node-a")], "{keys:?}");
    let round = at + INTERVAL / 4 * 3;
    again.step(&mut bucket, round);
    assert!(again.leads(round));
    assert_eq!(bucket.objects.len(), 1);
    assert_eq!(
        bucket.objects.values().next(),
        Some(&round),
        "the first registration is the one refreshed"
    );
    // A reload while the first registration is fresh (the old workers refreshed it): the node
    // leads at once.
    let mut reloaded = Node::new("node-a", 0);
    let at = round + 2_000;
    reloaded.step(&mut bucket, at);
    assert!(reloaded.leads(at));
    assert_eq!(bucket.objects.len(), 1, "{:?}", bucket.objects);
}

#[test]
fn a_store_repeating_its_continuation_token_fails_the_round_instead_of_looping() {
    let mut bucket = Bucket::new();
    bucket.repeat_token = true;
    let mut a = Node::new("node-a", 0);
    a.step(&mut bucket, T0);
    let lists = bucket.requests.iter().filter(|(m, _)| m == "GET").count();
    assert_eq!(lists, 2, "one page, then the repeated token stops it");
    assert!(a
        .logs
        .iter()
        .any(|(l, m)| *l == Level::Warn && m.contains("repeated a continuation token")));
    assert!(!a.leads(T0));
}

#[test]
fn a_refused_listing_is_loud_and_a_lone_node_still_exports() {
    let mut bucket = Bucket::new();
    bucket.list_refused = Some(403);
    let mut a = Node::new("node-a", 0);
    a.step(&mut bucket, T0);
    assert!(a.leads(T0), "blind: it cannot see anyone else");
    assert!(a.logs.iter().any(|(l, m)| *l == Level::Error
        && m.contains("refused")
        && m.contains("s3:ListBucket")
        && m.contains("AccessDenied")));
    // It keeps registering (others that can list still see it) and trying to list.
    bucket.requests.clear();
    a.step(&mut bucket, T0 + INTERVAL / 4 * 3);
    assert_eq!(bucket.requests.len(), 2, "{:?}", bucket.requests);
    assert!(a.leads(T0 + INTERVAL / 4 * 3));
    // The listing works again: the ordinary rule decides (here: an older fresh candidate).
    bucket.list_refused = None;
    bucket
        .objects
        .insert(format!("{PREFIX}1796113000-node-0"), T0 + INTERVAL);
    a.step(&mut bucket, T0 + INTERVAL / 2 * 3);
    assert!(!a.leads(T0 + INTERVAL / 2 * 3));
    assert!(a
        .logs
        .iter()
        .any(|(_, m)| m == "election: the listing works again"));
}

#[test]
fn a_leader_whose_listing_fails_after_its_refresh_steps_down_until_a_listing_succeeds() {
    let mut bucket = Bucket::new();
    let mut a = Node::new("node-a", 0);
    a.step(&mut bucket, T0);
    assert!(a.leads(T0));
    // The refresh lands (the others see it and take it for a listing), the listing fails.
    bucket.list_refused = Some(500);
    let round = T0 + INTERVAL / 4 * 3;
    a.step(&mut bucket, round);
    assert!(!a.leads(round));
    assert!(a
        .logs
        .iter()
        .any(|(l, m)| *l == Level::Warn && m.contains("until a listing succeeds")));
    bucket.list_refused = None;
    run(
        std::slice::from_mut(&mut a),
        &mut bucket,
        round + 1000,
        round + 2000,
    );
    assert!(a.leads(round + 2000));
}

/// The chaos test's two leaders (no conditional writes, seed 13907095858650157569, minute
/// 1038): node-a, first in line but waiting for node-b to step down, lists once, then its
/// registration goes stale (refreshes failing: a reconfiguration dropped an answer, then a reset
/// connection). node-b refreshes and lists while node-a is stale, so it never saw node-a; node-a
/// then registers again and took node-b's refresh, which came after node-a first entered, for
/// "node-b listed and saw me older": both led. A registration that went stale starts a new entry.
#[test]
fn a_waiting_node_whose_registration_went_stale_does_not_count_refreshes_from_before() {
    let (mut a, mut b, mut bucket, mut down, mut at) = node_b_takes_over_from_a_cut_off_node_a();
    let key = |bucket: &Bucket, id: &str| {
        bucket
            .objects
            .iter()
            .find(|(k, _)| k.ends_with(id))
            .map(|(_, m)| *m)
            .unwrap()
    };
    // node-a is back for one round: it registers and lists (node-b older than its entry: wait).
    let before = key(&bucket, "node-a");
    while key(&bucket, "node-a") == before {
        at += 1000;
        a.step(&mut bucket, at);
        b.step(&mut bucket, at);
        assert!(!(a.leads(at) && b.leads(at)), "two leaders at +{}", at - T0);
    }
    let entered = key(&bucket, "node-a");
    assert!(!a.leads(at));
    // Then cut off again until node-b has refreshed (and listed) while node-a was stale.
    let window = INTERVAL + FRESHNESS_GRACE_MS;
    while key(&bucket, "node-b") <= entered + window {
        at += 1000;
        a.step(&mut down, at);
        b.step(&mut bucket, at);
        assert!(!(a.leads(at) && b.leads(at)), "two leaders at +{}", at - T0);
    }
    // Back for good: node-a leads again only once node-b has stepped down.
    a_leads_again(&mut a, &mut b, &mut bucket, at);
}

/// The chaos test's two leaders (default seed, minute 2448): node-a restarts (its shared data is
/// gone) after its registration went stale while node-b leads. It registers a new key (younger
/// than node-b's), lists, and takes its older, stale registration back. node-b listed the new key
/// and saw node-a younger: a refresh of node-b proves nothing until node-b has listed the older
/// registration refreshed, so node-a's entry begins with that refresh.
#[test]
fn a_node_taking_back_a_stale_older_registration_waits_for_the_leader_to_see_it() {
    let mut bucket = Bucket::new();
    let mut a = Node::new("node-a", 0);
    a.step(&mut bucket, T0);
    let mut b = Node::new("node-b", 0);
    let mut at = T0;
    while !b.leads(at) {
        at += 1000;
        b.step(&mut bucket, at);
        assert!(at < T0 + 3 * INTERVAL, "node-b never led");
    }
    // node-a restarts with fresh shared data.
    let mut a_back = Node::new("node-a", 0);
    drop(a);
    for _ in 0..(3 * INTERVAL / 1000) {
        at += 1000;
        a_back.step(&mut bucket, at);
        b.step(&mut bucket, at);
        assert!(
            !(a_back.leads(at) && b.leads(at)),
            "two leaders at +{}",
            at - T0
        );
    }
    assert!(
        a_back.leads(at) && !b.leads(at),
        "node-a is older: it leads"
    );
}
