//! When the node may upload: Kong's debounce, retries and the in-flight guard, as a small
//! serialisable state that lives in the node-wide record (`node_lock`), so that every worker and
//! filter instance of a node sees the same schedule.
//!
//! Rule (Kong's documented behaviour, README.md "Debounce"): an upload starts no sooner than `delay` after the
//! previous successful upload started. Changes arriving in between are not queued: whatever is
//! newest when the window ends is exported (A exported at 0; B, C, D by 60 → D at 60). A change
//! while idle for longer than `delay` goes out on the next tick. Content equal to the last exported
//! content is never uploaded. A change during an upload waits for it and then for the window.
//! After a failure, the retry waits a jittered backoff; if newer content arrives meanwhile it takes
//! the pending retry's slot (same time) and its attempt count starts again.

use crate::json;
use crate::json::{Map, Value};

use crate::backoff::{Backoff, Rng};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InFlight {
    pub hash: String,
    pub started_at: u64,
    /// After this (host ms) the upload counts as abandoned (its worker may have died).
    pub deadline: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// Hash of the content that needs no upload: uploaded by us, or found in storage.
    pub exported: Option<String>,
    /// Earliest host time (ms) at which the next upload may start.
    pub not_before: u64,
    pub in_flight: Option<InFlight>,
    /// Consecutive failures for `failing`.
    pub failures: u32,
    pub failing: Option<String>,
}

// Shared-data encoding, written by hand rather than derived: serde's derive machinery (typed
// deserializers, their error paths and float formatting) costs ~25 KB of module size. Missing or
// mistyped fields read as their defaults, as `#[serde(default)]` did.

pub(crate) fn get_u64(m: &Map, k: &str) -> u64 {
    m.get(k).and_then(Value::as_u64).unwrap_or(0)
}

pub(crate) fn get_string(m: &Map, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_string)
}

impl InFlight {
    pub fn to_json(&self) -> Value {
        json!({"hash": self.hash, "started_at": self.started_at, "deadline": self.deadline})
    }

    pub fn from_json(v: &Value) -> Option<InFlight> {
        let m = v.as_object()?;
        Some(InFlight {
            hash: get_string(m, "hash")?,
            started_at: get_u64(m, "started_at"),
            deadline: get_u64(m, "deadline"),
        })
    }
}

impl Schedule {
    pub fn to_json(&self) -> Value {
        json!({
            "exported": self.exported,
            "not_before": self.not_before,
            "in_flight": self.in_flight.as_ref().map(InFlight::to_json),
            "failures": self.failures,
            "failing": self.failing,
        })
    }

    pub fn from_json(v: &Value) -> Schedule {
        let Some(m) = v.as_object() else {
            return Schedule::default();
        };
        Schedule {
            exported: get_string(m, "exported"),
            not_before: get_u64(m, "not_before"),
            in_flight: m.get("in_flight").and_then(InFlight::from_json),
            failures: u32::try_from(get_u64(m, "failures")).unwrap_or(u32::MAX),
            failing: get_string(m, "failing"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// This content is already in storage.
    UpToDate,
    /// An upload (by any worker of this node) is in flight until this time.
    Busy {
        until: u64,
    },
    /// Debounce window or retry backoff not over yet.
    Wait {
        until: u64,
    },
    Go,
}

impl Schedule {
    pub fn decide(&self, current_hash: &str, now: u64) -> Decision {
        if let Some(f) = &self.in_flight {
            if now < f.deadline {
                return Decision::Busy { until: f.deadline };
            }
        }
        if self.exported.as_deref() == Some(current_hash) {
            return Decision::UpToDate;
        }
        if now < self.not_before {
            return Decision::Wait {
                until: self.not_before,
            };
        }
        Decision::Go
    }

    pub fn begin(&mut self, hash: &str, now: u64, deadline: u64) {
        if self.failing.as_deref() != Some(hash) {
            self.failures = 0;
            self.failing = None;
        }
        self.in_flight = Some(InFlight {
            hash: hash.to_string(),
            started_at: now,
            deadline,
        });
    }

    /// The upload that started at `started_at` stored `hash`.
    pub fn succeeded(&mut self, hash: &str, started_at: u64, delay_ms: u64) {
        self.exported = Some(hash.to_string());
        self.in_flight = None;
        self.failures = 0;
        self.failing = None;
        self.not_before = started_at.saturating_add(delay_ms);
    }

    /// Nothing to upload for `hash` (storage already has it, or something newer).
    pub fn settled(&mut self, hash: &str) {
        self.exported = Some(hash.to_string());
        self.in_flight = None;
        self.failures = 0;
        self.failing = None;
    }

    /// Records a failure and schedules the retry; returns (attempt number, delay ms).
    pub fn failed(&mut self, hash: &str, now: u64, backoff: &Backoff, rng: &mut Rng) -> (u32, u64) {
        self.in_flight = None;
        if self.failing.as_deref() == Some(hash) {
            self.failures = self.failures.saturating_add(1);
        } else {
            self.failing = Some(hash.to_string());
            self.failures = 1;
        }
        let delay = backoff.delay(self.failures, rng);
        self.not_before = now.saturating_add(delay);
        (self.failures, delay)
    }

    /// Clears the in-flight mark without judging the outcome (e.g. a follow-up request is due).
    pub fn release(&mut self) {
        self.in_flight = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: u64 = 60_000;

    /// Drives a schedule the way the engine does: one tick per second, each upload answered
    /// `answer_ms` after it started; returns (start time, content) of every upload.
    fn run(changes: &[(u64, &str)], until: u64, answer_ms: u64) -> Vec<(u64, String)> {
        let mut s = Schedule::default();
        let mut current: Option<&str> = None;
        let mut uploads = Vec::new();
        let mut pending: Option<(String, u64)> = None;
        for now in (0..=until).step_by(100) {
            for (t, c) in changes {
                if *t == now {
                    current = Some(c);
                }
            }
            if let Some((h, started)) = pending.clone() {
                if now >= started + answer_ms {
                    s.succeeded(&h, started, DELAY);
                    pending = None;
                }
            }
            if now % 1000 != 0 {
                continue;
            }
            if let Some(c) = current {
                if s.decide(c, now) == Decision::Go {
                    s.begin(c, now, now + 10_000);
                    uploads.push((now, c.to_string()));
                    pending = Some((c.to_string(), now));
                }
            }
        }
        uploads
    }

    #[test]
    fn kong_timeline_a_then_b_c_d_exports_d_after_the_delay() {
        let ups = run(
            &[(0, "A"), (10_000, "B"), (20_000, "C"), (30_000, "D")],
            200_000,
            300,
        );
        assert_eq!(ups, vec![(0, "A".to_string()), (60_000, "D".to_string())]);
    }

    #[test]
    fn idle_change_goes_out_on_the_next_tick() {
        let ups = run(&[(0, "A"), (100_000, "B")], 200_000, 300);
        assert_eq!(ups, vec![(0, "A".into()), (100_000, "B".into())]);
    }

    #[test]
    fn identical_content_is_not_uploaded_twice() {
        let ups = run(
            &[(0, "A"), (70_000, "B"), (75_000, "A"), (200_000, "A")],
            300_000,
            300,
        );
        // B was exported at 70 s; A again after B's window is a change back, exported once at 130 s.
        assert_eq!(
            ups,
            vec![(0, "A".into()), (70_000, "B".into()), (130_000, "A".into())]
        );
        let ups = run(&[(0, "A"), (61_000, "A"), (200_000, "A")], 300_000, 300);
        assert_eq!(ups, vec![(0, "A".into())]);
    }

    #[test]
    fn change_during_upload_is_exported_after_it() {
        // Upload of A takes 5 s; B arrives at 2 s, while A is in flight.
        let ups = run(&[(0, "A"), (2_000, "B")], 200_000, 5_000);
        assert_eq!(ups, vec![(0, "A".into()), (60_000, "B".into())]);
    }

    #[test]
    fn in_flight_blocks_until_deadline_then_counts_as_abandoned() {
        let mut s = Schedule::default();
        s.begin("A", 0, 10_000);
        assert_eq!(s.decide("B", 5_000), Decision::Busy { until: 10_000 });
        assert_eq!(s.decide("B", 10_000), Decision::Go);
    }

    #[test]
    fn failures_back_off_and_newer_content_replaces_the_pending_retry() {
        let b = Backoff {
            base_ms: 1000,
            max_ms: 8000,
        };
        let mut rng = Rng::new(1);
        let mut s = Schedule::default();
        s.begin("A", 0, 10_000);
        let (n, d1) = s.failed("A", 100, &b, &mut rng);
        assert_eq!(n, 1);
        assert!((500..=1000).contains(&d1));
        assert_eq!(s.decide("A", 100), Decision::Wait { until: 100 + d1 });
        s.begin("A", 100 + d1, 20_000);
        let (n, d2) = s.failed("A", 2000, &b, &mut rng);
        assert_eq!(n, 2);
        assert!((1000..=2000).contains(&d2));
        // B arrives while A waits for its retry: B takes the same slot, with a fresh attempt count.
        assert_eq!(s.decide("B", 2000), Decision::Wait { until: 2000 + d2 });
        assert_eq!(s.decide("B", 2000 + d2), Decision::Go);
        s.begin("B", 2000 + d2, 30_000);
        let (n, _) = s.failed("B", 2500 + d2, &b, &mut rng);
        assert_eq!(n, 1, "newer content restarts the attempt count");
        s.begin("B", 9000, 30_000);
        s.succeeded("B", 9000, DELAY);
        assert_eq!(s.decide("B", 9001), Decision::UpToDate);
        assert_eq!(
            s.decide("C", 9001),
            Decision::Wait {
                until: 9000 + DELAY
            }
        );
    }

    #[test]
    fn serialises_compactly_and_round_trips() {
        let mut s = Schedule::default();
        s.begin("h1", 5, 10);
        s.failed(
            "h1",
            20,
            &Backoff {
                base_ms: 10,
                max_ms: 10,
            },
            &mut Rng::new(1),
        );
        s.begin("h2", 30, 40);
        s.exported = Some("h0".into());
        let json = s.to_json().to_string();
        assert!(json.len() < 200, "{json}");
        let back: Value = crate::json::parse(json.as_bytes()).unwrap();
        assert_eq!(Schedule::from_json(&back), s);
        assert_eq!(
            Schedule::from_json(&json!({"failures": "x"})),
            Schedule::default()
        );
    }
}
