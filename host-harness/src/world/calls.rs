//! Dispatched calls: routing them to handlers (or failing them as the profile's host does),
//! their records, and delivering their answers to the context that made them.

use std::time::Duration;

use super::scheduler::{CallDone, CallResult, Event};
use super::World;
use crate::abi::{CallResponseData, Callback, PendingCall};
use crate::http::{CallContext, CallFailure, Reply};
use crate::record::{CallOutcome, CallRecord, Origin};
use crate::state::lock;

/// What `proxy_on_http_call_response` is told: headers, body size, trailers.
pub(super) type Counts = [i32; 3];

impl World {
    /// Sends a call the guest dispatched and schedules its answer (or none: lost).
    pub(super) fn send_call(&mut self, n: usize, w: usize, call: PendingCall, now: Duration) {
        let generation = self.nodes[n].workers[w].generation;
        let origin = self.origin(n, w);
        let (reply, wire) = self.reply(&call, &origin);
        let mut scheduled = when_answered(reply, wire, call.timeout);
        if matches!(scheduled, Some((_, CallResult::Failed(_))))
            && !self.shared.profile.callback_on_failure
        {
            scheduled = None;
        }
        if scheduled.is_some() && self.hostile_lost_callback(&origin, &call) {
            scheduled = None;
        }
        lock(&self.shared.recorder).calls.push(CallRecord {
            token: call.token,
            origin,
            context_id: call.context_id,
            upstream: call.upstream.clone(),
            timeout: call.timeout,
            request: call.request,
            sent_at: now,
            answered_at: None,
            outcome: if scheduled.is_some() {
                CallOutcome::Pending
            } else {
                CallOutcome::Lost
            },
        });
        if let Some((delay, result)) = scheduled {
            let done = CallDone {
                node: n,
                worker: w,
                generation,
                token: call.token,
                context: call.context_id,
                result,
                duplicate: false,
            };
            self.schedule(now + delay, Event::CallDone(done));
        }
    }

    /// What the upstream's handler (or the host, for an unroutable call) replies, and whether
    /// the answer came over the wire.
    fn reply(&self, call: &PendingCall, origin: &Origin) -> (Reply, bool) {
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
                let ctx = CallContext::new(self.shared.clock.now(), &origin.node, &call.upstream);
                (handler.handle(&call.request, &ctx), handler.on_the_wire())
            }
            None => (fail(CallFailure::ResolverFailure), false),
        }
    }

    /// A call's answer is due: record it, then call the context back if it still exists.
    pub(super) fn deliver_call(&mut self, done: CallDone) {
        let (n, w) = (done.node, done.worker);
        if !done.duplicate {
            self.hostile_unknown_token(&done);
        }
        // Looked up (again): a hostile answer before this one may have trapped the worker.
        let target = self.call_target(n, w, done.generation, done.context);
        if !done.duplicate {
            let origin = self.origin(n, w);
            self.record_answer(&origin, done.token, &done.result, target.is_some());
        }
        let Some(is_root) = target else { return };
        let (data, counts) = self.response_data(done.result.clone());
        self.call_back(n, w, done.context, done.token, is_root, data, counts);
        if !done.duplicate {
            self.hostile_duplicate(done);
        }
    }

    /// Whether the answer can reach its context: `Some(is_root)` when the worker (same
    /// generation) and the context are alive.
    pub(super) fn call_target(
        &self,
        n: usize,
        w: usize,
        generation: u64,
        context: u32,
    ) -> Option<bool> {
        let wr = &self.nodes[n].workers[w];
        if wr.dead.is_some() || wr.generation != generation {
            return None;
        }
        let is_root = wr.roots.iter().any(|r| r.id == context);
        let is_stream = wr
            .store
            .as_ref()
            .is_some_and(|s| s.data().is_stream(context));
        (is_root || is_stream).then_some(is_root)
    }

    fn record_answer(&self, origin: &Origin, token: u32, result: &CallResult, reachable: bool) {
        let now = self.elapsed();
        let mut rec = lock(&self.shared.recorder);
        if let Some(c) = rec.call_mut(origin, token) {
            c.answered_at = Some(now);
            c.outcome = match result {
                _ if !reachable => CallOutcome::Orphaned,
                CallResult::Response(r, _) => CallOutcome::Response(r.clone()),
                CallResult::Failed(f) => CallOutcome::Failed(*f),
            };
        }
    }

    /// The data the guest reads while its callback runs, and what the callback is told. A failed
    /// call has zero headers; ngx_wasm_module still lets the filter read `:dispatch_status`.
    fn response_data(&self, result: CallResult) -> (CallResponseData, Counts) {
        match result {
            CallResult::Response(r, wire) => {
                let mut headers = vec![(":status".to_string(), r.status.to_string())];
                // ngx_wasm_module adds `:dispatch_status: ok` to an answered call and counts
                // only the upstream's headers (`ngx_http_proxy_wasm_on_dispatch_response`).
                let ngx = self.shared.profile.dispatch_status_header;
                if ngx {
                    headers.push((":dispatch_status".to_string(), "ok".to_string()));
                }
                headers.extend(r.headers);
                self.shared.profile.http.present_names(&mut headers);
                if ngx && !wire {
                    // ngx_wasm_module reads an HTTP/1.1 answer to its `Connection: close`
                    // request: the server's framing, connection and date headers are in the map
                    // (an in-process handler has none of its own; a server over TCP has sent
                    // its own, in their case).
                    let has = |h: &[(String, String)], n: &str| {
                        h.iter().any(|(k, _)| k.eq_ignore_ascii_case(n))
                    };
                    if !has(&headers, "connection") {
                        headers.push(("connection".into(), "close".into()));
                    }
                    if !has(&headers, "content-length") && !has(&headers, "transfer-encoding") {
                        headers.push(("content-length".into(), r.body.len().to_string()));
                    }
                    if !has(&headers, "date") {
                        let now = self.shared.clock.now();
                        headers.push(("date".into(), httpdate::fmt_http_date(now)));
                    }
                }
                let count = match ngx {
                    true => headers.iter().filter(|(k, _)| !k.starts_with(':')).count(),
                    false => headers.len(),
                };
                let counts = [count as i32, r.body.len() as i32, 0];
                let data = CallResponseData {
                    headers,
                    body: r.body,
                    trailers: Vec::new(),
                };
                (data, counts)
            }
            CallResult::Failed(f) => {
                let status = (
                    ":dispatch_status".to_string(),
                    f.dispatch_status().to_string(),
                );
                let data = CallResponseData {
                    headers: match self.shared.profile.dispatch_status_header {
                        true => vec![status],
                        false => Vec::new(),
                    },
                    ..Default::default()
                };
                (data, [0, 0, 0])
            }
        }
    }

    /// `proxy_on_http_call_response` with `data` readable during the callback.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn call_back(
        &mut self,
        n: usize,
        w: usize,
        context: u32,
        token: u32,
        is_root: bool,
        data: CallResponseData,
        counts: Counts,
    ) {
        if let Some(store) = self.nodes[n].workers[w].store.as_mut() {
            store.data_mut().call_response = Some(data);
        }
        let cb = if is_root {
            Callback::RootCallResponse
        } else {
            Callback::HttpCallResponse
        };
        let [headers, body, trailers] = counts;
        // ngx_wasm_module passes the filter's (root context's) id, not the HTTP context's
        // (`ngx_http_proxy_wasm_on_dispatch_response`: `filter->id`); the SDK finds the context
        // by token.
        let mut first = context;
        if !is_root && self.shared.profile.http == crate::profile::HttpModel::Ngx {
            if let Some(store) = self.nodes[n].workers[w].store.as_ref() {
                let host = store.data();
                let root = host
                    .stream_of
                    .get(&context)
                    .and_then(|key| host.streams.get(key))
                    .and_then(|s| s.roots.get(&context).copied());
                first = root.unwrap_or(context);
            }
        }
        let args = [first as i32, token as i32, headers, body, trailers];
        self.invoke(n, w, cb, context, "proxy_on_http_call_response", &args);
        if let Some(store) = self.nodes[n].workers[w].store.as_mut() {
            store.data_mut().call_response = None;
        }
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

impl World {
    /// Routes a gRPC cluster to a handler of unary calls (Envoy profile: [`crate::grpc`]).
    pub fn route_grpc(&mut self, cluster: &str, handler: crate::grpc::GrpcHandler) -> &mut Self {
        self.shared
            .grpc_routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cluster.to_string(), handler);
        self
    }

    /// Asks the cluster's handler and schedules its answer.
    pub(super) fn send_grpc(
        &mut self,
        n: usize,
        w: usize,
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
        let generation = self.nodes[n].workers[w].generation;
        let event = Event::GrpcDone {
            node: n,
            worker: w,
            generation,
            token,
            context,
            reply,
        };
        self.schedule(now + delay, event);
    }

    /// `proxy_on_grpc_receive` (a message) or `proxy_on_grpc_close` (a status), as Envoy's
    /// `GrpcCallClientHandler::onSuccess` / `onFailure` do for a unary call.
    pub(super) fn deliver_grpc(
        &mut self,
        n: usize,
        w: usize,
        generation: u64,
        token: u32,
        context: u32,
        reply: crate::grpc::GrpcReply,
    ) {
        if self.call_target(n, w, generation, context).is_none() {
            return;
        }
        let Some(store) = self.nodes[n].workers[w].store.as_mut() else {
            return;
        };
        let (func, last) = match reply {
            crate::grpc::GrpcReply::Message { message, .. } => {
                let size = message.len() as i32;
                store.data_mut().grpc_message = Some(message);
                ("proxy_on_grpc_receive", size)
            }
            crate::grpc::GrpcReply::Status { code, message, .. } => {
                store.data_mut().grpc_status = Some((code, message));
                ("proxy_on_grpc_close", code as i32)
            }
        };
        let args = [context as i32, token as i32, last];
        self.invoke(n, w, Callback::Grpc, context, func, &args);
        if let Some(store) = self.nodes[n].workers[w].store.as_mut() {
            store.data_mut().grpc_message = None;
            store.data_mut().grpc_status = None;
        }
    }
}
