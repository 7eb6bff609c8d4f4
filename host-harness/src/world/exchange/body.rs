//! Body chunks through the chain: each filter's body callback in the direction's order, what a
//! filter keeps buffered when it pauses (Envoy: `StopIterationAndBuffer`; ngx_wasm_module:
//! buffered to the end of the response body), end of stream as each host computes it, and what
//! comes before and after the body phases.

use super::{Direction, Exchange, Phase};
use crate::profile::HttpModel;
use crate::world::http::Action;
use crate::world::worker::Worker;

impl Exchange {
    /// What follows the headers phases of a direction.
    pub(super) fn after_headers(&mut self, worker: &mut Worker, dir: Direction) -> Phase {
        let request = dir == Direction::Request;
        if let Some(s) = worker.stream_mut(self.key).filter(|_| request) {
            // nginx reads the request body after the request headers phases.
            s.request_body_read = true;
        }
        self.carry.clear();
        self.forwarded.clear();
        self.buffers.iter_mut().for_each(Vec::clear);
        self.buffering_to_eof.iter_mut().for_each(|b| *b = false);
        let has_body = self.chunks.iter().any(|c| !c.is_empty());
        let body = Phase::Body {
            dir,
            chunk: 0,
            pos: 0,
        };
        match worker.profile().http {
            // ngx_wasm_module calls on_request_body only for a request with a body
            // (`ngx_http_proxy_wasm_on_request_body_handler`), but every response body gets a
            // callback, an empty one `(0, eof)` (`ngx_http_proxy_wasm_on_response_body`).
            HttpModel::Ngx if request && !has_body => self.after_body(worker, dir),
            // nginx sends a 204 or 304 (or an answer to HEAD) header-only: no body filter.
            HttpModel::Ngx if !request && self.header_only(worker) => self.after_body(worker, dir),
            HttpModel::Ngx => {
                if self.chunks.is_empty() {
                    self.chunks.push(Vec::new());
                }
                body
            }
            HttpModel::Envoy if has_body => {
                self.chunks.retain(|c| !c.is_empty());
                body
            }
            HttpModel::Envoy => self.after_body(worker, dir),
        }
    }

    /// Whether nginx sends the response without a body (`r->header_only`).
    fn header_only(&self, worker: &Worker) -> bool {
        worker.stream(self.key).is_some_and(|s| {
            let status = s.response_headers.iter().find(|(k, _)| k == ":status");
            let method = s.request_headers.iter().find(|(k, _)| k == ":method");
            matches!(status, Some((_, v)) if v == "204" || v == "304")
                || matches!(method, Some((_, m)) if m == "HEAD")
        })
    }

    /// What follows the body of a direction: its trailers (Envoy only; ngx_wasm_module has no
    /// trailer callbacks), then the upstream or the end.
    fn after_body(&mut self, worker: &mut Worker, dir: Direction) -> Phase {
        let forwarded = std::mem::take(&mut self.forwarded);
        if let Some(s) = worker.stream_mut(self.key) {
            *s.body_mut(dir) = forwarded;
        }
        let has_trailers = self.trailer_count(worker, dir) > 0;
        match (worker.profile().http, has_trailers, dir) {
            (HttpModel::Envoy, true, _) => Phase::Trailers { dir, pos: 0 },
            (_, _, Direction::Request) => Phase::Upstream,
            (_, _, Direction::Response) => Phase::Close,
        }
    }

    /// One body chunk through the chain from position `pos`.
    pub(super) fn body_step(
        &mut self,
        worker: &mut Worker,
        dir: Direction,
        chunk: usize,
        pos: usize,
    ) {
        let order = self.order(worker, dir);
        let last = chunk + 1 >= self.chunks.len();
        let eos = self.end_of_stream(worker, dir, chunk, pos, &order);
        if pos == 0 {
            self.carry = self.chunks.get(chunk).cloned().unwrap_or_default();
        }
        let Some(&p) = order.get(pos) else {
            // The chunk left the chain.
            let carry = std::mem::take(&mut self.carry);
            self.forwarded.extend_from_slice(&carry);
            self.phase = match last {
                true => self.after_body(worker, dir),
                false => Phase::Body {
                    dir,
                    chunk: chunk + 1,
                    pos: 0,
                },
            };
            return;
        };
        let carry = std::mem::take(&mut self.carry);
        self.buffers[p].extend_from_slice(&carry);
        if self.buffering_to_eof[p] && !eos {
            // ngx_wasm_module buffers a paused response body and calls again at its end.
            self.phase = self.next_chunk(&order, dir, chunk, last, p);
            return;
        }
        let Some(action) = self.body_callback(worker, dir, p, eos) else {
            return;
        };
        self.after_body_callback(worker, action, (dir, chunk, pos), (p, eos, last), &order);
    }

    /// End of stream for the body callback at `pos`: the last chunk (Envoy: and no trailers).
    /// ngx_wasm_module, response: with a Content-Length, "this chunk is that long"
    /// (`ngx_http_proxy_wasm_on_response_body`), e.g. false after a local response from
    /// on_response_headers changed the body.
    fn end_of_stream(
        &self,
        worker: &Worker,
        dir: Direction,
        chunk: usize,
        pos: usize,
        order: &[usize],
    ) -> bool {
        let model = worker.profile().http;
        let last = chunk + 1 >= self.chunks.len();
        let trailers = self.trailer_count(worker, dir) > 0;
        let eos = last && (model == HttpModel::Ngx || !trailers);
        if model == HttpModel::Envoy || dir == Direction::Request {
            return eos;
        }
        let length = worker.stream(self.key).and_then(|s| {
            s.response_headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        });
        let Some(length) = length.filter(|l| *l > 0) else {
            return eos;
        };
        let pending = self.buffers.get(order.get(pos).copied().unwrap_or(0));
        let arriving = match pos {
            0 => self.chunks.get(chunk).map_or(0, Vec::len),
            _ => self.carry.len(),
        };
        pending.map_or(0, Vec::len) + arriving == length
    }

    /// The body callback of the filter `p` with what it has buffered; the buffer as the filter
    /// left it. `None` when it trapped.
    fn body_callback(
        &mut self,
        worker: &mut Worker,
        dir: Direction,
        p: usize,
        eos: bool,
    ) -> Option<Action> {
        let buffer = self.buffers[p].clone();
        if let Some(s) = worker.stream_mut(self.key) {
            s.entered_response_body |= dir == Direction::Response;
            *s.body_mut(dir) = buffer.clone();
        }
        let (cb, name) = dir.body_callback();
        let args = [buffer.len() as i32, eos as i32];
        let action = self.phase_action(worker, cb, p, &args, name)?;
        // The filter may have changed the buffer.
        self.buffers[p] = worker
            .stream(self.key)
            .map(|s| s.body(dir).clone())
            .unwrap_or_default();
        Some(action)
    }

    /// Where a body callback's action leads: on through the chain, buffering, or a wait.
    fn after_body_callback(
        &mut self,
        worker: &Worker,
        action: Action,
        (dir, chunk, pos): (Direction, usize, usize),
        (p, eos, last): (usize, bool, bool),
        order: &[usize],
    ) {
        let model = worker.profile().http;
        let request = dir == Direction::Request;
        match (action, model, request, eos) {
            (Action::Continue, ..) => self.pass_on(dir, chunk, pos, p),
            // StopIterationAndBuffer: called again with the next chunk added.
            (Action::Pause, HttpModel::Envoy, _, false) => {
                self.phase = self.next_chunk(order, dir, chunk, last, p);
            }
            (Action::Pause, HttpModel::Ngx, false, false) => {
                self.buffering_to_eof[p] = true;
                self.phase = self.next_chunk(order, dir, chunk, last, p);
            }
            (Action::Pause, HttpModel::Ngx, false, true) => {
                // ngx_wasm_module: Pause at the end of the response body is invalid and
                // becomes Continue (`ngx_http_proxy_wasm_on_response_body`).
                self.note(
                    worker,
                    "invalid \"on_response_body\" return action (PAUSE) at the end of the body",
                );
                self.pass_on(dir, chunk, pos, p);
            }
            // The whole body is there: wait for the filter to resume.
            (Action::Pause, ..) => self.waiting = Some(dir),
        }
    }

    /// The filter at `p` lets its buffer go on to the next position.
    pub(super) fn pass_on(&mut self, dir: Direction, chunk: usize, pos: usize, p: usize) {
        self.carry = std::mem::take(&mut self.buffers[p]);
        self.phase = Phase::Body {
            dir,
            chunk,
            pos: pos + 1,
        };
    }

    /// The phase after a filter at position `p` kept a chunk buffered: the next chunk, or,
    /// after the last one (trailers follow, Envoy), the buffer passes on.
    fn next_chunk(
        &mut self,
        order: &[usize],
        dir: Direction,
        chunk: usize,
        last: bool,
        p: usize,
    ) -> Phase {
        if !last {
            return Phase::Body {
                dir,
                chunk: chunk + 1,
                pos: 0,
            };
        }
        let pos = order.iter().position(|x| *x == p).unwrap_or(order.len());
        self.carry = std::mem::take(&mut self.buffers[p]);
        Phase::Body {
            dir,
            chunk,
            pos: pos + 1,
        }
    }
}
