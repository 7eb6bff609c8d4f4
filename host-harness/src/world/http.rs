//! HTTP exchanges through a filter chain as a test sends them: the world's HTTP API and what it
//! reports ([`HttpOutcome`]). Each exchange is an `Exchange` stepping against its worker
//! (`super::exchange`); the world starts it, steps it until it waits or ends, schedules its pause
//! timeouts, and steps it again after each event. Several exchanges can be in flight on one
//! worker: each waits in virtual time while a filter pauses it and goes on when an event (a call
//! answer, a tick) resumes it.

use super::exchange::{Exchange, Step};
use super::scheduler::Event;
use super::{HttpExchange, NodeId, World};
use crate::abi::{LocalResponse, StreamData};

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
        let at = (node.0, worker);
        let run = self.on_worker(at.0, at.1, |w| Exchange::open(w, at, filters, exchange));
        self.exchanges.push(Some(run));
        self.active_exchanges.push(id.0);
        self.drive(id);
        id
    }

    /// Whether an exchange has ended.
    pub fn http_finished(&self, id: ExchangeId) -> bool {
        match self.exchanges.get(id.0) {
            Some(Some(run)) => run.finished(),
            _ => true,
        }
    }

    /// What happened to an exchange so far (complete once [`World::http_finished`]).
    pub fn http_outcome(&self, id: ExchangeId) -> Option<HttpOutcome> {
        let run = self.exchanges.get(id.0)?.as_ref()?;
        Some(run.outcome().clone())
    }

    /// Advances virtual time until the exchange ends (a pause ends at the latest after its
    /// `max_pause`), and returns its outcome.
    pub fn finish_http(&mut self, id: ExchangeId) -> HttpOutcome {
        while !self.http_finished(id) {
            let Some(next) = self.scheduler.next_due() else {
                break;
            };
            self.run_until(next);
        }
        self.http_outcome(id).unwrap_or_default()
    }

    /// Steps an exchange against its worker until it waits or ends; a new pause gets its
    /// timeout in the scheduler.
    fn drive(&mut self, id: ExchangeId) {
        let Some(Some(mut run)) = self.exchanges.get_mut(id.0).map(Option::take) else {
            return;
        };
        let (n, w) = run.at;
        loop {
            let now = self.elapsed();
            match self.on_worker(n, w, |worker| run.step(worker, now)) {
                Step::Ready => continue,
                Step::Waiting {
                    timeout: Some((due, seq)),
                } => {
                    let event = Event::ExchangeTimeout { id: id.0, seq };
                    self.scheduler.schedule(due, event);
                    break;
                }
                Step::Waiting { timeout: None } | Step::Finished => break,
            }
        }
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
            .retain(|i| matches!(exchanges.get(*i), Some(Some(run)) if !run.finished()));
    }

    /// A pause lasted `max_pause`: the exchange is stuck; it is closed as the host would.
    pub(super) fn exchange_timeout(&mut self, id: ExchangeId, seq: u64) {
        let timed_out = match self.exchanges.get_mut(id.0) {
            Some(Some(run)) => run.time_out(seq),
            _ => false,
        };
        if timed_out {
            self.drive(id);
        }
    }
}
