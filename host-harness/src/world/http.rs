//! HTTP exchanges through a filter chain: an HTTP context per exchange, its request and response
//! phases (waiting in virtual time while the filter pauses), `on_log`, `on_done`, `on_delete`.

use std::time::Duration;

use super::lifecycle::Invoke;
use super::{HttpExchange, NodeId, World};
use crate::abi::{Callback, HttpMessages, LocalResponse, StreamData};

/// What happened to an exchange.
#[derive(Clone, Debug, Default)]
pub struct HttpOutcome {
    pub context_id: u32,
    /// The data as the filter left it (headers modified, bodies replaced...).
    pub data: StreamData,
    /// Actions returned by each phase, in order (`request_headers`, `request_body`, ...).
    pub actions: Vec<(&'static str, Action)>,
    /// A phase stayed paused past `max_pause`.
    pub stuck: bool,
    /// The worker trapped or died during the exchange.
    pub failed: bool,
}

impl HttpOutcome {
    pub fn local_response(&self) -> Option<&LocalResponse> {
        self.data.local_response.as_ref()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// One phase of an exchange and the arguments of its callback.
struct Phase {
    name: &'static str,
    func: &'static str,
    /// Headers or trailers count, or body size.
    count: usize,
    end_of_stream: bool,
    /// Whether the exchange has this phase at all (headers always do).
    present: bool,
    request: bool,
}

/// The headers, body and trailers phases of one direction.
fn direction(request: bool, headers: usize, body: usize, trailers: usize) -> [Phase; 3] {
    let [h, b, t] = if request {
        [
            ("request_headers", "proxy_on_request_headers"),
            ("request_body", "proxy_on_request_body"),
            ("request_trailers", "proxy_on_request_trailers"),
        ]
    } else {
        [
            ("response_headers", "proxy_on_response_headers"),
            ("response_body", "proxy_on_response_body"),
            ("response_trailers", "proxy_on_response_trailers"),
        ]
    };
    let phase = |(name, func), count, end_of_stream, present| Phase {
        name,
        func,
        count,
        end_of_stream,
        present,
        request,
    };
    [
        phase(h, headers, body == 0 && trailers == 0, true),
        phase(b, body, trailers == 0, body > 0),
        phase(t, trailers, true, trailers > 0),
    ]
}

/// The six phases of an exchange, in order.
fn phases(m: &HttpMessages) -> impl Iterator<Item = Phase> {
    let request = direction(
        true,
        m.request_headers.len(),
        m.request_body.len(),
        m.request_trailers.len(),
    );
    let response = direction(
        false,
        m.response_headers.len(),
        m.response_body.len(),
        m.response_trailers.len(),
    );
    request.into_iter().chain(response)
}

impl World {
    /// Runs one HTTP exchange through filter `filter` on a worker: context creation, request and
    /// response phases (waiting in virtual time while the filter pauses), `on_log`, `on_done`,
    /// `on_delete`.
    pub fn http(
        &mut self,
        node: NodeId,
        worker: usize,
        filter: usize,
        exchange: HttpExchange,
    ) -> HttpOutcome {
        let (n, root) = (node.0, filter as u32 + 1);
        let mut outcome = HttpOutcome::default();
        let Some(ctx) = self.open_stream(n, worker, &exchange.messages) else {
            outcome.failed = true;
            return outcome;
        };
        outcome.context_id = ctx;
        let args = [ctx as i32, root as i32];
        if let Invoke::Failed = self.invoke(
            n,
            worker,
            Callback::Http,
            ctx,
            "proxy_on_context_create",
            &args,
        ) {
            outcome.failed = true;
            return outcome;
        }
        self.run_phases(n, worker, ctx, &exchange, &mut outcome);
        if !outcome.failed {
            outcome.failed = !self.close_stream(n, worker, ctx);
        }
        if let Some(store) = self.nodes[n].workers[worker].store.as_mut() {
            if let Some(data) = store.data_mut().streams.remove(&ctx) {
                outcome.data = data;
            }
        }
        outcome
    }

    /// A new HTTP context holding the exchange's data; `None` when the worker is not running.
    fn open_stream(&mut self, n: usize, w: usize, messages: &HttpMessages) -> Option<u32> {
        let wr = &mut self.nodes[n].workers[w];
        let store = wr.store.as_mut()?;
        let ctx = wr.next_context;
        wr.next_context += 1;
        let data = StreamData {
            messages: messages.clone(),
            ..Default::default()
        };
        store.data_mut().streams.insert(ctx, data);
        Some(ctx)
    }

    /// The phases the exchange has, until one fails, stays paused, or a local response ends it.
    fn run_phases(
        &mut self,
        n: usize,
        w: usize,
        ctx: u32,
        exchange: &HttpExchange,
        outcome: &mut HttpOutcome,
    ) {
        for phase in phases(&exchange.messages) {
            let ended = self
                .stream(n, w, ctx)
                .is_none_or(|s| s.local_response.is_some());
            if !phase.present || ended {
                continue;
            }
            let mut args = vec![ctx as i32, phase.count as i32];
            if !phase.name.ends_with("trailers") {
                args.push(phase.end_of_stream as i32);
            }
            let action = match self.invoke(n, w, Callback::Http, ctx, phase.func, &args) {
                Invoke::Failed => {
                    outcome.failed = true;
                    return;
                }
                Invoke::Returned(v) if v.unwrap_or(0) == 0 => Action::Continue,
                Invoke::Returned(_) => Action::Pause,
            };
            outcome.actions.push((phase.name, action));
            if action == Action::Pause
                && !self.resumed(n, w, ctx, phase.request, exchange.max_pause)
            {
                outcome.stuck = true;
                return;
            }
        }
    }

    /// Waits (virtual time, up to `max_pause`) for the filter to resume a paused direction or end
    /// the exchange with a local response.
    fn resumed(
        &mut self,
        n: usize,
        w: usize,
        ctx: u32,
        request: bool,
        max_pause: Duration,
    ) -> bool {
        self.advance_until(max_pause, Duration::from_millis(10), |world| {
            world.stream(n, w, ctx).is_none_or(|s| {
                s.local_response.is_some()
                    || if request {
                        s.resumed_request
                    } else {
                        s.resumed_response
                    }
            })
        })
    }

    /// `on_log`, `on_done`, `on_delete`; returns whether they all ran.
    fn close_stream(&mut self, n: usize, w: usize, ctx: u32) -> bool {
        ["proxy_on_log", "proxy_on_done", "proxy_on_delete"]
            .into_iter()
            .all(|func| {
                let failed = self.invoke(n, w, Callback::Http, ctx, func, &[ctx as i32]);
                !matches!(failed, Invoke::Failed)
            })
    }

    pub(super) fn stream(&self, n: usize, w: usize, ctx: u32) -> Option<&StreamData> {
        self.nodes[n].workers[w]
            .store
            .as_ref()
            .and_then(|s| s.data().streams.get(&ctx))
    }
}
