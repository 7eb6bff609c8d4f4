//! L4 stream contexts (Envoy network filters): a TCP connection through a filter —
//! `on_new_connection`, `on_downstream_data` / `on_upstream_data` per chunk (a `Pause` keeps the
//! data buffered and the next chunk is added), the two connection closes, then `on_log`,
//! `on_done`, `on_delete`. ngx_wasm_module 0.6 runs proxy-wasm filters in HTTP only: the
//! ngx_wasm_module profiles refuse a connection (docs/host-behaviours.md, "L4 stream contexts").

use anyhow::{anyhow, Result};

use super::http::{Action, CallbackCall};
use super::worker::{Invoke, Worker};
use super::{NodeId, World};
use crate::abi::{Callback, Direction, StreamData};
use crate::profile::HttpModel;

/// A TCP connection: what the client sends and what the upstream answers, in chunks.
#[derive(Clone, Debug, Default)]
pub struct TcpExchange {
    /// The client's data, chunk by chunk (`on_downstream_data` each).
    pub downstream: Vec<Vec<u8>>,
    /// The upstream's data, chunk by chunk (`on_upstream_data` each).
    pub upstream: Vec<Vec<u8>>,
}

/// What happened to a connection.
#[derive(Clone, Debug, Default)]
pub struct TcpOutcome {
    /// The connection's stream context.
    pub context_id: u32,
    /// Bytes that reached the upstream, and the client.
    pub to_upstream: Vec<u8>,
    /// Bytes that reached the client.
    pub to_downstream: Vec<u8>,
    /// Every guest callback of the connection with its arguments, in order.
    pub callbacks: Vec<CallbackCall>,
    /// The worker trapped or died during the connection.
    pub failed: bool,
}

/// Peer types of the close callbacks (proxy-wasm `PeerType`).
const PEER_REMOTE: i32 = 2;
const PEER_LOCAL: i32 = 1;

impl World {
    /// Runs a TCP connection through filter `filter` (whose root context declares stream
    /// contexts). Envoy profile only.
    pub fn tcp(
        &mut self,
        node: NodeId,
        worker: usize,
        filter: usize,
        exchange: TcpExchange,
    ) -> Result<TcpOutcome> {
        if self.shared.profile.http == HttpModel::Ngx {
            return Err(anyhow!(
                "{}: ngx_wasm_module runs proxy-wasm filters in HTTP only (no L4 stream contexts)",
                self.shared.profile.name
            ));
        }
        let outcome = self.on_worker(node.0, worker, |w| Connection::run(w, filter, &exchange));
        Ok(outcome)
    }
}

/// One connection's stream context on a worker.
struct Connection<'w> {
    worker: &'w mut Worker,
    out: TcpOutcome,
}

impl Connection<'_> {
    /// The whole connection: context creation, both directions' data, the closes, the end.
    fn run(worker: &mut Worker, filter: usize, exchange: &TcpExchange) -> TcpOutcome {
        let root = worker.root_id(filter);
        let ctx = worker.new_context();
        let running = worker.is_running();
        let Some(host) = worker.host_mut().filter(|_| running) else {
            return TcpOutcome {
                failed: true,
                ..Default::default()
            };
        };
        host.stream_of.insert(ctx, ctx);
        host.streams.insert(ctx, StreamData::default());
        let out = TcpOutcome {
            context_id: ctx,
            ..Default::default()
        };
        let mut conn = Connection { worker, out };
        let mut ok = conn.call(Callback::HttpCreate, &[root as i32]).is_some()
            && conn.call(Callback::NewConnection, &[]).is_some();
        for (downstream, chunks) in [(true, &exchange.downstream), (false, &exchange.upstream)] {
            ok = ok && conn.direction(downstream, chunks);
        }
        if ok {
            conn.close();
        }
        if let Some(host) = conn.worker.host_mut() {
            host.stream_of.remove(&ctx);
            host.streams.remove(&ctx);
        }
        conn.out
    }

    /// The two connection closes, `on_log`, `on_done`, `on_delete`; stops at a trap.
    fn close(&mut self) {
        for (cb, peer) in [
            (Callback::DownstreamClose, PEER_REMOTE),
            (Callback::UpstreamClose, PEER_LOCAL),
            (Callback::Log, 0),
            (Callback::Done, 0),
            (Callback::Delete, 0),
        ] {
            let args: &[i32] = if peer == 0 { &[] } else { &[peer] };
            if self.call(cb, args).is_none() {
                break;
            }
        }
    }

    /// The chunks of one direction; returns false when the context trapped.
    fn direction(&mut self, downstream: bool, chunks: &[Vec<u8>]) -> bool {
        let (cb, dir) = match downstream {
            // Downstream data is kept as the request body, upstream data as the response's.
            true => (Callback::DownstreamData, Direction::Request),
            false => (Callback::UpstreamData, Direction::Response),
        };
        let ctx = self.out.context_id;
        let mut buffered = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let eos = i + 1 == chunks.len();
            buffered.extend_from_slice(chunk);
            if let Some(s) = self.worker.stream_mut(ctx) {
                *s.body_mut(dir) = buffered.clone();
            }
            let args = [buffered.len() as i32, eos as i32];
            let Some(action) = self.call(cb, &args) else {
                return false;
            };
            // The filter may have rewritten the data.
            buffered = self
                .worker
                .stream(ctx)
                .map(|s| s.body(dir).clone())
                .unwrap_or_default();
            if action == Action::Continue {
                let to = match downstream {
                    true => &mut self.out.to_upstream,
                    false => &mut self.out.to_downstream,
                };
                to.append(&mut buffered);
            }
        }
        true
    }

    /// Calls the context's callback and records it; `None` if it trapped.
    fn call(&mut self, cb: Callback, args: &[i32]) -> Option<Action> {
        let ctx = self.out.context_id;
        let func = match cb {
            Callback::HttpCreate => "proxy_on_context_create",
            Callback::NewConnection => "proxy_on_new_connection",
            Callback::DownstreamData => "proxy_on_downstream_data",
            Callback::UpstreamData => "proxy_on_upstream_data",
            Callback::DownstreamClose => "proxy_on_downstream_connection_close",
            Callback::UpstreamClose => "proxy_on_upstream_connection_close",
            Callback::Log => "proxy_on_log",
            Callback::Done => "proxy_on_done",
            _ => "proxy_on_delete",
        };
        let mut all = vec![ctx as i32];
        all.extend_from_slice(args);
        let result = match self.worker.invoke(cb, ctx, func, &all) {
            Invoke::Returned(v) => Some(v),
            Invoke::Failed => None,
        };
        self.out.callbacks.push(CallbackCall {
            context: ctx,
            name: func.trim_start_matches("proxy_"),
            args: args.to_vec(),
            result: result.flatten(),
        });
        match result {
            None => {
                self.out.failed = true;
                None
            }
            Some(v) if v.unwrap_or(0) == 0 => Some(Action::Continue),
            Some(_) => Some(Action::Pause),
        }
    }
}
