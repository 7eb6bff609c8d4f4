//! HTTP exchanges through a filter chain, as the profile's host runs them
//! (docs/host-behaviours.md, "HTTP exchanges"): one HTTP context per filter, request phases in
//! chain order, the upstream's response or the filter's local response through the response
//! phases, bodies in chunks with `Pause` buffering, then `on_log`/`on_done`/`on_delete` in the
//! host's order. Several exchanges can be in flight on one worker: each waits in virtual time
//! while a filter pauses it and goes on when an event (a call answer, a tick) resumes it.

use super::exchange::{
    add_shim_headers, added_headers, body_chunks, func_of, local_response_message, set_header,
    Direction, ExchangeRun, Step, NGINX_500,
};
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
                dir: Direction::Request,
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
            if let Some(dir) = run.waiting {
                if !self.take_resume(run, dir) {
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

    fn trailer_count(&self, run: &ExchangeRun, dir: Direction) -> usize {
        self.stream_data(run)
            .map(|s| s.trailers(dir).len())
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
    fn take_resume(&mut self, run: &ExchangeRun, dir: Direction) -> bool {
        let Some(s) = self.stream_data_mut(run) else {
            return true;
        };
        if s.local_response.is_some() && !s.local_response_sent {
            return true;
        }
        let flag = match dir {
            Direction::Request => &mut s.resumed_request,
            Direction::Response => &mut s.resumed_response,
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
    fn order(&self, run: &ExchangeRun, dir: Direction) -> Vec<usize> {
        let len = run.filters.len();
        match (dir, self.shared.profile.http) {
            (Direction::Response, HttpModel::Envoy) => (0..len).rev().collect(),
            _ => (0..len).collect(),
        }
    }

    /// Runs one step; returns false when the exchange now waits for a resume.
    fn step(&mut self, run: &mut ExchangeRun) -> bool {
        let model = self.shared.profile.http;
        match run.step {
            Step::Headers { dir, pos } => {
                let order = self.order(run, dir);
                let Some(&p) = order.get(pos) else {
                    run.step = self.after_headers(run, dir);
                    return true;
                };
                let (count, eos) = self.headers_args(run, dir);
                let (cb, name) = dir.headers_callback();
                if dir == Direction::Response {
                    if let Some(s) = self.stream_data_mut(run) {
                        s.entered_response_headers = true;
                    }
                }
                let Some(action) = self.phase_action(run, cb, p, &[count, eos as i32], name) else {
                    return true;
                };
                if dir == Direction::Response && self.local_response_pending(run) {
                    // A local response from on_response_headers replaces the response.
                    self.replace_response_from_headers_phase(run);
                }
                run.step = Step::Headers { dir, pos: pos + 1 };
                self.continue_or_wait(run, action, dir)
            }
            Step::Body { dir, chunk, pos } => self.body_step(run, dir, chunk, pos),
            Step::Trailers { dir, pos } => {
                let order = self.order(run, dir);
                let Some(&p) = order.get(pos) else {
                    run.step = match dir {
                        Direction::Request => Step::Upstream,
                        Direction::Response => Step::Close,
                    };
                    return true;
                };
                let count = self.trailer_count(run, dir) as i32;
                let (cb, name) = dir.trailers_callback();
                let Some(action) = self.phase_action(run, cb, p, &[count], name) else {
                    return true;
                };
                run.step = Step::Trailers { dir, pos: pos + 1 };
                self.continue_or_wait(run, action, dir)
            }
            Step::Upstream => {
                self.install_upstream_response(run);
                run.step = Step::Headers {
                    dir: Direction::Response,
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
    fn continue_or_wait(&self, run: &mut ExchangeRun, action: Action, dir: Direction) -> bool {
        if action == Action::Continue {
            return true;
        }
        run.waiting = Some(dir);
        false
    }

    /// The arguments of a headers callback: the count (ngx_wasm_module leaves pseudo-headers
    /// out) and end of stream (ngx_wasm_module: always false).
    fn headers_args(&self, run: &ExchangeRun, dir: Direction) -> (i32, bool) {
        let Some(s) = self.stream_data(run) else {
            return (0, false);
        };
        let headers = s.headers(dir);
        match self.shared.profile.http {
            HttpModel::Ngx => {
                let n = headers.iter().filter(|(k, _)| !k.starts_with(':')).count();
                (n as i32, false)
            }
            HttpModel::Envoy => {
                let trailers = s.trailers(dir);
                let no_body = run.chunks.iter().all(|c| c.is_empty());
                (headers.len() as i32, no_body && trailers.is_empty())
            }
        }
    }

    /// What follows the headers phases of a direction.
    fn after_headers(&mut self, run: &mut ExchangeRun, dir: Direction) -> Step {
        let request = dir == Direction::Request;
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
            HttpModel::Ngx if request && !has_body => self.after_body(run, dir),
            // nginx sends a 204 or 304 (or an answer to HEAD) header-only: no body filter.
            HttpModel::Ngx if !request && self.header_only(run) => self.after_body(run, dir),
            HttpModel::Ngx => {
                if run.chunks.is_empty() {
                    run.chunks.push(Vec::new());
                }
                Step::Body {
                    dir,
                    chunk: 0,
                    pos: 0,
                }
            }
            HttpModel::Envoy if has_body => {
                run.chunks.retain(|c| !c.is_empty());
                Step::Body {
                    dir,
                    chunk: 0,
                    pos: 0,
                }
            }
            HttpModel::Envoy => self.after_body(run, dir),
        }
    }

    /// What follows the body of a direction: its trailers (Envoy only; ngx_wasm_module has no
    /// trailer callbacks), then the upstream or the end.
    fn after_body(&mut self, run: &mut ExchangeRun, dir: Direction) -> Step {
        let request = dir == Direction::Request;
        let forwarded = std::mem::take(&mut run.forwarded);
        if let Some(s) = self.stream_data_mut(run) {
            *s.body_mut(dir) = forwarded;
        }
        let has_trailers = self.trailer_count(run, dir) > 0;
        match (self.shared.profile.http, has_trailers, request) {
            (HttpModel::Envoy, true, _) => Step::Trailers { dir, pos: 0 },
            (_, _, true) => Step::Upstream,
            (_, _, false) => Step::Close,
        }
    }

    /// One body chunk through the chain from position `pos`; returns false when it waits.
    fn body_step(
        &mut self,
        run: &mut ExchangeRun,
        dir: Direction,
        chunk: usize,
        pos: usize,
    ) -> bool {
        let request = dir == Direction::Request;
        let model = self.shared.profile.http;
        let order = self.order(run, dir);
        let last = chunk + 1 >= run.chunks.len();
        let trailers = self.trailer_count(run, dir) > 0;
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
                self.after_body(run, dir)
            } else {
                Step::Body {
                    dir,
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
            run.step = self.next_chunk(run, dir, chunk, last, p);
            return true;
        }
        let buffer = run.buffers[p].clone();
        if let Some(s) = self.stream_data_mut(run) {
            s.entered_response_body |= !request;
            *s.body_mut(dir) = buffer.clone();
        }
        let (cb, name) = dir.body_callback();
        let args = [buffer.len() as i32, eos as i32];
        let Some(action) = self.phase_action(run, cb, p, &args, name) else {
            return true;
        };
        // The filter may have changed the buffer.
        run.buffers[p] = self
            .stream_data(run)
            .map(|s| s.body(dir).clone())
            .unwrap_or_default();
        let pass_on = |run: &mut ExchangeRun| {
            run.carry = std::mem::take(&mut run.buffers[p]);
            run.step = Step::Body {
                dir,
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
                run.step = self.next_chunk(run, dir, chunk, last, p);
                true
            }
            (Action::Pause, HttpModel::Ngx, false, false) => {
                run.buffering_to_eof[p] = true;
                run.step = self.next_chunk(run, dir, chunk, last, p);
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
                run.waiting = Some(dir);
                false
            }
        }
    }

    /// The step after a filter at position `p` kept a chunk buffered: the next chunk, or,
    /// after the last one (trailers follow, Envoy), the buffer passes on.
    fn next_chunk(
        &mut self,
        run: &mut ExchangeRun,
        dir: Direction,
        chunk: usize,
        last: bool,
        p: usize,
    ) -> Step {
        if !last {
            return Step::Body {
                dir,
                chunk: chunk + 1,
                pos: 0,
            };
        }
        let order = self.order(run, dir);
        let pos = order.iter().position(|x| *x == p).unwrap_or(order.len());
        run.carry = std::mem::take(&mut run.buffers[p]);
        Step::Body {
            dir,
            chunk,
            pos: pos + 1,
        }
    }

    /// A paused step was resumed: move past the filter that paused.
    fn after_resume(&mut self, run: &mut ExchangeRun) {
        // Headers and trailers steps already point past the paused filter.
        if let Step::Body { dir, chunk, pos } = run.step {
            let order = self.order(run, dir);
            if let Some(&p) = order.get(pos) {
                run.carry = std::mem::take(&mut run.buffers[p]);
            }
            run.step = Step::Body {
                dir,
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
            dir: Direction::Response,
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
        let waiting_request = run.waiting == Some(Direction::Request);
        let answer_upstream = self.shared.profile.http == HttpModel::Ngx
            && !in_request_phase
            && (waiting_request
                || matches!(
                    run.step,
                    Step::Headers {
                        dir: Direction::Request,
                        ..
                    }
                ));
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
