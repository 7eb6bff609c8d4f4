//! Fault injection around any handler.
//!
//! `Faulty::new(inner)` is itself a `Handler` (cheap to clone, all clones share state). Faults come
//! from four sources, checked in this order for every request:
//! 1. partitions: a request whose `CallContext.node` is partitioned fails with `BrokenConnection`;
//! 2. scripted rules (`push`, `push_n`, `push_matching`, `always`), first matching rule wins, in the
//!    order they were added; a rule with a count is removed once used up;
//! 3. probabilistic rules (`random`, `random_matching`), drawn from a ChaCha RNG seeded by `seed`,
//!    so a run with the same seed and the same request order injects the same faults;
//! 4. otherwise the request goes to the inner handler untouched.
//!
//! Every request is logged (`events()`) with the fault that fired for it, if any.
//!
//! A truncated body is a `Reply::Response` whose `content-length` header is larger than its body;
//! `serve` sends it as such and then drops the connection.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::http::{
    CallContext, CallFailure, Handler, HttpRequest, HttpResponse, Reply, SharedHandler,
};
use crate::s3::xml::error_body;

/// What to do to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and an S3-style XML error body (`<Error><Code>code</Code>...`);
    /// the inner handler never sees the request.
    Status {
        status: u16,
        code: String,
        message: String,
    },
    /// Answer with exactly this response; the inner handler never sees the request.
    Respond(HttpResponse),
    /// Pass the request on, then add this much latency to the inner reply.
    Latency(Duration),
    /// The call fails after `after` without reaching the inner handler (reset, timeout, ...).
    Fail {
        failure: CallFailure,
        after: Duration,
    },
    /// The inner handler processes the request (its side effects happen), then the response is
    /// lost: the call fails with `failure`. The nastiest case for conditional writes.
    LoseResponse {
        failure: CallFailure,
        after: Duration,
    },
    /// The server never answers.
    Hang,
    /// The host never calls back.
    NoCallback,
    /// Pass the request on and cut the response body to `keep` bytes, keeping the original
    /// `content-length` so the truncation is visible.
    Truncate { keep: usize },
}

impl Fault {
    /// 503 SlowDown, as S3 throttles.
    pub fn slow_down() -> Fault {
        Fault::status(503, "SlowDown", "Please reduce your request rate.")
    }
    /// 500 InternalError.
    pub fn internal_error() -> Fault {
        Fault::status(
            500,
            "InternalError",
            "We encountered an internal error. Please try again.",
        )
    }
    /// 403 AccessDenied.
    pub fn access_denied() -> Fault {
        Fault::status(403, "AccessDenied", "Access Denied")
    }
    pub fn status(status: u16, code: &str, message: &str) -> Fault {
        Fault::Status {
            status,
            code: code.to_string(),
            message: message.to_string(),
        }
    }
    /// Connection reset before the request reached the server.
    pub fn reset() -> Fault {
        Fault::Fail {
            failure: CallFailure::BrokenConnection,
            after: Duration::ZERO,
        }
    }
    /// Connection timeout after `after`.
    pub fn timeout(after: Duration) -> Fault {
        Fault::Fail {
            failure: CallFailure::Timeout,
            after,
        }
    }
}

/// Decides whether a rule applies to a request.
pub type Predicate = Arc<dyn Fn(&HttpRequest, &CallContext) -> bool + Send + Sync>;

/// Identifies a rule for `remove`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleId(u64);

struct Rule {
    id: RuleId,
    pred: Option<Predicate>,
    fault: Fault,
    /// `None` = forever.
    remaining: Option<usize>,
}

struct RandomRule {
    id: RuleId,
    pred: Option<Predicate>,
    probability: f64,
    fault: Fault,
}

/// One request seen by a `Faulty`, and the fault injected into it (if any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultEvent {
    /// 0-based request number on this injector.
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub node: String,
    pub time: SystemTime,
    pub fault: Option<Fault>,
    /// Why the fault fired: "partition", "scripted" or "random".
    pub source: Option<&'static str>,
}

struct State {
    next_id: u64,
    seq: u64,
    partitioned: HashSet<String>,
    rules: Vec<Rule>,
    random: Vec<RandomRule>,
    rng: ChaCha8Rng,
    events: Vec<FaultEvent>,
}

/// A fault injector around any handler.
#[derive(Clone)]
pub struct Faulty {
    inner: SharedHandler,
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faulty").finish_non_exhaustive()
    }
}

impl Faulty {
    pub fn new(inner: SharedHandler) -> Faulty {
        Faulty {
            inner,
            state: Arc::new(Mutex::new(State {
                next_id: 0,
                seq: 0,
                partitioned: HashSet::new(),
                rules: Vec::new(),
                random: Vec::new(),
                rng: ChaCha8Rng::seed_from_u64(0),
                events: Vec::new(),
            })),
        }
    }

    /// Convenience: `Arc::new(self.clone())` as a `SharedHandler`.
    pub fn shared(&self) -> SharedHandler {
        Arc::new(self.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not poison the injector for the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add_rule(&self, pred: Option<Predicate>, fault: Fault, remaining: Option<usize>) -> RuleId {
        let mut s = self.lock();
        s.next_id += 1;
        let id = RuleId(s.next_id);
        s.rules.push(Rule {
            id,
            pred,
            fault,
            remaining,
        });
        id
    }

    /// The next request (after earlier scripted ones) gets `fault`.
    pub fn push(&self, fault: Fault) -> RuleId {
        self.add_rule(None, fault, Some(1))
    }

    /// The next `n` requests get `fault`.
    pub fn push_n(&self, fault: Fault, n: usize) -> RuleId {
        self.add_rule(None, fault, Some(n))
    }

    /// The next request matching `pred` gets `fault`.
    pub fn push_matching<P>(&self, pred: P, fault: Fault) -> RuleId
    where
        P: Fn(&HttpRequest, &CallContext) -> bool + Send + Sync + 'static,
    {
        self.add_rule(Some(Arc::new(pred)), fault, Some(1))
    }

    /// The next `n` requests matching `pred` get `fault`.
    pub fn push_matching_n<P>(&self, pred: P, fault: Fault, n: usize) -> RuleId
    where
        P: Fn(&HttpRequest, &CallContext) -> bool + Send + Sync + 'static,
    {
        self.add_rule(Some(Arc::new(pred)), fault, Some(n))
    }

    /// Every request matching `pred` gets `fault` until the rule is removed.
    pub fn always<P>(&self, pred: P, fault: Fault) -> RuleId
    where
        P: Fn(&HttpRequest, &CallContext) -> bool + Send + Sync + 'static,
    {
        self.add_rule(Some(Arc::new(pred)), fault, None)
    }

    /// Reseeds the random source used by probabilistic rules.
    pub fn seed(&self, seed: u64) {
        self.lock().rng = ChaCha8Rng::seed_from_u64(seed);
    }

    /// Each request gets `fault` with `probability` (0.0..=1.0).
    pub fn random(&self, probability: f64, fault: Fault) -> RuleId {
        self.add_random(None, probability, fault)
    }

    /// Each request matching `pred` gets `fault` with `probability`.
    pub fn random_matching<P>(&self, pred: P, probability: f64, fault: Fault) -> RuleId
    where
        P: Fn(&HttpRequest, &CallContext) -> bool + Send + Sync + 'static,
    {
        self.add_random(Some(Arc::new(pred)), probability, fault)
    }

    fn add_random(&self, pred: Option<Predicate>, probability: f64, fault: Fault) -> RuleId {
        let mut s = self.lock();
        s.next_id += 1;
        let id = RuleId(s.next_id);
        s.random.push(RandomRule {
            id,
            pred,
            probability: probability.clamp(0.0, 1.0),
            fault,
        });
        id
    }

    /// Removes a scripted or probabilistic rule; false when it was already gone.
    pub fn remove(&self, id: RuleId) -> bool {
        let mut s = self.lock();
        let before = s.rules.len() + s.random.len();
        s.rules.retain(|r| r.id != id);
        s.random.retain(|r| r.id != id);
        before != s.rules.len() + s.random.len()
    }

    /// Removes every rule and heals every partition (the log is kept).
    pub fn clear(&self) {
        let mut s = self.lock();
        s.rules.clear();
        s.random.clear();
        s.partitioned.clear();
    }

    /// Requests from `node` fail with `BrokenConnection` until `heal(node)`.
    pub fn partition(&self, node: &str) {
        self.lock().partitioned.insert(node.to_string());
    }

    pub fn heal(&self, node: &str) {
        self.lock().partitioned.remove(node);
    }

    pub fn is_partitioned(&self, node: &str) -> bool {
        self.lock().partitioned.contains(node)
    }

    /// Every request seen so far, with the fault that fired for it.
    pub fn events(&self) -> Vec<FaultEvent> {
        self.lock().events.clone()
    }

    /// Only the requests that got a fault.
    pub fn injected(&self) -> Vec<FaultEvent> {
        self.lock()
            .events
            .iter()
            .filter(|e| e.fault.is_some())
            .cloned()
            .collect()
    }

    /// Picks the fault for this request and logs it. The lock is released before the inner
    /// handler runs, so a slow inner handler does not serialise unrelated requests.
    fn choose(&self, req: &HttpRequest, ctx: &CallContext) -> Option<Fault> {
        let mut s = self.lock();
        let (fault, source) = if s.partitioned.contains(&ctx.node) {
            (Some(Fault::reset()), Some("partition"))
        } else if let Some(i) = s
            .rules
            .iter()
            .position(|r| r.remaining != Some(0) && r.pred.as_ref().is_none_or(|p| p(req, ctx)))
        {
            let rule = &mut s.rules[i];
            let fault = rule.fault.clone();
            if let Some(n) = rule.remaining.as_mut() {
                *n -= 1;
                if *n == 0 {
                    s.rules.remove(i);
                }
            }
            (Some(fault), Some("scripted"))
        } else {
            // One draw per matching rule, in order, so the sequence only depends on the seed and
            // the requests.
            let mut chosen = None;
            let State { random, rng, .. } = &mut *s;
            for r in random.iter() {
                if r.pred.as_ref().is_none_or(|p| p(req, ctx)) && rng.gen_bool(r.probability) {
                    chosen = Some(r.fault.clone());
                    break;
                }
            }
            let source = chosen.as_ref().map(|_| "random");
            (chosen, source)
        };
        let seq = s.seq;
        s.seq += 1;
        s.events.push(FaultEvent {
            seq,
            method: req.method.clone(),
            path: req.path.clone(),
            node: ctx.node.clone(),
            time: ctx.now,
            fault: fault.clone(),
            source,
        });
        fault
    }
}

impl Handler for Faulty {
    fn handle(&self, req: &HttpRequest, ctx: &CallContext) -> Reply {
        let Some(fault) = self.choose(req, ctx) else {
            return self.inner.handle(req, ctx);
        };
        match fault {
            Fault::Status {
                status,
                code,
                message,
            } => Reply::now(
                HttpResponse::new(status)
                    .with_header("content-type", "application/xml")
                    .with_body(error_body(&code, &message, "", &request_id(ctx))),
            ),
            Fault::Respond(resp) => Reply::now(resp),
            Fault::Latency(extra) => match self.inner.handle(req, ctx) {
                Reply::Response { response, latency } => Reply::Response {
                    response,
                    latency: latency + extra,
                },
                Reply::Fail { failure, after } => Reply::Fail {
                    failure,
                    after: after + extra,
                },
                other => other,
            },
            Fault::Fail { failure, after } => Reply::Fail { failure, after },
            Fault::LoseResponse { failure, after } => {
                let _ = self.inner.handle(req, ctx);
                Reply::Fail { failure, after }
            }
            Fault::Hang => Reply::Hang,
            Fault::NoCallback => Reply::NoCallback,
            Fault::Truncate { keep } => match self.inner.handle(req, ctx) {
                Reply::Response {
                    mut response,
                    latency,
                } => {
                    let full = response.body.len();
                    if keep < full {
                        response.body.truncate(keep);
                        response.headers.retain(|(k, _)| k != "content-length");
                        response
                            .headers
                            .push(("content-length".to_string(), full.to_string()));
                    }
                    Reply::Response { response, latency }
                }
                other => other,
            },
        }
    }
}

/// A request id for injected errors, unique enough for logs.
fn request_id(ctx: &CallContext) -> String {
    let nanos = ctx
        .now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("FAULT{:016X}", nanos as u64)
}

/// True when a response advertises more body than it carries (a truncated body).
pub fn is_truncated(resp: &HttpResponse) -> bool {
    resp.header("content-length")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| n > resp.body.len())
}
