//! The event queue in virtual time: advancing the clock, delivering due events in order (ticks,
//! call answers, queue notifications), and turning a guest call's outbox into events.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use super::{Timer, World};
use crate::abi::{Callback, Outbox};
use crate::http::{CallFailure, HttpResponse};
use crate::state::lock;

/// How a dispatched call ends.
#[derive(Clone, Debug)]
pub(super) enum CallResult {
    /// The answer, and whether it came over the wire ([`crate::http::Handler::on_the_wire`]).
    Response(HttpResponse, bool),
    Failed(CallFailure),
}

/// A call's answer, due for delivery to the context that dispatched it.
#[derive(Clone, Debug)]
pub(super) struct CallDone {
    pub node: usize,
    pub worker: usize,
    pub generation: u64,
    pub token: u32,
    pub context: u32,
    pub result: CallResult,
    /// A second delivery of an answer already delivered (hostile profile).
    pub duplicate: bool,
}

#[derive(Clone, Debug)]
pub(super) enum Event {
    Tick {
        node: usize,
        worker: usize,
        root: u32,
        timer: u64,
    },
    CallDone(CallDone),
    QueueReady {
        node: usize,
        worker: usize,
        generation: u64,
        context: u32,
        queue: u32,
    },
    /// A paused exchange's `max_pause` is over (ignored if it resumed since: `seq`).
    ExchangeTimeout {
        id: usize,
        seq: u64,
    },
    /// A gRPC unary call's answer (Envoy profile).
    GrpcDone {
        node: usize,
        worker: usize,
        generation: u64,
        token: u32,
        context: u32,
        reply: crate::grpc::GrpcReply,
    },
}

pub(super) struct Scheduled {
    due: Duration,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

impl World {
    /// Advances virtual time, delivering every due tick, answer and notification in order.
    pub fn advance(&mut self, by: Duration) {
        let deadline = self.elapsed() + by;
        self.run_until(deadline);
    }

    /// Advances in `step`s until `done` holds or `limit` passes; returns whether it held.
    pub fn advance_until(
        &mut self,
        limit: Duration,
        step: Duration,
        mut done: impl FnMut(&World) -> bool,
    ) -> bool {
        let deadline = self.elapsed() + limit;
        while self.elapsed() < deadline {
            if done(self) {
                return true;
            }
            let next = (self.elapsed() + step).min(deadline);
            self.run_until(next);
        }
        done(self)
    }

    /// Runs for `duration` of real time, delivering events when the wall clock reaches them.
    pub fn run_realtime(&mut self, duration: Duration) {
        let start_wall = Instant::now();
        let start_virtual = self.elapsed();
        let end = start_virtual + duration;
        loop {
            let next_due = self.events.peek().map(|Reverse(s)| s.due).unwrap_or(end);
            let target = next_due.min(end);
            let wait = (target - start_virtual).saturating_sub(start_wall.elapsed());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            self.run_until(target);
            if target >= end {
                break;
            }
        }
    }

    /// Events waiting to be delivered.
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    /// Delivers events due up to `deadline`, then moves the clock to it.
    fn run_until(&mut self, deadline: Duration) {
        while let Some(Reverse(next)) = self.events.peek() {
            if next.due > deadline {
                break;
            }
            let Some(Reverse(next)) = self.events.pop() else {
                break;
            };
            self.shared.clock.set_elapsed(next.due);
            self.deliver(next.event);
            // What the event did may resume paused exchanges.
            self.poll_exchanges();
        }
        self.shared.clock.set_elapsed(deadline);
    }

    /// When the next event is due.
    pub(super) fn next_event_due(&self) -> Option<Duration> {
        self.events.peek().map(|Reverse(s)| s.due)
    }

    /// Delivers events up to `deadline` (see `run_until`).
    pub(super) fn run_to(&mut self, deadline: Duration) {
        self.run_until(deadline);
    }

    pub(super) fn schedule(&mut self, due: Duration, event: Event) {
        self.seq += 1;
        self.events.push(Reverse(Scheduled {
            due,
            seq: self.seq,
            event,
        }));
    }

    fn deliver(&mut self, event: Event) {
        match event {
            Event::Tick {
                node,
                worker,
                root,
                timer,
            } => self.deliver_tick(node, worker, root, timer),
            Event::CallDone(done) => self.deliver_call(done),
            Event::QueueReady {
                node,
                worker,
                generation,
                context,
                queue,
            } => {
                if self.nodes[node].workers[worker].generation != generation {
                    return;
                }
                // Only to a context that still exists: a finished HTTP context gets nothing
                // (ngx_wasm_module; the Rust SDK would panic on an unknown context).
                let is_root = self.nodes[node].workers[worker]
                    .roots
                    .iter()
                    .any(|r| r.id == context);
                let cb = if is_root {
                    Callback::QueueReady
                } else if self.live_http_context(node, worker, context) {
                    Callback::HttpQueueReady
                } else {
                    return;
                };
                self.invoke(
                    node,
                    worker,
                    cb,
                    context,
                    "proxy_on_queue_ready",
                    &[context as i32, queue as i32],
                );
            }
            Event::ExchangeTimeout { id, seq } => self.exchange_timeout(super::ExchangeId(id), seq),
            Event::GrpcDone {
                node,
                worker,
                generation,
                token,
                context,
                reply,
            } => self.deliver_grpc(node, worker, generation, token, context, reply),
        }
    }

    fn deliver_tick(&mut self, node: usize, worker: usize, root: u32, timer: u64) {
        let period = self.nodes[node].workers[worker]
            .roots
            .iter()
            .find(|r| r.id == root)
            .and_then(|r| r.timers.iter().find(|t| t.id == timer))
            .map(|t| t.period);
        let Some(period) = period else { return };
        self.wake(node, worker);
        if self.nodes[node].workers[worker].dead.is_some() {
            return;
        }
        // Reschedule first: a tick that traps and recovers keeps its timer (ngx).
        let next = self.elapsed() + period;
        self.schedule(
            next,
            Event::Tick {
                node,
                worker,
                root,
                timer,
            },
        );
        self.invoke(
            node,
            worker,
            Callback::Tick,
            root,
            "proxy_on_tick",
            &[root as i32],
        );
        self.hostile_unknown_context(node, worker);
    }

    /// Acts on what a guest call left in its outbox: tick periods, calls, queue notifications.
    pub(super) fn process_outbox(&mut self, n: usize, w: usize, outbox: Outbox) {
        let now = self.elapsed();
        for (root, period_ms) in outbox.tick_periods {
            self.set_tick_period(n, w, root, period_ms);
        }
        for call in outbox.calls {
            self.send_call(n, w, call, now);
        }
        for (token, context, request) in outbox.grpc_calls {
            self.send_grpc(n, w, token, context, request, now);
        }
        for queue in outbox.enqueued {
            let owner = lock(&self.nodes[n].shared.queues)
                .get_mut(queue)
                .map(|q| (q.owner_worker, q.owner_context, q.owner_generation));
            if let Some((worker, context, generation)) = owner {
                self.schedule(
                    now,
                    Event::QueueReady {
                        node: n,
                        worker,
                        generation,
                        context,
                        queue,
                    },
                );
            }
        }
    }

    /// A root context's new tick period (0 stops its ticks). After a recovery ngx_wasm_module
    /// adds the new timer beside the old ones instead of replacing them.
    fn set_tick_period(&mut self, n: usize, w: usize, root: u32, period_ms: u32) {
        let timer_id = self.next_timer;
        let Some(rt) = self.nodes[n].workers[w]
            .roots
            .iter_mut()
            .find(|r| r.id == root)
        else {
            return;
        };
        if period_ms == 0 {
            rt.timers.clear();
            return;
        }
        let period = Duration::from_millis(u64::from(period_ms));
        if rt.add_timer_on_next_period {
            rt.add_timer_on_next_period = false;
        } else {
            rt.timers.clear();
        }
        rt.timers.push(Timer {
            id: timer_id,
            period,
        });
        self.next_timer += 1;
        let due = self.elapsed() + period;
        self.schedule(
            due,
            Event::Tick {
                node: n,
                worker: w,
                root,
                timer: timer_id,
            },
        );
    }
}
