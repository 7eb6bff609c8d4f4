//! The world's time: advancing the [`Scheduler`](super::scheduler)'s clock event by event, and
//! routing each due event to the worker or exchange it concerns. After each event, paused
//! exchanges get a chance to go on (what the event did may have resumed them).

use std::time::{Duration, Instant};

use super::scheduler::Event;
use super::World;
use crate::abi::Callback;

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

    /// [`World::advance_until`] on the wall clock: runs in `step`s of real time until `done` holds
    /// or `limit` passes. For a world that talks to real servers whose clocks matter to the
    /// filter (the election judges freshness on the store's clock): advancing virtual time
    /// faster than the server's makes the node's clock run ahead of it without bound.
    pub fn run_realtime_until(
        &mut self,
        limit: Duration,
        step: Duration,
        mut done: impl FnMut(&World) -> bool,
    ) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if done(self) {
                return true;
            }
            self.run_realtime(step.min(deadline.saturating_duration_since(Instant::now())));
        }
        done(self)
    }

    /// Runs for `duration` of real time, delivering events when the wall clock reaches them.
    pub fn run_realtime(&mut self, duration: Duration) {
        let start_wall = Instant::now();
        let start_virtual = self.elapsed();
        let end = start_virtual + duration;
        loop {
            let next_due = self.scheduler.next_due().unwrap_or(end);
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
        self.scheduler.len()
    }

    /// Delivers events due up to `deadline`, then moves the clock to it.
    pub(super) fn run_until(&mut self, deadline: Duration) {
        while let Some(event) = self.scheduler.pop_due(deadline) {
            self.deliver(event);
            // What the event did may resume paused exchanges.
            self.poll_exchanges();
        }
        self.scheduler.move_to(deadline);
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
            } => self.deliver_queue_ready(node, worker, generation, context, queue),
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

    fn deliver_tick(&mut self, n: usize, w: usize, root: u32, timer: u64) {
        let Some(period) = self.nodes[n].workers[w].timer_period(root, timer) else {
            return;
        };
        self.on_worker(n, w, |worker| worker.wake());
        if !self.nodes[n].workers[w].is_running() {
            return;
        }
        // Reschedule first: a tick that traps and recovers keeps its timer (ngx).
        let next = self.elapsed() + period;
        let event = Event::Tick {
            node: n,
            worker: w,
            root,
            timer,
        };
        self.scheduler.schedule(next, event);
        let args = [root as i32];
        self.on_worker(n, w, |worker| {
            worker.invoke(Callback::Tick, root, "proxy_on_tick", &args)
        });
        self.hostile_unknown_context(n, w);
    }

    /// `on_queue_ready`, only to a context that still exists: a finished HTTP context gets
    /// nothing (ngx_wasm_module; the Rust SDK would panic on an unknown context).
    fn deliver_queue_ready(&mut self, n: usize, w: usize, generation: u64, ctx: u32, queue: u32) {
        let worker = &self.nodes[n].workers[w];
        if worker.generation() != generation {
            return;
        }
        let cb = if worker.is_root(ctx) {
            Callback::QueueReady
        } else if worker.live_http_context(ctx) {
            Callback::HttpQueueReady
        } else {
            return;
        };
        let args = [ctx as i32, queue as i32];
        self.on_worker(n, w, |worker| {
            worker.invoke(cb, ctx, "proxy_on_queue_ready", &args)
        });
    }
}
