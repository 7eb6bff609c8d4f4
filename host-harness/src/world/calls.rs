//! Dispatched calls' answers, routed to the worker that made them: their records, what the
//! callback reads (headers and body as the profile's host presents them), the gRPC answers.
//! Sending a call is the worker's (`worker::outbox`).

use super::scheduler::{CallDone, CallResult, Event};
use super::worker::Counts;
use super::World;
use crate::abi::CallResponseData;
use crate::record::{CallOutcome, Origin};
use crate::state::{lock, WorldShared};

impl World {
    /// A call's answer is due: record it, then call the context back if it still exists.
    pub(super) fn deliver_call(&mut self, done: CallDone) {
        let (n, w) = (done.node, done.worker);
        if !done.duplicate {
            self.hostile_unknown_token(&done);
        }
        // Looked up (again): a hostile answer before this one may have trapped the worker.
        let target = self.nodes[n].workers[w].call_target(done.generation, done.context);
        if !done.duplicate {
            let origin = self.nodes[n].workers[w].origin().clone();
            self.record_answer(&origin, done.token, &done.result, target.is_some());
        }
        let Some(is_root) = target else { return };
        let (data, counts) = response_data(&self.shared, done.result.clone());
        let (context, token) = (done.context, done.token);
        self.on_worker(n, w, |worker| {
            worker.call_back(context, token, is_root, data, counts)
        });
        if !done.duplicate {
            self.hostile_duplicate(done);
        }
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

    /// Routes a gRPC cluster to a handler of unary calls (Envoy profile: [`crate::grpc`]).
    pub fn route_grpc(&mut self, cluster: &str, handler: crate::grpc::GrpcHandler) -> &mut Self {
        self.shared
            .grpc_routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cluster.to_string(), handler);
        self
    }

    /// A gRPC answer, to its context if it still exists.
    pub(super) fn deliver_grpc(
        &mut self,
        n: usize,
        w: usize,
        generation: u64,
        token: u32,
        context: u32,
        reply: crate::grpc::GrpcReply,
    ) {
        let worker = &self.nodes[n].workers[w];
        if worker.call_target(generation, context).is_none() {
            return;
        }
        self.on_worker(n, w, |worker| worker.grpc_back(token, context, reply));
    }

    /// Hostile: the answer just delivered comes again 1 ms later (if its context still exists).
    pub(super) fn schedule_duplicate(&mut self, done: CallDone) {
        let due = self.elapsed() + std::time::Duration::from_millis(1);
        let again = CallDone {
            duplicate: true,
            ..done
        };
        self.scheduler.schedule(due, Event::CallDone(again));
    }
}

/// The data the guest reads while its callback runs, and what the callback is told. A failed
/// call has zero headers; ngx_wasm_module still lets the filter read `:dispatch_status`.
fn response_data(shared: &WorldShared, result: CallResult) -> (CallResponseData, Counts) {
    let ngx = shared.profile.dispatch_status_header;
    let r = match result {
        CallResult::Response(r, wire) => (r, wire),
        CallResult::Failed(f) => {
            let status = (
                ":dispatch_status".to_string(),
                f.dispatch_status().to_string(),
            );
            let data = CallResponseData {
                headers: if ngx { vec![status] } else { Vec::new() },
                ..Default::default()
            };
            return (data, [0, 0, 0]);
        }
    };
    let (r, wire) = r;
    let mut headers = vec![(":status".to_string(), r.status.to_string())];
    // ngx_wasm_module adds `:dispatch_status: ok` to an answered call and counts only the
    // upstream's headers (`ngx_http_proxy_wasm_on_dispatch_response`).
    if ngx {
        headers.push((":dispatch_status".to_string(), "ok".to_string()));
    }
    headers.extend(r.headers);
    shared.profile.http.present_names(&mut headers);
    if ngx && !wire {
        add_wire_headers(&mut headers, r.body.len(), shared.clock.now());
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

/// ngx_wasm_module reads an HTTP/1.1 answer to its `Connection: close` request: the server's
/// framing, connection and date headers are in the map (an in-process handler has none of its
/// own; a server over TCP has sent its own, in their case).
fn add_wire_headers(headers: &mut Vec<(String, String)>, body: usize, now: std::time::SystemTime) {
    let has = |h: &[(String, String)], n: &str| h.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has(headers, "connection") {
        headers.push(("connection".into(), "close".into()));
    }
    if !has(headers, "content-length") && !has(headers, "transfer-encoding") {
        headers.push(("content-length".into(), body.to_string()));
    }
    if !has(headers, "date") {
        headers.push(("date".into(), httpdate::fmt_http_date(now)));
    }
}
