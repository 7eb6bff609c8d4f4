//! Fault injection in process: every fault kind, scripting, seeds, partitions and the log.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use harness_mocks::faults::{Fault, Faulty};
use harness_mocks::{CallContext, CallFailure, HttpRequest, HttpResponse, Reply, SharedHandler};

fn counting() -> (SharedHandler, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    let h: SharedHandler = Arc::new(move |req: &HttpRequest, _: &CallContext| {
        c.fetch_add(1, Ordering::SeqCst);
        Reply::Response {
            response: HttpResponse::new(200).with_body(format!("ok {}", req.path)),
            latency: Duration::from_millis(5),
        }
    });
    (h, n)
}

fn ctx(node: &str) -> CallContext {
    CallContext::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        node,
        "s3",
    )
}

fn get(f: &Faulty, path: &str, node: &str) -> Reply {
    use harness_mocks::Handler;
    f.handle(&HttpRequest::new("GET", path), &ctx(node))
}

fn status(r: &Reply) -> Option<u16> {
    r.response().map(|r| r.status)
}

#[test]
fn scripted_status_faults_answer_with_s3_errors_without_reaching_the_handler() {
    let (h, n) = counting();
    let f = Faulty::new(h);
    f.push(Fault::slow_down());
    f.push(Fault::internal_error());
    f.push(Fault::access_denied());
    let replies: Vec<Reply> = (0..4).map(|_| get(&f, "/k", "n1")).collect();
    assert_eq!(
        replies.iter().map(status).collect::<Vec<_>>(),
        vec![Some(503), Some(500), Some(403), Some(200)]
    );
    let body = replies[0].response().unwrap().text();
    assert!(
        body.contains("<Code>SlowDown</Code>") && body.contains("<RequestId>"),
        "{body}"
    );
    assert!(replies[1]
        .response()
        .unwrap()
        .text()
        .contains("<Code>InternalError</Code>"));
    assert!(replies[2]
        .response()
        .unwrap()
        .text()
        .contains("<Code>AccessDenied</Code>"));
    assert_eq!(
        n.load(Ordering::SeqCst),
        1,
        "only the unfaulted request reached the handler"
    );
}

#[test]
fn push_n_and_predicates_pick_the_requests() {
    let (h, _) = counting();
    let f = Faulty::new(h);
    f.push_matching(|r, _| r.path.starts_with("/put"), Fault::reset());
    f.push_n(Fault::slow_down(), 2);
    // The first scripted rule does not match /get, so push_n's rule fires for it.
    assert_eq!(status(&get(&f, "/get", "n")), Some(503));
    assert!(matches!(
        get(&f, "/put", "n"),
        Reply::Fail {
            failure: CallFailure::BrokenConnection,
            ..
        }
    ));
    assert_eq!(status(&get(&f, "/put", "n")), Some(503));
    assert_eq!(status(&get(&f, "/put", "n")), Some(200));
}

#[test]
fn always_rules_last_until_removed() {
    let (h, _) = counting();
    let f = Faulty::new(h);
    let id = f.always(
        |r, _| r.method == "GET",
        Fault::status(500, "InternalError", "boom"),
    );
    for _ in 0..3 {
        assert_eq!(status(&get(&f, "/x", "n")), Some(500));
    }
    assert!(f.remove(id));
    assert!(!f.remove(id));
    assert_eq!(status(&get(&f, "/x", "n")), Some(200));
}

#[test]
fn failure_kinds_map_to_replies() {
    let (h, n) = counting();
    let f = Faulty::new(h);
    f.push(Fault::timeout(Duration::from_secs(3)));
    f.push(Fault::Hang);
    f.push(Fault::NoCallback);
    f.push(Fault::Latency(Duration::from_secs(2)));
    f.push(Fault::LoseResponse {
        failure: CallFailure::BrokenConnection,
        after: Duration::ZERO,
    });
    f.push(Fault::Respond(HttpResponse::new(418)));
    assert_eq!(
        get(&f, "/", "n"),
        Reply::Fail {
            failure: CallFailure::Timeout,
            after: Duration::from_secs(3)
        }
    );
    assert_eq!(get(&f, "/", "n"), Reply::Hang);
    assert_eq!(get(&f, "/", "n"), Reply::NoCallback);
    assert_eq!(n.load(Ordering::SeqCst), 0);
    match get(&f, "/", "n") {
        Reply::Response { response, latency } => {
            assert_eq!(response.status, 200);
            assert_eq!(
                latency,
                Duration::from_millis(2005),
                "added to the handler's own latency"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        get(&f, "/", "n"),
        Reply::Fail {
            failure: CallFailure::BrokenConnection,
            ..
        }
    ));
    assert_eq!(
        n.load(Ordering::SeqCst),
        2,
        "a lost response was still processed"
    );
    assert_eq!(status(&get(&f, "/", "n")), Some(418));
}

#[test]
fn truncation_keeps_the_original_length() {
    let (h, _) = counting();
    let f = Faulty::new(h);
    f.push(Fault::Truncate { keep: 2 });
    let r = get(&f, "/abcdef", "n");
    let resp = r.response().unwrap();
    assert_eq!(resp.body, b"ok");
    assert_eq!(resp.header("content-length"), Some("10"));
    assert!(harness_mocks::faults::is_truncated(resp));
}

#[test]
fn partitions_cut_one_node_only_until_healed() {
    let (h, n) = counting();
    let f = Faulty::new(h);
    f.partition("node-b");
    assert!(f.is_partitioned("node-b"));
    assert!(matches!(
        get(&f, "/", "node-b"),
        Reply::Fail {
            failure: CallFailure::BrokenConnection,
            ..
        }
    ));
    assert_eq!(status(&get(&f, "/", "node-a")), Some(200));
    f.heal("node-b");
    assert_eq!(status(&get(&f, "/", "node-b")), Some(200));
    assert_eq!(n.load(Ordering::SeqCst), 2);
    let sources: Vec<_> = f.events().iter().map(|e| e.source).collect();
    assert_eq!(sources, vec![Some("partition"), None, None]);
}

fn random_pattern(seed: u64) -> Vec<bool> {
    let (h, _) = counting();
    let f = Faulty::new(h);
    f.seed(seed);
    f.random(0.3, Fault::slow_down());
    (0..200)
        .map(|_| status(&get(&f, "/", "n")) == Some(503))
        .collect()
}

#[test]
fn random_faults_follow_the_seed_and_the_probability() {
    let a = random_pattern(7);
    assert_eq!(a, random_pattern(7), "same seed, same faults");
    assert_ne!(a, random_pattern(8), "another seed, other faults");
    let hits = a.iter().filter(|x| **x).count();
    assert!((30..=90).contains(&hits), "about 30% of 200, got {hits}");
}

#[test]
fn random_matching_only_touches_matching_requests_and_the_log_says_why() {
    let (h, _) = counting();
    let f = Faulty::new(h);
    f.random_matching(|r, _| r.path == "/always", 1.0, Fault::internal_error());
    assert_eq!(status(&get(&f, "/always", "n")), Some(500));
    assert_eq!(status(&get(&f, "/never", "n")), Some(200));
    let ev = f.events();
    assert_eq!(ev.len(), 2);
    assert_eq!(
        (ev[0].seq, ev[0].path.as_str(), ev[0].source),
        (0, "/always", Some("random"))
    );
    assert_eq!(ev[0].fault, Some(Fault::internal_error()));
    assert_eq!(ev[1].fault, None);
    assert_eq!(f.injected().len(), 1);
    f.clear();
    assert_eq!(status(&get(&f, "/always", "n")), Some(200));
}

#[test]
fn clones_share_rules_and_log() {
    let (h, _) = counting();
    let f = Faulty::new(h);
    let g = f.clone();
    g.push(Fault::slow_down());
    assert_eq!(status(&get(&f, "/", "n")), Some(503));
    assert_eq!(g.events().len(), 1);
}
