//! What a guest call leaves in its outbox, acted on as soon as the call returns: tick periods
//! (the worker's timers), dispatched calls (routed to their handler now, answered later), gRPC
//! calls, queue notifications. Each becomes an event the worker keeps, in order, for the
//! scheduler.

use std::time::Duration;

use super::{Timer, Worker};
use crate::abi::{Outbox, PendingCall};
use crate::hostile::Injection;
use crate::http::{CallContext, CallFailure, Reply};
use crate::record::{CallOutcome, CallRecord};
use crate::state::lock;
use crate::world::scheduler::{CallDone, CallResult, Event};

impl Worker {
    /// Acts on what a guest call left in its outbox.
    pub(super) fn process_outbox(&mut self, outbox: Outbox) {
        let now = self.elapsed();
        for (root, period_ms) in outbox.tick_periods {
            self.set_tick_period(root, period_ms, now);
        }
        for call in outbox.calls {
            self.send_call(call, now);
        }
        for (token, context, request) in outbox.grpc_calls {
            self.send_grpc(token, context, request, now);
        }
        for queue in outbox.enqueued {
            let owner = lock(&self.node_shared.queues)
                .get_mut(queue)
                .map(|q| (q.owner_worker, q.owner_context, q.owner_generation));
            if let Some((worker, context, generation)) = owner {
                let node = self.at.0;
                let event = Event::QueueReady {
                    node,
                    worker,
                    generation,
                    context,
                    queue,
                };
                self.caused.push((now, event));
            }
        }
    }

    /// A root context's new tick period (0 stops its ticks). After a recovery ngx_wasm_module
    /// adds the new timer beside the old ones instead of replacing them.
    fn set_tick_period(&mut self, root: u32, period_ms: u32, now: Duration) {
        let timer = self.next_timer;
        let Some(rt) = self.roots.iter_mut().find(|r| r.id == root) else {
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
        rt.timers.push(Timer { id: timer, period });
        self.next_timer += 1;
        let (node, worker) = self.at;
        let event = Event::Tick {
            node,
            worker,
            root,
            timer,
        };
        self.caused.push((now + period, event));
    }

    /// Sends a call the guest dispatched and schedules its answer (or none: lost).
    fn send_call(&mut self, call: PendingCall, now: Duration) {
        let (reply, wire) = self.reply(&call);
        let mut scheduled = when_answered(reply, wire, call.timeout);
        if matches!(scheduled, Some((_, CallResult::Failed(_))))
            && !self.shared.profile.callback_on_failure
        {
            scheduled = None;
        }
        if scheduled.is_some() && self.hostile_lost_callback(&call) {
            scheduled = None;
        }
        lock(&self.shared.recorder).calls.push(CallRecord {
            token: call.token,
            origin: self.origin.clone(),
            context_id: call.context_id,
            upstream: call.upstream.clone(),
            timeout: call.timeout,
            request: call.request,
            sent_at: now,
            answered_at: None,
            outcome: match scheduled.is_some() {
                true => CallOutcome::Pending,
                false => CallOutcome::Lost,
            },
        });
        if let Some((delay, result)) = scheduled {
            let (node, worker) = self.at;
            let done = CallDone {
                node,
                worker,
                generation: self.generation,
                token: call.token,
                context: call.context_id,
                result,
                duplicate: false,
            };
            self.caused.push((now + delay, Event::CallDone(done)));
        }
    }

    /// What the upstream's handler (or the host, for an unroutable call) replies, and whether
    /// the answer came over the wire.
    fn reply(&self, call: &PendingCall) -> (Reply, bool) {
        let fail = |failure| Reply::Fail {
            failure,
            after: Duration::ZERO,
        };
        if let Some(failure) = call.immediate_failure {
            return (fail(failure), false);
        }
        let https = call.request.scheme == "https";
        match self.shared.route(&call.upstream, https) {
            Some(handler) => {
                let now = self.shared.clock.now();
                let ctx = CallContext::new(now, &self.origin.node, &call.upstream);
                (handler.handle(&call.request, &ctx), handler.on_the_wire())
            }
            None => (fail(CallFailure::ResolverFailure), false),
        }
    }

    /// Hostile: this call is never answered. Returns whether it is lost.
    fn hostile_lost_callback(&self, call: &PendingCall) -> bool {
        let detail = || format!("token {} to {}", call.token, call.upstream);
        self.shared
            .inject(&self.origin, Injection::LostCallback, detail)
            .is_some()
    }

    /// Asks the cluster's handler and schedules its answer.
    fn send_grpc(
        &mut self,
        token: u32,
        context: u32,
        request: crate::grpc::GrpcRequest,
        now: Duration,
    ) {
        let handler = self
            .shared
            .grpc_routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&request.cluster)
            .cloned();
        let Some(handler) = handler else { return };
        let reply = handler(&request);
        let delay = match &reply {
            crate::grpc::GrpcReply::Message { latency, .. } => *latency,
            crate::grpc::GrpcReply::Status { after, .. } => *after,
        };
        let (node, worker) = self.at;
        let event = Event::GrpcDone {
            node,
            worker,
            generation: self.generation,
            token,
            context,
            reply,
        };
        self.caused.push((now + delay, event));
    }
}

/// When an answer is due after sending and what it is (`None`: no callback, ever). The host's
/// timeout wins over a slower answer or failure.
fn when_answered(reply: Reply, wire: bool, timeout: Duration) -> Option<(Duration, CallResult)> {
    let timed_out = (timeout, CallResult::Failed(CallFailure::Timeout));
    match reply {
        Reply::Response { response, latency } if latency < timeout => {
            Some((latency, CallResult::Response(response, wire)))
        }
        Reply::Response { .. } | Reply::Hang => Some(timed_out),
        Reply::Fail { after, .. } if after >= timeout => Some(timed_out),
        Reply::Fail { failure, after } => Some((after, CallResult::Failed(failure))),
        Reply::NoCallback => None,
    }
}
