//! HTTP exchanges through a filter chain, as the profile's host runs them
//! (docs/host-behaviours.md, "HTTP exchanges"): one HTTP context per filter, request phases in
//! chain order, the upstream's response or the filter's local response through the response
//! phases, bodies in chunks with `Pause` buffering, then `on_log`/`on_done`/`on_delete` in the
//! host's order. Several exchanges can be in flight on one worker: each waits in virtual time
//! while a filter pauses it and goes on when an event (a call answer, a tick) resumes it.

use super::lifecycle::Invoke;
use super::scheduler::Event;
use super::{HttpExchange, NodeId, World};
use crate::abi::{Callback, HttpMessages, LocalResponse, StreamData};
use crate::profile::HttpModel;
use crate::record::{LogLevel, LogLine};
use crate::state::lock;

/// What happened to an exchange.
#[derive(Clone, Debug, Default)]
pub struct HttpOutcome {
    /// The HTTP context of the first filter of the chain.
    pub context_id: u32,
    /// The HTTP context of each filter of the chain, in chain order.
    pub context_ids: Vec<u32>,
    /// The exchange as it left the chain: request headers, trailers and whole body as sent
    /// upstream; response headers, trailers and whole body as sent downstream (a local
    /// response's when the filter produced one).
    pub data: StreamData,
    /// Actions returned by each phase, in order (`request_headers`, `request_body`, ...).
    pub actions: Vec<(&'static str, Action)>,
    /// Every guest callback of the exchange with its arguments, in order.
    pub callbacks: Vec<CallbackCall>,
    /// A phase stayed paused past `max_pause`.
    pub stuck: bool,
    /// ngx_wasm_module: the body sent is shorter than the response's `Content-Length` (a filter
    /// replaced it, e.g. a local response from `on_response_headers`): nginx does not update the
    /// length, so the client never gets a complete answer and waits for the rest.
    pub incomplete: bool,
    /// The worker trapped or died during the exchange.
    pub failed: bool,
}

impl HttpOutcome {
    /// The local response the filter sent, if it did.
    pub fn local_response(&self) -> Option<&LocalResponse> {
        self.data.local_response.as_ref()
    }

    /// The status sent downstream (`:status` of the response), 0 when there was none.
    pub fn status(&self) -> u32 {
        self.data
            .response_headers
            .iter()
            .find(|(k, _)| k == ":status")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    }

    /// The names of the callbacks run for context `ctx`, in order (`on_request_headers`, ...).
    pub fn callback_names(&self, ctx: u32) -> Vec<&'static str> {
        self.callbacks
            .iter()
            .filter(|c| c.context == ctx)
            .map(|c| c.name)
            .collect()
    }
}

/// One guest callback of an exchange: `proxy_<name>(context, args...)` and what it returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackCall {
    /// The context the callback was for.
    pub context: u32,
    /// `on_request_headers`, `on_response_body`, `on_log`, ...
    pub name: &'static str,
    /// The arguments after the context id (count or size, end of stream).
    pub args: Vec<i32>,
    /// `None`: the callback trapped or returns nothing.
    pub result: Option<i32>,
}

/// What a phase callback returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Go on (`Action::Continue`, 0).
    Continue,
    /// Stop here until the filter resumes (any other value).
    Pause,
}

/// An exchange started with [`World::start_http`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExchangeId(pub usize);

/// Where an exchange is. `pos` is a position in the direction's chain order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Headers {
        request: bool,
        pos: usize,
    },
    Body {
        request: bool,
        chunk: usize,
        pos: usize,
    },
    Trailers {
        request: bool,
        pos: usize,
    },
    Upstream,
    Close,
    Finished,
}

/// An exchange in flight.
pub(super) struct ExchangeRun {
    n: usize,
    w: usize,
    generation: u64,
    /// The exchange's key in the worker's streams (its first context).
    key: u32,
    /// Filter index of each chain position, and its context.
    filters: Vec<usize>,
    ctxs: Vec<u32>,
    input: HttpExchange,
    step: Step,
    /// Paused, waiting for the filter to resume this direction (true: request).
    waiting: Option<bool>,
    /// Bumped at each pause: a timeout for an older pause is ignored.
    pause_seq: u64,
    /// The current pause's timeout is scheduled.
    timeout_set: bool,
    /// Body chunks of the direction being run (request first, then response).
    chunks: Vec<Vec<u8>>,
    /// Per filter: the body it has buffered (Pause on a body), and whether ngx buffers to eof.
    buffers: Vec<Vec<u8>>,
    buffering_to_eof: Vec<bool>,
    /// Body data on its way through the chain, and what left it.
    carry: Vec<u8>,
    forwarded: Vec<u8>,
    /// The exchange as last seen (kept when the worker's instance is replaced after a trap).
    snapshot: StreamData,
    outcome: HttpOutcome,
}

impl World {
    /// Runs one HTTP exchange through filter `filter` on a worker to its end: context creation,
    /// request and response phases (waiting in virtual time while the filter pauses), `on_log`,
    /// `on_done`, `on_delete`.
    pub fn http(
        &mut self,
        node: NodeId,
        worker: usize,
        filter: usize,
        exchange: HttpExchange,
    ) -> HttpOutcome {
        self.http_chain(node, worker, &[filter], exchange)
    }

    /// [`World::http`] through a chain of filters, in order (nginx: several `proxy_wasm` in a
    /// location; Kong: a filter chain; Envoy: several wasm filters).
    pub fn http_chain(
        &mut self,
        node: NodeId,
        worker: usize,
        filters: &[usize],
        exchange: HttpExchange,
    ) -> HttpOutcome {
        let id = self.start_http_chain(node, worker, filters, exchange);
        let outcome = self.finish_http(id);
        // Nobody can ask for it again: keep the world's memory flat over many requests.
        if let Some(slot) = self.exchanges.get_mut(id.0) {
            *slot = None;
        }
        outcome
    }

    /// Starts an exchange and runs it until it finishes or a filter pauses it; the world's
    /// events (call answers, ticks) resume it. Several can be in flight on one worker.
    pub fn start_http(
        &mut self,
        node: NodeId,
        worker: usize,
        filter: usize,
        exchange: HttpExchange,
    ) -> ExchangeId {
        self.start_http_chain(node, worker, &[filter], exchange)
    }

    /// [`World::start_http`] through a chain of filters.
    pub fn start_http_chain(
        &mut self,
        node: NodeId,
        worker: usize,
        filters: &[usize],
        exchange: HttpExchange,
    ) -> ExchangeId {
        let id = ExchangeId(self.exchanges.len());
        self.wake(node.0, worker);
        let run = self.open_exchange(node.0, worker, filters, exchange);
        self.exchanges.push(Some(run));
        self.active_exchanges.push(id.0);
        self.drive(id);
        id
    }

    /// Whether an exchange has ended.
    pub fn http_finished(&self, id: ExchangeId) -> bool {
        match self.exchanges.get(id.0) {
            Some(Some(run)) => run.step == Step::Finished,
            _ => true,
        }
    }

    /// What happened to an exchange so far (complete once [`World::http_finished`]).
    pub fn http_outcome(&self, id: ExchangeId) -> Option<HttpOutcome> {
        self.exchanges
            .get(id.0)?
            .as_ref()
            .map(|run| run.outcome.clone())
    }

    /// Advances virtual time until the exchange ends (a pause ends at the latest after its
    /// `max_pause`), and returns its outcome.
    pub fn finish_http(&mut self, id: ExchangeId) -> HttpOutcome {
        while !self.http_finished(id) {
            let Some(next) = self.next_event_due() else {
                break;
            };
            self.run_to(next);
        }
        self.http_outcome(id).unwrap_or_default()
    }

    /// Creates the chain's HTTP contexts and the exchange's stream on the worker.
    fn open_exchange(
        &mut self,
        n: usize,
        w: usize,
        filters: &[usize],
        exchange: HttpExchange,
    ) -> ExchangeRun {
        let model = self.shared.profile.http;
        let wr = &mut self.nodes[n].workers[w];
        let ctxs: Vec<u32> = filters
            .iter()
            .map(|_| {
                let c = wr.next_context;
                wr.next_context += 1;
                c
            })
            .collect();
        let key = ctxs.first().copied().unwrap_or(0);
        // The response does not exist before the upstream answers: the map starts empty.
        let mut messages = HttpMessages {
            request_headers: exchange.request_headers.clone(),
            request_trailers: exchange.request_trailers.clone(),
            ..Default::default()
        };
        model.present_names(&mut messages.request_headers);
        model.present_names(&mut messages.request_trailers);
        let mut stream = StreamData {
            messages,
            source: exchange.source.clone(),
            started: Some(self.shared.clock.now()),
            ..Default::default()
        };
        for (i, f) in filters.iter().enumerate() {
            let name = self.nodes[n]
                .spec
                .filters
                .get(*f)
                .map(|s| s.name.clone())
                .unwrap_or_default();
            stream.filter_names.insert(ctxs[i], name);
            stream.roots.insert(ctxs[i], self.root_id(n, *f));
        }
        let request_chunks = body_chunks(&exchange.request_body, &exchange.request_chunks);
        let chunks = match model {
            // ngx_wasm_module reads the whole request body before on_request_body.
            HttpModel::Ngx if !request_chunks.is_empty() => vec![request_chunks.concat()],
            _ => request_chunks,
        };
        let wr = &mut self.nodes[n].workers[w];
        let generation = wr.generation;
        let alive = wr.dead.is_none();
        if let Some(store) = wr.store.as_mut().filter(|_| alive) {
            let host = store.data_mut();
            for c in &ctxs {
                host.stream_of.insert(*c, key);
            }
            host.streams.insert(key, stream.clone());
        }
        let mut run = ExchangeRun {
            n,
            w,
            generation,
            key,
            filters: filters.to_vec(),
            ctxs: ctxs.clone(),
            input: exchange,
            step: Step::Headers {
                request: true,
                pos: 0,
            },
            waiting: None,
            pause_seq: 0,
            timeout_set: false,
            chunks,
            buffers: vec![Vec::new(); filters.len()],
            buffering_to_eof: vec![false; filters.len()],
            carry: Vec::new(),
            forwarded: Vec::new(),
            snapshot: stream,
            outcome: HttpOutcome {
                context_id: key,
                context_ids: ctxs,
                ..Default::default()
            },
        };
        if !alive {
            run.outcome.failed = true;
            run.step = Step::Finished;
            return run;
        }
        for pos in 0..run.filters.len() {
            let root = self.root_id(n, run.filters[pos]);
            let ctx = run.ctxs[pos];
            let r = self.phase_call(&mut run, Callback::HttpCreate, pos, &[root as i32]);
            if r.is_none() {
                let _ = ctx;
                self.exchange_trapped(&mut run, true);
                break;
            }
        }
        run
    }

    /// Moves an exchange on as far as it can go without waiting.
    pub(super) fn drive(&mut self, id: ExchangeId) {
        let Some(Some(mut run)) = self.exchanges.get_mut(id.0).map(Option::take) else {
            return;
        };
        self.drive_run(id, &mut run);
        self.exchanges[id.0] = Some(run);
    }

    /// Drives every exchange waiting for a resume (after each delivered event).
    pub(super) fn poll_exchanges(&mut self) {
        if self.active_exchanges.is_empty() {
            return;
        }
        for i in self.active_exchanges.clone() {
            self.drive(ExchangeId(i));
        }
        let exchanges = &self.exchanges;
        self.active_exchanges
            .retain(|i| matches!(exchanges.get(*i), Some(Some(run)) if run.step != Step::Finished));
    }

    /// A pause lasted `max_pause`: the exchange is stuck; it is closed as the host would.
    pub(super) fn exchange_timeout(&mut self, id: ExchangeId, seq: u64) {
        let Some(Some(mut run)) = self.exchanges.get_mut(id.0).map(Option::take) else {
            return;
        };
        if run.waiting.is_some() && run.pause_seq == seq && run.step != Step::Finished {
            run.outcome.stuck = true;
            run.waiting = None;
            run.timeout_set = false;
            run.step = Step::Close;
            self.drive_run(id, &mut run);
        }
        self.exchanges[id.0] = Some(run);
    }

    fn drive_run(&mut self, id: ExchangeId, run: &mut ExchangeRun) {
        loop {
            if run.step == Step::Finished {
                return;
            }
            if !self.exchange_alive(run) {
                // The instance was replaced (a trap elsewhere): the contexts are gone.
                self.exchange_trapped(run, false);
                continue;
            }
            if let Some(request) = run.waiting {
                if !self.take_resume(run, request) {
                    // Paused: wait for a resume (an event will drive us again) or the timeout.
                    if !run.timeout_set {
                        run.timeout_set = true;
                        run.pause_seq += 1;
                        let due = self.elapsed() + run.input.max_pause;
                        let seq = run.pause_seq;
                        self.schedule(due, Event::ExchangeTimeout { id: id.0, seq });
                    }
                    return;
                }
                run.waiting = None;
                run.timeout_set = false;
                self.after_resume(run);
                continue;
            }
            if self.local_response_pending(run) {
                self.send_local_response(run);
                continue;
            }
            // A step that pauses sets `waiting`: the filter may have resumed (or sent a local
            // response) in the very callback, which the loop sees at once.
            self.step(run);
        }
    }

    /// Whether nginx sends the response without a body (`r->header_only`).
    fn header_only(&self, run: &ExchangeRun) -> bool {
        self.stream_data(run).is_some_and(|s| {
            let status = s.response_headers.iter().find(|(k, _)| k == ":status");
            let method = s.request_headers.iter().find(|(k, _)| k == ":method");
            matches!(status, Some((_, v)) if v == "204" || v == "304")
                || matches!(method, Some((_, m)) if m == "HEAD")
        })
    }

    fn trailer_count(&self, run: &ExchangeRun, request: bool) -> usize {
        self.stream_data(run)
            .map(|s| s.trailers(request).len())
            .unwrap_or(0)
    }

    /// Whether the exchange's worker still runs the instance that holds its contexts.
    fn exchange_alive(&self, run: &ExchangeRun) -> bool {
        let wr = &self.nodes[run.n].workers[run.w];
        wr.dead.is_none()
            && wr.generation == run.generation
            && wr
                .store
                .as_ref()
                .is_some_and(|s| s.data().streams.contains_key(&run.key))
    }

    fn stream_data(&self, run: &ExchangeRun) -> Option<&StreamData> {
        self.nodes[run.n].workers[run.w]
            .store
            .as_ref()?
            .data()
            .streams
            .get(&run.key)
    }

    fn stream_data_mut(&mut self, run: &ExchangeRun) -> Option<&mut StreamData> {
        self.nodes[run.n].workers[run.w]
            .store
            .as_mut()?
            .data_mut()
            .streams
            .get_mut(&run.key)
    }

    /// Whether the paused direction was resumed (or a local response ends the pause); clears
    /// the flag.
    fn take_resume(&mut self, run: &ExchangeRun, request: bool) -> bool {
        let Some(s) = self.stream_data_mut(run) else {
            return true;
        };
        if s.local_response.is_some() && !s.local_response_sent {
            return true;
        }
        let flag = if request {
            &mut s.resumed_request
        } else {
            &mut s.resumed_response
        };
        std::mem::take(flag)
    }

    fn local_response_pending(&self, run: &ExchangeRun) -> bool {
        self.stream_data(run)
            .is_some_and(|s| s.local_response.is_some() && !s.local_response_sent)
    }

    /// The chain order of a direction: the request in chain order; the response in chain order
    /// for ngx_wasm_module (one chain, every phase in order) and in reverse for Envoy (encoder
    /// filters).
    fn order(&self, run: &ExchangeRun, request: bool) -> Vec<usize> {
        let len = run.filters.len();
        match (request, self.shared.profile.http) {
            (false, HttpModel::Envoy) => (0..len).rev().collect(),
            _ => (0..len).collect(),
        }
    }

    /// Runs one step; returns false when the exchange now waits for a resume.
    fn step(&mut self, run: &mut ExchangeRun) -> bool {
        let model = self.shared.profile.http;
        match run.step {
            Step::Headers { request, pos } => {
                let order = self.order(run, request);
                let Some(&p) = order.get(pos) else {
                    run.step = self.after_headers(run, request);
                    return true;
                };
                let (count, eos) = self.headers_args(run, request);
                let cb = if request {
                    Callback::RequestHeaders
                } else {
                    Callback::ResponseHeaders
                };
                if !request {
                    if let Some(s) = self.stream_data_mut(run) {
                        s.entered_response_headers = true;
                    }
                }
                let name = if request {
                    "request_headers"
                } else {
                    "response_headers"
                };
                let Some(action) = self.phase_action(run, cb, p, &[count, eos as i32], name) else {
                    return true;
                };
                if !request && self.local_response_pending(run) {
                    // A local response from on_response_headers replaces the response.
                    self.replace_response_from_headers_phase(run);
                }
                run.step = Step::Headers {
                    request,
                    pos: pos + 1,
                };
                self.continue_or_wait(run, action, request)
            }
            Step::Body {
                request,
                chunk,
                pos,
            } => self.body_step(run, request, chunk, pos),
            Step::Trailers { request, pos } => {
                let order = self.order(run, request);
                let Some(&p) = order.get(pos) else {
                    run.step = if request { Step::Upstream } else { Step::Close };
                    return true;
                };
                let count = self.trailer_count(run, request) as i32;
                let (cb, name) = if request {
                    (Callback::RequestTrailers, "request_trailers")
                } else {
                    (Callback::ResponseTrailers, "response_trailers")
                };
                let Some(action) = self.phase_action(run, cb, p, &[count], name) else {
                    return true;
                };
                run.step = Step::Trailers {
                    request,
                    pos: pos + 1,
                };
                self.continue_or_wait(run, action, request)
            }
            Step::Upstream => {
                self.install_upstream_response(run);
                run.step = Step::Headers {
                    request: false,
                    pos: 0,
                };
                true
            }
            Step::Close => {
                self.close_exchange(run, model);
                true
            }
            Step::Finished => true,
        }
    }

    /// After a headers or trailers callback: go on, or wait for the filter to resume the
    /// direction (returns false).
    fn continue_or_wait(&self, run: &mut ExchangeRun, action: Action, request: bool) -> bool {
        if action == Action::Continue {
            return true;
        }
        run.waiting = Some(request);
        false
    }

    /// The arguments of a headers callback: the count (ngx_wasm_module leaves pseudo-headers
    /// out) and end of stream (ngx_wasm_module: always false).
    fn headers_args(&self, run: &ExchangeRun, request: bool) -> (i32, bool) {
        let Some(s) = self.stream_data(run) else {
            return (0, false);
        };
        let headers = s.headers(request);
        match self.shared.profile.http {
            HttpModel::Ngx => {
                let n = headers.iter().filter(|(k, _)| !k.starts_with(':')).count();
                (n as i32, false)
            }
            HttpModel::Envoy => {
                let trailers = s.trailers(request);
                let no_body = run.chunks.iter().all(|c| c.is_empty());
                (headers.len() as i32, no_body && trailers.is_empty())
            }
        }
    }

    /// What follows the headers phases of a direction.
    fn after_headers(&mut self, run: &mut ExchangeRun, request: bool) -> Step {
        if let Some(s) = self.stream_data_mut(run).filter(|_| request) {
            // nginx reads the request body after the request headers phases.
            s.request_body_read = true;
        }
        run.carry.clear();
        run.forwarded.clear();
        run.buffers.iter_mut().for_each(Vec::clear);
        run.buffering_to_eof.iter_mut().for_each(|b| *b = false);
        let has_body = run.chunks.iter().any(|c| !c.is_empty());
        match self.shared.profile.http {
            // ngx_wasm_module calls on_request_body only for a request with a body
            // (`ngx_http_proxy_wasm_on_request_body_handler`), but every response body gets a
            // callback, an empty one `(0, eof)` (`ngx_http_proxy_wasm_on_response_body`).
            HttpModel::Ngx if request && !has_body => self.after_body(run, request),
            // nginx sends a 204 or 304 (or an answer to HEAD) header-only: no body filter.
            HttpModel::Ngx if !request && self.header_only(run) => self.after_body(run, request),
            HttpModel::Ngx => {
                if run.chunks.is_empty() {
                    run.chunks.push(Vec::new());
                }
                Step::Body {
                    request,
                    chunk: 0,
                    pos: 0,
                }
            }
            HttpModel::Envoy if has_body => {
                run.chunks.retain(|c| !c.is_empty());
                Step::Body {
                    request,
                    chunk: 0,
                    pos: 0,
                }
            }
            HttpModel::Envoy => self.after_body(run, request),
        }
    }

    /// What follows the body of a direction: its trailers (Envoy only; ngx_wasm_module has no
    /// trailer callbacks), then the upstream or the end.
    fn after_body(&mut self, run: &mut ExchangeRun, request: bool) -> Step {
        let forwarded = std::mem::take(&mut run.forwarded);
        if let Some(s) = self.stream_data_mut(run) {
            *s.body_mut(request) = forwarded;
        }
        let has_trailers = self.trailer_count(run, request) > 0;
        match (self.shared.profile.http, has_trailers, request) {
            (HttpModel::Envoy, true, _) => Step::Trailers { request, pos: 0 },
            (_, _, true) => Step::Upstream,
            (_, _, false) => Step::Close,
        }
    }

    /// One body chunk through the chain from position `pos`; returns false when it waits.
    fn body_step(
        &mut self,
        run: &mut ExchangeRun,
        request: bool,
        chunk: usize,
        pos: usize,
    ) -> bool {
        let model = self.shared.profile.http;
        let order = self.order(run, request);
        let last = chunk + 1 >= run.chunks.len();
        let trailers = self.trailer_count(run, request) > 0;
        let mut eos = last && (model == HttpModel::Ngx || !trailers);
        if model == HttpModel::Ngx && !request {
            // ngx_wasm_module: with a Content-Length, end of stream is "this chunk is that long"
            // (`ngx_http_proxy_wasm_on_response_body`), e.g. false after a local response from
            // on_response_headers changed the body.
            let length = self.stream_data(run).and_then(|s| {
                s.response_headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            });
            if let Some(length) = length.filter(|l| *l > 0) {
                let pending = run.buffers.get(order.get(pos).copied().unwrap_or(0));
                let size = pending.map_or(0, Vec::len)
                    + if pos == 0 {
                        run.chunks.get(chunk).map_or(0, Vec::len)
                    } else {
                        run.carry.len()
                    };
                eos = size == length;
            }
        }
        if pos == 0 {
            run.carry = run.chunks.get(chunk).cloned().unwrap_or_default();
        }
        let Some(&p) = order.get(pos) else {
            // The chunk left the chain.
            let carry = std::mem::take(&mut run.carry);
            run.forwarded.extend_from_slice(&carry);
            run.step = if last {
                self.after_body(run, request)
            } else {
                Step::Body {
                    request,
                    chunk: chunk + 1,
                    pos: 0,
                }
            };
            return true;
        };
        let carry = std::mem::take(&mut run.carry);
        run.buffers[p].extend_from_slice(&carry);
        if run.buffering_to_eof[p] && !eos {
            // ngx_wasm_module buffers a paused response body and calls again at its end.
            run.step = self.next_chunk(run, request, chunk, last, p);
            return true;
        }
        let buffer = run.buffers[p].clone();
        if let Some(s) = self.stream_data_mut(run) {
            s.entered_response_body |= !request;
            *s.body_mut(request) = buffer.clone();
        }
        let (cb, name) = if request {
            (Callback::RequestBody, "request_body")
        } else {
            (Callback::ResponseBody, "response_body")
        };
        let args = [buffer.len() as i32, eos as i32];
        let Some(action) = self.phase_action(run, cb, p, &args, name) else {
            return true;
        };
        // The filter may have changed the buffer.
        run.buffers[p] = self
            .stream_data(run)
            .map(|s| s.body(request).clone())
            .unwrap_or_default();
        let pass_on = |run: &mut ExchangeRun| {
            run.carry = std::mem::take(&mut run.buffers[p]);
            run.step = Step::Body {
                request,
                chunk,
                pos: pos + 1,
            };
        };
        match (action, model, request, eos) {
            (Action::Continue, ..) => {
                pass_on(run);
                true
            }
            // StopIterationAndBuffer: called again with the next chunk added.
            (Action::Pause, HttpModel::Envoy, _, false) => {
                run.step = self.next_chunk(run, request, chunk, last, p);
                true
            }
            (Action::Pause, HttpModel::Ngx, false, false) => {
                run.buffering_to_eof[p] = true;
                run.step = self.next_chunk(run, request, chunk, last, p);
                true
            }
            (Action::Pause, HttpModel::Ngx, false, true) => {
                // ngx_wasm_module: Pause at the end of the response body is invalid and
                // becomes Continue (`ngx_http_proxy_wasm_on_response_body`).
                self.exchange_note(
                    run,
                    "invalid \"on_response_body\" return action (PAUSE) at the end of the body",
                );
                pass_on(run);
                true
            }
            // The whole body is there: wait for the filter to resume.
            (Action::Pause, ..) => {
                run.waiting = Some(request);
                false
            }
        }
    }

    /// The step after a filter at position `p` kept a chunk buffered: the next chunk, or,
    /// after the last one (trailers follow, Envoy), the buffer passes on.
    fn next_chunk(
        &mut self,
        run: &mut ExchangeRun,
        request: bool,
        chunk: usize,
        last: bool,
        p: usize,
    ) -> Step {
        if !last {
            return Step::Body {
                request,
                chunk: chunk + 1,
                pos: 0,
            };
        }
        let order = self.order(run, request);
        let pos = order.iter().position(|x| *x == p).unwrap_or(order.len());
        run.carry = std::mem::take(&mut run.buffers[p]);
        Step::Body {
            request,
            chunk,
            pos: pos + 1,
        }
    }

    /// A paused step was resumed: move past the filter that paused.
    fn after_resume(&mut self, run: &mut ExchangeRun) {
        // Headers and trailers steps already point past the paused filter.
        if let Step::Body {
            request,
            chunk,
            pos,
        } = run.step
        {
            let order = self.order(run, request);
            if let Some(&p) = order.get(pos) {
                run.carry = std::mem::take(&mut run.buffers[p]);
            }
            run.step = Step::Body {
                request,
                chunk,
                pos: pos + 1,
            };
        }
    }

    /// The upstream answers: its headers, trailers and body chunks become the response.
    /// ngx_wasm_module keeps response headers the filter added before (`headers_out`).
    fn install_upstream_response(&mut self, run: &mut ExchangeRun) {
        let model = self.shared.profile.http;
        let ngx = model == HttpModel::Ngx;
        let now = self.shared.clock.now();
        let input = &run.input;
        let mut headers = input.response_headers.clone();
        let mut trailers = input.response_trailers.clone();
        model.present_names(&mut headers);
        model.present_names(&mut trailers);
        run.chunks = body_chunks(&input.response_body, &input.response_chunks);
        if let Some(s) = self.stream_data_mut(run) {
            if ngx {
                headers.extend(added_headers(&s.response_headers));
                add_shim_headers(&mut headers, now, false);
            }
            s.response_headers = headers;
            s.response_trailers = trailers;
            s.response_body.clear();
        }
    }

    /// The filter produced a local response outside the response phases: the request phases
    /// end and the local response goes through the response phases (both hosts run them;
    /// docs/host-behaviours.md, "Local responses").
    fn send_local_response(&mut self, run: &mut ExchangeRun) {
        let ngx = self.shared.profile.http == HttpModel::Ngx;
        let now = self.shared.clock.now();
        let Some(s) = self.stream_data_mut(run) else {
            return;
        };
        let Some(local) = s.local_response.clone() else {
            return;
        };
        s.local_response_sent = true;
        s.resumed_request = false;
        if s.entered_response_body {
            // Too late: the response is on its way (ngx_wasm_module traps before this).
            return;
        }
        let kept = match ngx {
            true => added_headers(&s.response_headers),
            false => Vec::new(),
        };
        let (mut headers, body) = local_response_message(&local, kept, ngx);
        if ngx {
            add_shim_headers(&mut headers, now, true);
        }
        s.response_headers = headers;
        s.response_trailers.clear();
        s.response_body.clear();
        run.chunks = vec![body];
        run.waiting = None;
        run.step = Step::Headers {
            request: false,
            pos: 0,
        };
    }

    /// ngx_wasm_module: `send_local_response` from `on_response_headers` sets the status and
    /// replaces the body (with a trailing LF); its headers are not applied
    /// (`ngx_proxy_wasm_hfuncs_send_local_response`). Envoy: the local response replaces the
    /// response.
    fn replace_response_from_headers_phase(&mut self, run: &mut ExchangeRun) {
        let ngx = self.shared.profile.http == HttpModel::Ngx;
        let Some(s) = self.stream_data_mut(run) else {
            return;
        };
        let Some(local) = s.local_response.clone() else {
            return;
        };
        s.local_response_sent = true;
        let body = if ngx {
            let mut body = local.body.clone();
            if !body.is_empty() {
                body.push(b'\n');
            }
            set_header(
                &mut s.response_headers,
                ":status",
                &local.status.to_string(),
            );
            body
        } else {
            let (headers, body) = local_response_message(&local, Vec::new(), false);
            s.response_headers = headers;
            body
        };
        run.chunks = vec![body];
    }

    /// `on_log`, `on_done`, `on_delete` for each context, in the host's order, then the
    /// exchange's record.
    fn close_exchange(&mut self, run: &mut ExchangeRun, model: HttpModel) {
        let len = run.filters.len();
        // ngx_wasm_module: the log step calls on_done then on_log, the done step on_delete
        // (`ngx_proxy_wasm_on_log`, `ngx_proxy_wasm_on_done`). Envoy logs before it destroys
        // the filters (`doDeferredStreamDestroy`: log, then destroyFilters -> on_done).
        let order: Vec<(usize, Callback, &'static str)> = match model {
            HttpModel::Ngx => (0..len)
                .flat_map(|p| [(p, Callback::Done), (p, Callback::Log)])
                .chain((0..len).map(|p| (p, Callback::Delete)))
                .map(|(p, cb)| (p, cb, func_of(cb)))
                .collect(),
            HttpModel::Envoy => [Callback::Log, Callback::Done, Callback::Delete]
                .into_iter()
                .flat_map(|cb| (0..len).map(move |p| (p, cb, func_of(cb))))
                .collect(),
        };
        for (p, cb, _) in order {
            if !self.exchange_alive(run) {
                break;
            }
            if self.phase_call(run, cb, p, &[]).is_none() {
                run.outcome.failed = true;
                break;
            }
        }
        self.finish_exchange(run);
    }

    /// Takes the exchange's stream off the worker into its outcome.
    fn finish_exchange(&mut self, run: &mut ExchangeRun) {
        let wr = &mut self.nodes[run.n].workers[run.w];
        let same = run.generation == wr.generation;
        let data = wr.store.as_mut().filter(|_| same).and_then(|store| {
            let host = store.data_mut();
            for c in &run.ctxs {
                host.stream_of.remove(c);
            }
            host.streams.remove(&run.key)
        });
        let mut data = data.unwrap_or_else(|| run.snapshot.clone());
        if self.shared.profile.http == HttpModel::Ngx {
            // nginx frames a response whose length the filters removed as chunked.
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
            run.outcome.incomplete = !bodyless
                && !head
                && promised.is_some_and(|len| data.messages.response_body.len() < len);
        }
        run.outcome.data = data;
        run.step = Step::Finished;
    }

    /// The exchange's contexts died with the instance (a trap). ngx_wasm_module answers 500 for
    /// a trap in a request phase and lets a request paused by a trapped context go on to the
    /// upstream (an HTTP context's `on_http_call_response` that panics still ends in the
    /// upstream's response); no callback reaches the dead contexts.
    fn exchange_trapped(&mut self, run: &mut ExchangeRun, in_request_phase: bool) {
        run.outcome.failed = true;
        let mut data = self
            .orphaned_streams
            .remove(&(run.n, run.w, run.key))
            .unwrap_or_else(|| run.snapshot.clone());
        if in_request_phase && self.reopen_for_stashed_response(run, &data) {
            return;
        }
        let waiting_request = run.waiting == Some(true);
        let answer_upstream = self.shared.profile.http == HttpModel::Ngx
            && !in_request_phase
            && (waiting_request || matches!(run.step, Step::Headers { request: true, .. }));
        let stashed = data
            .local_response
            .clone()
            .filter(|_| !data.local_response_sent && !data.entered_response_headers);
        if let (HttpModel::Ngx, Some(local)) = (self.shared.profile.http, stashed) {
            // ngx_wasm_module flushes a stashed local response even when the filter trapped
            // after stashing it (a second send_local_response traps "already stashed").
            let (mut headers, body) = local_response_message(&local, Vec::new(), true);
            add_shim_headers(&mut headers, self.shared.clock.now(), true);
            data.response_headers = headers;
            data.response_body = body;
            data.local_response_sent = true;
        } else if answer_upstream {
            // The upstream's answer, with the response headers the filter added before it
            // trapped (seen in the engine: `X-Early` from on_request_headers is kept).
            let mut headers = run.input.response_headers.clone();
            headers.extend(added_headers(&data.response_headers));
            add_shim_headers(&mut headers, self.shared.clock.now(), false);
            data.response_headers = headers;
            data.response_body = run.input.response_body.clone();
            data.response_trailers = run.input.response_trailers.clone();
        } else if !data.entered_response_headers {
            let added = added_headers(&data.response_headers);
            data.response_headers = vec![(":status".into(), "500".into())];
            data.response_body.clear();
            if self.shared.profile.http == HttpModel::Ngx {
                // nginx's own error page, with the response headers the filter added before it
                // trapped (seen in the engine).
                let body = NGINX_500.as_bytes().to_vec();
                let h = &mut data.response_headers;
                h.extend(added);
                set_header(h, "Content-Type", "text/html");
                set_header(h, "Content-Length", &body.len().to_string());
                // nginx closes the connection after an internal error.
                set_header(h, "Connection", "close");
                add_shim_headers(h, self.shared.clock.now(), false);
                data.response_body = body;
            }
        }
        run.snapshot = data;
        run.waiting = None;
        // Forget the stream if the instance still holds it (Envoy: the worker is dead).
        self.finish_exchange(run);
    }

    /// ngx_wasm_module: a request phase trapped after a local response was stashed (a second
    /// `send_local_response` traps "local response already stashed"). The next step needs the
    /// instance, so `ngx_proxy_wasm_run_step` re-creates it (`ngx_proxy_wasm_create_context`:
    /// root context configured, the HTTP context created again under its id), and the stashed
    /// response goes through the response phases there, as the engine showed (docs/host-behaviours.md,
    /// "Hostcall rules of ngx_wasm_module"). Returns whether the exchange goes on.
    fn reopen_for_stashed_response(&mut self, run: &mut ExchangeRun, data: &StreamData) -> bool {
        let profile = &self.shared.profile;
        let stashed = data.local_response.is_some()
            && !data.local_response_sent
            && !data.entered_response_headers;
        if profile.http != HttpModel::Ngx || !profile.lazy_recovery || !stashed {
            return false;
        }
        self.wake(run.n, run.w);
        let wr = &mut self.nodes[run.n].workers[run.w];
        if wr.dead.is_some() {
            return false;
        }
        let Some(store) = wr.store.as_mut() else {
            return false;
        };
        let host = store.data_mut();
        for c in &run.ctxs {
            host.stream_of.insert(*c, run.key);
        }
        host.streams.insert(run.key, data.clone());
        run.generation = wr.generation;
        run.snapshot = data.clone();
        run.waiting = None;
        for pos in 0..run.filters.len() {
            let root = self.root_id(run.n, run.filters[pos]);
            if self
                .phase_call(run, Callback::HttpCreate, pos, &[root as i32])
                .is_none()
            {
                // Trapped again: the exchange ends as any trapped one.
                return false;
            }
        }
        true
    }

    /// Calls a phase callback of the context at chain position `p`, records it, and returns
    /// its action; `None` when the context trapped (the exchange is then over).
    fn phase_action(
        &mut self,
        run: &mut ExchangeRun,
        cb: Callback,
        p: usize,
        args: &[i32],
        name: &'static str,
    ) -> Option<Action> {
        let request_phase = matches!(
            cb,
            Callback::RequestHeaders | Callback::RequestBody | Callback::RequestTrailers
        );
        match self.phase_call(run, cb, p, args) {
            None => {
                self.exchange_trapped(run, request_phase);
                None
            }
            Some(v) => {
                let action = if v.unwrap_or(0) == 0 {
                    Action::Continue
                } else {
                    Action::Pause
                };
                run.outcome.actions.push((name, action));
                Some(action)
            }
        }
    }

    /// Invokes `proxy_<cb>(ctx, args...)` for the context at position `p`; `None` if it trapped.
    fn phase_call(
        &mut self,
        run: &mut ExchangeRun,
        cb: Callback,
        p: usize,
        args: &[i32],
    ) -> Option<Option<i32>> {
        let ctx = run.ctxs[p];
        let mut all = vec![ctx as i32];
        all.extend_from_slice(args);
        let func = func_of(cb);
        let r = self.invoke(run.n, run.w, cb, ctx, func, &all);
        let result = match r {
            Invoke::Returned(v) => Some(v),
            Invoke::Failed => None,
        };
        run.outcome.callbacks.push(CallbackCall {
            context: ctx,
            name: func.trim_start_matches("proxy_"),
            args: args.to_vec(),
            result: result.flatten(),
        });
        if let Some(s) = self.stream_data(run) {
            run.snapshot = s.clone();
        }
        result
    }

    /// A host line about an exchange in the log (`[host] ...`).
    fn exchange_note(&self, run: &ExchangeRun, message: &str) {
        let line = LogLine {
            at: self.elapsed(),
            origin: self.origin(run.n, run.w),
            level: LogLevel::Error,
            message: format!("[host] {message}"),
        };
        lock(&self.shared.recorder).push_log(line, false);
    }

    /// Whether `ctx` on a worker is an HTTP context of an exchange still in flight.
    pub(super) fn live_http_context(&self, n: usize, w: usize, ctx: u32) -> bool {
        self.nodes[n].workers[w]
            .store
            .as_ref()
            .is_some_and(|s| s.data().is_stream(ctx))
    }
}

/// nginx's 500 page (`ngx_http_error_500_page` and its tail), as the engine answers a trap.
const NGINX_500: &str = "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n\
<body>\r\n<center><h1>500 Internal Server Error</h1></center>\r\n\
<hr><center>nginx/1.27.4</center>\r\n</body>\r\n</html>\r\n";

/// The guest export of an HTTP context's callback.
fn func_of(cb: Callback) -> &'static str {
    match cb {
        Callback::HttpCreate => "proxy_on_context_create",
        Callback::RequestHeaders => "proxy_on_request_headers",
        Callback::RequestBody => "proxy_on_request_body",
        Callback::RequestTrailers => "proxy_on_request_trailers",
        Callback::ResponseHeaders => "proxy_on_response_headers",
        Callback::ResponseBody => "proxy_on_response_body",
        Callback::ResponseTrailers => "proxy_on_response_trailers",
        Callback::Log => "proxy_on_log",
        Callback::Done => "proxy_on_done",
        Callback::Delete => "proxy_on_delete",
        _ => "proxy_on_http_call_response",
    }
}

/// A body split where the test asked (`chunks`: sizes), else one chunk.
fn body_chunks(body: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
    if sizes.is_empty() {
        return if body.is_empty() {
            Vec::new()
        } else {
            vec![body.to_vec()]
        };
    }
    let mut out = Vec::new();
    let mut at = 0;
    for size in sizes {
        let end = (at + size).min(body.len());
        out.push(body[at..end].to_vec());
        at = end;
    }
    if at < body.len() {
        out.push(body[at..].to_vec());
    }
    out
}

/// The response headers a filter set before the response (ngx_wasm_module keeps them on the
/// answer: the upstream's, a local response, nginx's 500 page after a trap).
fn added_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| !k.starts_with(':'))
        .cloned()
        .collect()
}

/// The headers nginx adds to every response after the filters, which ngx_wasm_module already
/// shows them ("shim headers", `ngx_http_wasm_count_shim_headers`): `Connection`, `Server`,
/// `Date` (the virtual clock's). The map comes in nginx's order: `:status`, its known headers
/// (`Content-Type`, `Content-Length`, `Connection`), the others in order, `Server`, `Date`; a
/// local response's `Content-Length` (set when it is flushed) after the others (seen in the
/// engine: docs/host-behaviours.md).
fn add_shim_headers(headers: &mut Vec<(String, String)>, now: std::time::SystemTime, local: bool) {
    for (name, value) in [
        ("Connection", "keep-alive".to_string()),
        ("Server", "nginx/1.27.4".to_string()),
        ("Date", httpdate::fmt_http_date(now)),
    ] {
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
            headers.push((name.to_string(), value));
        }
    }
    let rank = |k: &str| match k.to_ascii_lowercase().as_str() {
        k if k.starts_with(':') => 0,
        "content-type" => 1,
        "content-length" if local => 4,
        "content-length" => 2,
        "connection" => 3,
        "server" => 5,
        "date" => 6,
        _ => 4,
    };
    // A stable sort keeps the upstream's order among the others.
    headers.sort_by_key(|(k, _)| rank(k));
}

/// Sets a header (case-insensitive name), replacing every value it had.
fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    match headers
        .iter()
        .position(|(k, _)| k.eq_ignore_ascii_case(name))
    {
        Some(i) => {
            headers[i].1 = value.to_string();
            let mut seen = false;
            headers.retain(|(k, _)| {
                if !k.eq_ignore_ascii_case(name) {
                    return true;
                }
                let keep = !seen;
                seen = true;
                keep
            });
        }
        None => headers.push((name.to_string(), value.to_string())),
    }
}

/// The response a local response becomes: headers and body.
///
/// * ngx_wasm_module (`ngx_http_wasm_stash_local_response`, `..._flush_local_response`): the
///   body gets a trailing LF; headers the filter added to the response before are kept and the
///   local ones set over them; `Content-Type` (nginx's `default_type`, `text/plain`) when there
///   is a body, `Content-Length` always.
/// * Envoy (`sendLocalReply`): the local headers; `content-length` and `content-type:
///   text/plain` when there is a body.
fn local_response_message(
    local: &LocalResponse,
    kept: Vec<(String, String)>,
    ngx: bool,
) -> (Vec<(String, String)>, Vec<u8>) {
    let mut headers = vec![(":status".to_string(), local.status.to_string())];
    let mut body = local.body.clone();
    if ngx {
        headers.extend(kept);
        for (k, v) in &local.headers {
            set_header(&mut headers, k, v);
        }
        if !body.is_empty() {
            body.push(b'\n');
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                headers.push(("Content-Type".into(), "text/plain".into()));
            }
        }
        set_header(&mut headers, "Content-Length", &body.len().to_string());
    } else {
        headers.extend(local.headers.iter().cloned());
        HttpModel::Envoy.present_names(&mut headers);
        if !body.is_empty() {
            set_header(&mut headers, "content-length", &body.len().to_string());
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                headers.push(("content-type".into(), "text/plain".into()));
            }
        }
    }
    (headers, body)
}
