//! One HTTP exchange ([`Exchange`]): its run state, and how it steps against the worker that
//! runs its contexts, as the profile's host runs it (docs/host-behaviours.md, "HTTP exchanges"):
//! one HTTP context per filter, request phases in chain order, the upstream's response or the
//! filter's local response through the response phases, bodies in chunks with `Pause`
//! buffering, then `on_log`/`on_done`/`on_delete` in the host's order.
//!
//! An exchange knows nothing of the world: [`Exchange::step`] takes the worker and the time and
//! says what came of it ([`Step`]); the router schedules a pause's timeout and steps it again
//! after each event (a call answer, a tick) until it is finished.
//!
//! * `body`: body chunks through the chain, buffering, end of stream.
//! * `response`: the upstream's response, local responses.
//! * `end`: closing, finishing, and an exchange whose contexts died with a trap.
//! * `rules`: the pure rules of the messages a host builds.

mod body;
mod end;
mod response;
mod rules;
#[cfg(test)]
mod tests;

use std::time::Duration;

use self::rules::{body_chunks, func_of};
use super::http::{Action, CallbackCall, HttpOutcome};
use super::worker::{Invoke, Worker};
use super::HttpExchange;
use crate::abi::{Callback, HttpMessages, StreamData};
use crate::profile::HttpModel;
use crate::record::LogLevel;

pub(crate) use crate::abi::Direction;

/// Where an exchange is. `pos` is a position in the direction's chain order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Headers {
        dir: Direction,
        pos: usize,
    },
    Body {
        dir: Direction,
        chunk: usize,
        pos: usize,
    },
    Trailers {
        dir: Direction,
        pos: usize,
    },
    Upstream,
    Close,
    Finished,
}

/// What one [`Exchange::step`] came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// It moved on: step again.
    Ready,
    /// Paused until the filter resumes it. `timeout`: the pause is new; it ends (stuck) at this
    /// time unless the filter resumes it first, and the timeout carries this sequence number.
    Waiting { timeout: Option<(Duration, u64)> },
    /// Over: its outcome is complete.
    Finished,
}

/// An exchange in flight (or finished, with its outcome).
pub(super) struct Exchange {
    /// The (node, worker) it runs on.
    pub(super) at: (usize, usize),
    /// The generation of the instance that holds its contexts.
    generation: u64,
    /// The exchange's key in the worker's streams (its first context).
    key: u32,
    /// Filter index of each chain position, and its context.
    filters: Vec<usize>,
    ctxs: Vec<u32>,
    input: HttpExchange,
    phase: Phase,
    /// Paused, waiting for the filter to resume this direction.
    waiting: Option<Direction>,
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

impl Exchange {
    /// Opens an exchange on `worker` (at `at`) through the chain `filters`: its stream in the
    /// worker's store and each filter's HTTP context (`on_context_create`).
    pub(super) fn open(
        worker: &mut Worker,
        at: (usize, usize),
        filters: &[usize],
        input: HttpExchange,
    ) -> Exchange {
        worker.wake();
        let ctxs: Vec<u32> = filters.iter().map(|_| worker.new_context()).collect();
        let key = ctxs.first().copied().unwrap_or(0);
        let stream = new_stream(worker, filters, &ctxs, &input);
        let alive = worker.is_running();
        if let Some(host) = worker.host_mut().filter(|_| alive) {
            for c in &ctxs {
                host.stream_of.insert(*c, key);
            }
            host.streams.insert(key, stream.clone());
        }
        let mut ex = Exchange {
            at,
            generation: worker.generation(),
            key,
            filters: filters.to_vec(),
            ctxs: ctxs.clone(),
            chunks: request_chunks(worker.profile().http, &input),
            input,
            phase: Phase::Headers {
                dir: Direction::Request,
                pos: 0,
            },
            waiting: None,
            pause_seq: 0,
            timeout_set: false,
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
            ex.outcome.failed = true;
            ex.phase = Phase::Finished;
        } else if !ex.create_contexts(worker) {
            ex.trapped(worker, true);
        }
        ex
    }

    /// `on_context_create` for each filter of the chain; false when one trapped.
    fn create_contexts(&mut self, worker: &mut Worker) -> bool {
        for pos in 0..self.filters.len() {
            let root = worker.root_id(self.filters[pos]);
            if self
                .call(worker, Callback::HttpCreate, pos, &[root as i32])
                .is_none()
            {
                return false;
            }
        }
        true
    }

    /// Moves the exchange one step on at time `now`: a phase callback, a resume, a local
    /// response, the upstream's answer, or the end.
    pub(super) fn step(&mut self, worker: &mut Worker, now: Duration) -> Step {
        if self.phase == Phase::Finished {
            return Step::Finished;
        }
        if !self.alive(worker) {
            // The instance was replaced (a trap elsewhere): the contexts are gone.
            self.trapped(worker, false);
        } else if let Some(dir) = self.waiting {
            if !self.take_resume(worker, dir) {
                return self.wait(now);
            }
            self.waiting = None;
            self.timeout_set = false;
            self.after_resume(worker);
        } else if self.local_response_pending(worker) {
            self.send_local_response(worker);
        } else {
            // A phase that pauses sets `waiting`: the filter may have resumed (or sent a local
            // response) in the very callback, which the next step sees at once.
            self.run_phase(worker);
        }
        match self.phase {
            Phase::Finished => Step::Finished,
            _ => Step::Ready,
        }
    }

    /// Still paused: a new pause gets its timeout.
    fn wait(&mut self, now: Duration) -> Step {
        if self.timeout_set {
            return Step::Waiting { timeout: None };
        }
        self.timeout_set = true;
        self.pause_seq += 1;
        let due = now + self.input.max_pause;
        Step::Waiting {
            timeout: Some((due, self.pause_seq)),
        }
    }

    /// The timeout of pause `seq` is due: if the exchange still waits in that pause it is
    /// stuck, and closed as the host would. Returns whether it was.
    pub(super) fn time_out(&mut self, seq: u64) -> bool {
        if self.waiting.is_none() || self.pause_seq != seq || self.phase == Phase::Finished {
            return false;
        }
        self.outcome.stuck = true;
        self.waiting = None;
        self.timeout_set = false;
        self.phase = Phase::Close;
        true
    }

    /// Whether it has ended.
    pub(super) fn finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// What happened so far (complete once finished).
    pub(super) fn outcome(&self) -> &HttpOutcome {
        &self.outcome
    }

    /// Runs the phase it is in.
    fn run_phase(&mut self, worker: &mut Worker) {
        match self.phase {
            Phase::Headers { dir, pos } => self.headers_step(worker, dir, pos),
            Phase::Body { dir, chunk, pos } => self.body_step(worker, dir, chunk, pos),
            Phase::Trailers { dir, pos } => self.trailers_step(worker, dir, pos),
            Phase::Upstream => {
                self.install_upstream_response(worker);
                self.phase = Phase::Headers {
                    dir: Direction::Response,
                    pos: 0,
                };
            }
            Phase::Close => self.close(worker),
            Phase::Finished => {}
        }
    }

    /// The headers callback of the filter at `pos` in the direction's order.
    fn headers_step(&mut self, worker: &mut Worker, dir: Direction, pos: usize) {
        let Some(p) = self.order(worker, dir).get(pos).copied() else {
            self.phase = self.after_headers(worker, dir);
            return;
        };
        let (count, eos) = self.headers_args(worker, dir);
        let (cb, name) = dir.headers_callback();
        if dir == Direction::Response {
            if let Some(s) = worker.stream_mut(self.key) {
                s.entered_response_headers = true;
            }
        }
        let Some(action) = self.phase_action(worker, cb, p, &[count, eos as i32], name) else {
            return;
        };
        if dir == Direction::Response && self.local_response_pending(worker) {
            // A local response from on_response_headers replaces the response.
            self.replace_response_from_headers_phase(worker);
        }
        self.phase = Phase::Headers { dir, pos: pos + 1 };
        self.continue_or_wait(action, dir);
    }

    /// The trailers callback of the filter at `pos` (Envoy).
    fn trailers_step(&mut self, worker: &mut Worker, dir: Direction, pos: usize) {
        let Some(p) = self.order(worker, dir).get(pos).copied() else {
            self.phase = match dir {
                Direction::Request => Phase::Upstream,
                Direction::Response => Phase::Close,
            };
            return;
        };
        let count = self.trailer_count(worker, dir) as i32;
        let (cb, name) = dir.trailers_callback();
        let Some(action) = self.phase_action(worker, cb, p, &[count], name) else {
            return;
        };
        self.phase = Phase::Trailers { dir, pos: pos + 1 };
        self.continue_or_wait(action, dir);
    }

    /// After a headers or trailers callback: go on, or wait for the filter to resume.
    fn continue_or_wait(&mut self, action: Action, dir: Direction) {
        if action == Action::Pause {
            self.waiting = Some(dir);
        }
    }

    /// The arguments of a headers callback: the count (ngx_wasm_module leaves pseudo-headers
    /// out) and end of stream (ngx_wasm_module: always false).
    fn headers_args(&self, worker: &Worker, dir: Direction) -> (i32, bool) {
        let Some(s) = worker.stream(self.key) else {
            return (0, false);
        };
        let headers = s.headers(dir);
        match worker.profile().http {
            HttpModel::Ngx => {
                let n = headers.iter().filter(|(k, _)| !k.starts_with(':')).count();
                (n as i32, false)
            }
            HttpModel::Envoy => {
                let no_body = self.chunks.iter().all(|c| c.is_empty());
                (headers.len() as i32, no_body && s.trailers(dir).is_empty())
            }
        }
    }

    /// The chain order of a direction: the request in chain order; the response in chain order
    /// for ngx_wasm_module (one chain, every phase in order) and in reverse for Envoy (encoder
    /// filters).
    fn order(&self, worker: &Worker, dir: Direction) -> Vec<usize> {
        let len = self.filters.len();
        match (dir, worker.profile().http) {
            (Direction::Response, HttpModel::Envoy) => (0..len).rev().collect(),
            _ => (0..len).collect(),
        }
    }

    /// Whether the worker still runs the instance that holds its contexts.
    fn alive(&self, worker: &Worker) -> bool {
        worker.is_running()
            && worker.generation() == self.generation
            && worker.stream(self.key).is_some()
    }

    fn trailer_count(&self, worker: &Worker, dir: Direction) -> usize {
        worker.stream(self.key).map_or(0, |s| s.trailers(dir).len())
    }

    /// Whether the paused direction was resumed (or a local response ends the pause); clears
    /// the flag.
    fn take_resume(&self, worker: &mut Worker, dir: Direction) -> bool {
        let Some(s) = worker.stream_mut(self.key) else {
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

    fn local_response_pending(&self, worker: &Worker) -> bool {
        worker
            .stream(self.key)
            .is_some_and(|s| s.local_response.is_some() && !s.local_response_sent)
    }

    /// A paused step was resumed: move past the filter that paused (headers and trailers
    /// phases already point past it).
    fn after_resume(&mut self, worker: &Worker) {
        if let Phase::Body { dir, chunk, pos } = self.phase {
            match self.order(worker, dir).get(pos) {
                Some(&p) => self.pass_on(dir, chunk, pos, p),
                None => {
                    self.phase = Phase::Body {
                        dir,
                        chunk,
                        pos: pos + 1,
                    }
                }
            }
        }
    }

    /// Calls a phase callback of the context at chain position `p`, records its action;
    /// `None` when the context trapped (the exchange is then over).
    fn phase_action(
        &mut self,
        worker: &mut Worker,
        cb: Callback,
        p: usize,
        args: &[i32],
        name: &'static str,
    ) -> Option<Action> {
        let request_phase = matches!(
            cb,
            Callback::RequestHeaders | Callback::RequestBody | Callback::RequestTrailers
        );
        let Some(v) = self.call(worker, cb, p, args) else {
            self.trapped(worker, request_phase);
            return None;
        };
        let action = match v.unwrap_or(0) {
            0 => Action::Continue,
            _ => Action::Pause,
        };
        self.outcome.actions.push((name, action));
        Some(action)
    }

    /// Invokes `proxy_<cb>(ctx, args...)` for the context at position `p` and records it;
    /// `None` if it trapped.
    fn call(
        &mut self,
        worker: &mut Worker,
        cb: Callback,
        p: usize,
        args: &[i32],
    ) -> Option<Option<i32>> {
        let ctx = self.ctxs[p];
        let mut all = vec![ctx as i32];
        all.extend_from_slice(args);
        let func = func_of(cb);
        let result = match worker.invoke(cb, ctx, func, &all) {
            Invoke::Returned(v) => Some(v),
            Invoke::Failed => None,
        };
        self.outcome.callbacks.push(CallbackCall {
            context: ctx,
            name: func.trim_start_matches("proxy_"),
            args: args.to_vec(),
            result: result.flatten(),
        });
        if let Some(s) = worker.stream(self.key) {
            self.snapshot = s.clone();
        }
        result
    }

    /// A host line about the exchange in the log (`[host] ...`, at Error level).
    fn note(&self, worker: &Worker, message: &str) {
        worker.note(LogLevel::Error, message);
    }
}

/// The exchange's stream as the host creates it: the request (names as the host presents them),
/// no response yet, and each context's filter name and root context.
fn new_stream(
    worker: &Worker,
    filters: &[usize],
    ctxs: &[u32],
    input: &HttpExchange,
) -> StreamData {
    let model = worker.profile().http;
    // The response does not exist before the upstream answers: the map starts empty.
    let mut messages = HttpMessages {
        request_headers: input.request_headers.clone(),
        request_trailers: input.request_trailers.clone(),
        ..Default::default()
    };
    model.present_names(&mut messages.request_headers);
    model.present_names(&mut messages.request_trailers);
    let mut stream = StreamData {
        messages,
        source: input.source.clone(),
        started: Some(worker.wall_now()),
        ..Default::default()
    };
    for (f, ctx) in filters.iter().zip(ctxs) {
        stream.filter_names.insert(*ctx, worker.filter_name(*f));
        stream.roots.insert(*ctx, worker.root_id(*f));
    }
    stream
}

/// The request body's chunks as the host delivers them: ngx_wasm_module reads the whole body
/// before `on_request_body`.
fn request_chunks(model: HttpModel, input: &HttpExchange) -> Vec<Vec<u8>> {
    let chunks = body_chunks(&input.request_body, &input.request_chunks);
    match model {
        HttpModel::Ngx if !chunks.is_empty() => vec![chunks.concat()],
        _ => chunks,
    }
}
