//! How an exchange ends: `on_log`, `on_done`, `on_delete` in the host's order and its record;
//! or, when its contexts died with a trap, the answer the host still sends (nginx's 500 page, a
//! stashed local response, the upstream's answer) and, in ngx_wasm_module, the re-created
//! instance a stashed local response goes on in.

use super::rules::{
    add_shim_headers, added_headers, local_response_message, set_header, NGINX_500,
};
use super::{Direction, Exchange, Phase};
use crate::abi::{Callback, StreamData};
use crate::profile::HttpModel;
use crate::world::worker::Worker;

impl Exchange {
    /// `on_log`, `on_done`, `on_delete` for each context, in the host's order, then the
    /// exchange's record.
    pub(super) fn close(&mut self, worker: &mut Worker) {
        let len = self.filters.len();
        // ngx_wasm_module: the log step calls on_done then on_log, the done step on_delete
        // (`ngx_proxy_wasm_on_log`, `ngx_proxy_wasm_on_done`). Envoy logs before it destroys
        // the filters (`doDeferredStreamDestroy`: log, then destroyFilters -> on_done).
        let order: Vec<(usize, Callback)> = match worker.profile().http {
            HttpModel::Ngx => (0..len)
                .flat_map(|p| [(p, Callback::Done), (p, Callback::Log)])
                .chain((0..len).map(|p| (p, Callback::Delete)))
                .collect(),
            HttpModel::Envoy => [Callback::Log, Callback::Done, Callback::Delete]
                .into_iter()
                .flat_map(|cb| (0..len).map(move |p| (p, cb)))
                .collect(),
        };
        for (p, cb) in order {
            if !self.alive(worker) {
                break;
            }
            if self.call(worker, cb, p, &[]).is_none() {
                self.outcome.failed = true;
                break;
            }
        }
        self.finish(worker);
    }

    /// Takes the exchange's stream off the worker into its outcome.
    fn finish(&mut self, worker: &mut Worker) {
        let same = self.generation == worker.generation();
        let data = worker.host_mut().filter(|_| same).and_then(|host| {
            for c in &self.ctxs {
                host.stream_of.remove(c);
            }
            host.streams.remove(&self.key)
        });
        let mut data = data.unwrap_or_else(|| self.snapshot.clone());
        if worker.profile().http == HttpModel::Ngx {
            self.outcome.incomplete = frame_as_nginx(&mut data);
        }
        self.outcome.data = data;
        self.phase = Phase::Finished;
    }

    /// The exchange's contexts died with the instance (a trap). ngx_wasm_module answers 500 for
    /// a trap in a request phase and lets a request paused by a trapped context go on to the
    /// upstream (an HTTP context's `on_http_call_response` that panics still ends in the
    /// upstream's response); no callback reaches the dead contexts.
    pub(super) fn trapped(&mut self, worker: &mut Worker, in_request_phase: bool) {
        self.outcome.failed = true;
        let mut data = worker
            .take_orphaned(self.key)
            .unwrap_or_else(|| self.snapshot.clone());
        if in_request_phase && self.reopen_for_stashed_response(worker, &data) {
            return;
        }
        let model = worker.profile().http;
        let in_request = self.waiting == Some(Direction::Request)
            || matches!(
                self.phase,
                Phase::Headers {
                    dir: Direction::Request,
                    ..
                }
            );
        let answer_upstream = model == HttpModel::Ngx && !in_request_phase && in_request;
        let stashed = data
            .local_response
            .clone()
            .filter(|_| !data.local_response_sent && !data.entered_response_headers);
        let now = worker.wall_now();
        if let (HttpModel::Ngx, Some(local)) = (model, stashed) {
            // ngx_wasm_module flushes a stashed local response even when the filter trapped
            // after stashing it (a second send_local_response traps "already stashed").
            let (mut headers, body) = local_response_message(&local, Vec::new(), true);
            add_shim_headers(&mut headers, now, true);
            data.response_headers = headers;
            data.response_body = body;
            data.local_response_sent = true;
        } else if answer_upstream {
            self.upstream_after_trap(&mut data, now);
        } else if !data.entered_response_headers {
            error_after_trap(&mut data, model, now);
        }
        self.snapshot = data;
        self.waiting = None;
        // Forget the stream if the instance still holds it (Envoy: the worker is dead).
        self.finish(worker);
    }

    /// The upstream's answer, with the response headers the filter added before it trapped
    /// (seen in the engine: `X-Early` from on_request_headers is kept).
    fn upstream_after_trap(&self, data: &mut StreamData, now: std::time::SystemTime) {
        let mut headers = self.input.response_headers.clone();
        headers.extend(added_headers(&data.response_headers));
        add_shim_headers(&mut headers, now, false);
        data.response_headers = headers;
        data.response_body = self.input.response_body.clone();
        data.response_trailers = self.input.response_trailers.clone();
    }

    /// ngx_wasm_module: a request phase trapped after a local response was stashed (a second
    /// `send_local_response` traps "local response already stashed"). The next step needs the
    /// instance, so `ngx_proxy_wasm_run_step` re-creates it (`ngx_proxy_wasm_create_context`:
    /// root context configured, the HTTP context created again under its id), and the stashed
    /// response goes through the response phases there, as the engine showed
    /// (docs/host-behaviours.md, "Hostcall rules of ngx_wasm_module"). Returns whether the
    /// exchange goes on.
    fn reopen_for_stashed_response(&mut self, worker: &mut Worker, data: &StreamData) -> bool {
        let profile = worker.profile();
        let stashed = data.local_response.is_some()
            && !data.local_response_sent
            && !data.entered_response_headers;
        if profile.http != HttpModel::Ngx || !profile.lazy_recovery || !stashed {
            return false;
        }
        worker.wake();
        if !worker.is_running() {
            return false;
        }
        let Some(host) = worker.host_mut() else {
            return false;
        };
        for c in &self.ctxs {
            host.stream_of.insert(*c, self.key);
        }
        host.streams.insert(self.key, data.clone());
        self.generation = worker.generation();
        self.snapshot = data.clone();
        self.waiting = None;
        // Trapped again: the exchange ends as any trapped one.
        self.create_contexts(worker)
    }
}

/// The answer to a trap before the response started: a bare 500 (Envoy); nginx's own error
/// page, with the response headers the filter added before it trapped (seen in the engine).
fn error_after_trap(data: &mut StreamData, model: HttpModel, now: std::time::SystemTime) {
    let added = added_headers(&data.response_headers);
    data.response_headers = vec![(":status".into(), "500".into())];
    data.response_body.clear();
    if model == HttpModel::Ngx {
        let body = NGINX_500.as_bytes().to_vec();
        let h = &mut data.response_headers;
        h.extend(added);
        set_header(h, "Content-Type", "text/html");
        set_header(h, "Content-Length", &body.len().to_string());
        // nginx closes the connection after an internal error.
        set_header(h, "Connection", "close");
        add_shim_headers(h, now, false);
        data.response_body = body;
    }
}

/// nginx frames a response whose length the filters removed as chunked. Returns whether the
/// body sent is shorter than the `Content-Length` it promises (the client waits for the rest).
fn frame_as_nginx(data: &mut StreamData) -> bool {
    let h = &data.messages.response_headers;
    let has = |n: &str| h.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    let status = h
        .iter()
        .find(|(k, _)| k == ":status")
        .map(|(_, v)| v.as_str());
    let bodyless = matches!(status, Some("204" | "304") | None);
    if !bodyless && !has("content-length") && !has("transfer-encoding") {
        data.messages
            .response_headers
            .push(("Transfer-Encoding".into(), "chunked".into()));
    }
    let head = data
        .messages
        .request_headers
        .iter()
        .any(|(k, v)| k == ":method" && v == "HEAD");
    let promised = data
        .messages
        .response_headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    !bodyless && !head && promised.is_some_and(|len| data.messages.response_body.len() < len)
}
