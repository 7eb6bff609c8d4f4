//! The proxy-wasm 0.2.x host ABI (0.2.1 and 0.2.0 names) over wasmtime, plus WASI preview 1.
//!
//! Hostcalls never call back into the guest's `proxy_on_*` functions: whatever they start
//! (dispatched calls, tick changes, queue notifications) goes to the worker's outbox, and the world
//! acts on it after the guest call has returned. That is what real hosts do, and the SDK depends on
//! it (it registers a call's token only after `proxy_http_call` returns).

mod hostcalls;
pub(crate) mod maps;
pub(crate) mod memory;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Engine, Linker};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::http::{CallFailure, HttpRequest};
use crate::record::Origin;
use crate::state::{NodeShared, WorldShared};

/// proxy-wasm status codes.
#[allow(dead_code)]
pub(crate) mod status {
    pub(crate) const OK: i32 = 0;
    pub(crate) const NOT_FOUND: i32 = 1;
    pub(crate) const BAD_ARGUMENT: i32 = 2;
    pub(crate) const SERIALIZATION_FAILURE: i32 = 3;
    pub(crate) const EMPTY: i32 = 7;
    pub(crate) const CAS_MISMATCH: i32 = 8;
    pub(crate) const INTERNAL_FAILURE: i32 = 10;
    pub(crate) const UNIMPLEMENTED: i32 = 12;
}

/// Which guest callback is running: the profile's rules depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Callback {
    Initialize,
    ContextCreate,
    VmStart,
    Configure,
    Tick,
    QueueReady,
    /// `on_http_call_response` of a root context.
    RootCallResponse,
    /// An HTTP context's own callbacks, one variant each (trap reports name them).
    HttpCreate,
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    ResponseHeaders,
    ResponseBody,
    ResponseTrailers,
    /// `on_http_call_response` of an HTTP context.
    HttpCallResponse,
    /// `on_queue_ready` delivered to an HTTP context that registered a queue.
    HttpQueueReady,
    /// `on_grpc_receive` / `on_grpc_close` (of a root or an HTTP context).
    Grpc,
    /// An L4 stream context's callbacks (Envoy network filters).
    NewConnection,
    DownstreamData,
    UpstreamData,
    DownstreamClose,
    UpstreamClose,
    Log,
    Done,
    Delete,
}

impl Callback {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Callback::Initialize => "_initialize",
            Callback::ContextCreate => "on_context_create",
            Callback::VmStart => "on_vm_start",
            Callback::Configure => "on_configure",
            Callback::Tick => "on_tick",
            Callback::QueueReady => "on_queue_ready",
            Callback::RootCallResponse => "on_http_call_response",
            Callback::HttpCreate => "on_context_create",
            Callback::RequestHeaders => "on_request_headers",
            Callback::RequestBody => "on_request_body",
            Callback::RequestTrailers => "on_request_trailers",
            Callback::ResponseHeaders => "on_response_headers",
            Callback::ResponseBody => "on_response_body",
            Callback::ResponseTrailers => "on_response_trailers",
            Callback::HttpCallResponse => "on_http_call_response",
            Callback::HttpQueueReady => "on_queue_ready",
            Callback::Grpc => "on_grpc_receive/close",
            Callback::NewConnection => "on_new_connection",
            Callback::DownstreamData => "on_downstream_data",
            Callback::UpstreamData => "on_upstream_data",
            Callback::DownstreamClose => "on_downstream_connection_close",
            Callback::UpstreamClose => "on_upstream_connection_close",
            Callback::Log => "on_log",
            Callback::Done => "on_done",
            Callback::Delete => "on_delete",
        }
    }

    /// A callback of an HTTP (or L4 stream) context.
    pub(crate) fn is_http(self) -> bool {
        !matches!(
            self,
            Callback::Initialize
                | Callback::ContextCreate
                | Callback::VmStart
                | Callback::Configure
                | Callback::Tick
                | Callback::QueueReady
                | Callback::RootCallResponse
                | Callback::Grpc
        )
    }
}

/// The answer to a dispatched call while its callback runs.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallResponseData {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
}

/// The request and response of one HTTP exchange: headers (with pseudo-headers), bodies,
/// trailers. [`crate::HttpExchange`] (what a test sends) and [`StreamData`] (what the filter left)
/// both hold one and dereference to it, so `exchange.request_headers` and
/// `outcome.data.response_body` read as before.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpMessages {
    /// Request headers including `:method`, `:path`, `:authority`, `:scheme`.
    pub request_headers: Vec<(String, String)>,
    /// The request body (whole, as it left the chain).
    pub request_body: Vec<u8>,
    /// Request trailers.
    pub request_trailers: Vec<(String, String)>,
    /// Response headers including `:status`.
    pub response_headers: Vec<(String, String)>,
    /// The response body.
    pub response_body: Vec<u8>,
    /// Response trailers.
    pub response_trailers: Vec<(String, String)>,
}

/// The direction of an HTTP exchange a phase runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Downstream to upstream: request headers, body, trailers.
    Request,
    /// Upstream (or a local response) to downstream.
    Response,
}

impl Direction {
    /// The other direction.
    #[cfg(test)]
    pub(crate) fn other(self) -> Direction {
        match self {
            Direction::Request => Direction::Response,
            Direction::Response => Direction::Request,
        }
    }

    /// The headers callback of this direction and its name in an outcome's actions.
    pub(crate) fn headers_callback(self) -> (Callback, &'static str) {
        match self {
            Direction::Request => (Callback::RequestHeaders, "request_headers"),
            Direction::Response => (Callback::ResponseHeaders, "response_headers"),
        }
    }

    /// The body callback of this direction and its name.
    pub(crate) fn body_callback(self) -> (Callback, &'static str) {
        match self {
            Direction::Request => (Callback::RequestBody, "request_body"),
            Direction::Response => (Callback::ResponseBody, "response_body"),
        }
    }

    /// The trailers callback of this direction and its name.
    pub(crate) fn trailers_callback(self) -> (Callback, &'static str) {
        match self {
            Direction::Request => (Callback::RequestTrailers, "request_trailers"),
            Direction::Response => (Callback::ResponseTrailers, "response_trailers"),
        }
    }
}

impl HttpMessages {
    /// The headers of a direction.
    pub(crate) fn headers(&self, dir: Direction) -> &Vec<(String, String)> {
        match dir {
            Direction::Request => &self.request_headers,
            Direction::Response => &self.response_headers,
        }
    }

    /// The trailers of a direction.
    pub(crate) fn trailers(&self, dir: Direction) -> &Vec<(String, String)> {
        match dir {
            Direction::Request => &self.request_trailers,
            Direction::Response => &self.response_trailers,
        }
    }

    /// The body of a direction.
    pub(crate) fn body(&self, dir: Direction) -> &Vec<u8> {
        match dir {
            Direction::Request => &self.request_body,
            Direction::Response => &self.response_body,
        }
    }

    /// The body of a direction, to replace.
    pub(crate) fn body_mut(&mut self, dir: Direction) -> &mut Vec<u8> {
        match dir {
            Direction::Request => &mut self.request_body,
            Direction::Response => &mut self.response_body,
        }
    }
}

/// Request/response data of one HTTP exchange, shared by the HTTP contexts of its filter chain.
#[derive(Clone, Debug, Default)]
pub struct StreamData {
    /// Headers, trailers, and the body buffer the running body callback sees (the exchange's
    /// record holds whole bodies: see [`crate::HttpOutcome`]).
    pub messages: HttpMessages,
    /// The local response the filter sent, if it did.
    pub local_response: Option<LocalResponse>,
    /// Set by `proxy_continue_stream` / `proxy_continue_request|response`.
    pub resumed_request: bool,
    /// Set when the filter resumes the response.
    pub resumed_response: bool,
    /// Set by `proxy_close_stream`.
    pub closed: bool,
    /// Properties the filter set from this exchange's contexts: they stay in this request
    /// (docs/host-behaviours.md, "Per-request properties").
    pub properties: HashMap<String, Vec<u8>>,
    /// The local response has been turned into the response (it went through the response
    /// phases or is about to).
    pub local_response_sent: bool,
    /// Where the exchange is: ngx_wasm_module refuses a local response once the response has
    /// entered its header filter (`entered_header_filter`), except from `on_response_headers`.
    pub entered_response_headers: bool,
    /// The response body phase has started.
    pub entered_response_body: bool,
    /// The downstream address, for `source.*` properties.
    pub source: (String, u16),
    /// The filter name (`plugin_name`) of each context of the chain.
    pub filter_names: HashMap<u32, String>,
    /// The root context of each context of the chain.
    pub roots: HashMap<u32, u32>,
    /// When the request arrived (the world's wall clock): `request.time`, `request.duration`.
    pub started: Option<std::time::SystemTime>,
    /// The request's body has been read (nginx reads it after the request headers phases):
    /// `request.total_size` counts it from then on.
    pub request_body_read: bool,
}

/// `Deref`/`DerefMut` from a type with a `messages: HttpMessages` field to it, so the fields of
/// [`HttpMessages`] read as the type's own.
macro_rules! deref_to_messages {
    ($t:ty) => {
        impl std::ops::Deref for $t {
            type Target = $crate::abi::HttpMessages;
            fn deref(&self) -> &$crate::abi::HttpMessages {
                &self.messages
            }
        }

        impl std::ops::DerefMut for $t {
            fn deref_mut(&mut self) -> &mut $crate::abi::HttpMessages {
                &mut self.messages
            }
        }
    };
}
pub(crate) use deref_to_messages;

deref_to_messages!(StreamData);

/// A response the filter produced itself (`send_http_response`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalResponse {
    /// The status the filter gave.
    pub status: u32,
    /// Its details string (Envoy's response code details).
    pub details: String,
    /// Its headers, as the host stored them.
    pub headers: Vec<(String, String)>,
    /// Its body, as the filter gave it.
    pub body: Vec<u8>,
    /// Its gRPC status (-1: none).
    pub grpc_status: i32,
}

/// A call accepted by `proxy_http_call`, waiting for the world to send it.
#[derive(Clone, Debug)]
pub(crate) struct PendingCall {
    pub token: u32,
    pub context_id: u32,
    pub upstream: String,
    pub request: HttpRequest,
    pub timeout: Duration,
    /// Set when the profile fails the call at once (unknown upstream on ngx).
    pub immediate_failure: Option<CallFailure>,
}

/// What hostcalls leave for the world to do once the guest call returns.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub calls: Vec<PendingCall>,
    /// (root context, period in ms; 0 stops ticks)
    pub tick_periods: Vec<(u32, u32)>,
    /// queue ids that received an item
    pub enqueued: Vec<u32>,
    /// gRPC unary calls accepted (Envoy profile): (token, context, request)
    pub grpc_calls: Vec<(u32, u32, crate::grpc::GrpcRequest)>,
}

/// The data of one worker's wasmtime `Store`.
pub(crate) struct Host {
    pub wasi: WasiP1Ctx,
    pub world: Arc<WorldShared>,
    pub node: Arc<NodeShared>,
    pub origin: Origin,
    /// Bumped each time the worker's instance is recreated.
    pub generation: u64,
    pub callback: Callback,
    pub effective_context: u32,
    /// (vm configuration, plugin configuration) by root context id.
    pub root_configs: HashMap<u32, (Vec<u8>, Vec<u8>)>,
    /// Exchanges in flight, by key; `stream_of` maps each HTTP context to its exchange.
    pub streams: HashMap<u32, StreamData>,
    pub stream_of: HashMap<u32, u32>,
    /// The filter name of each root context (`plugin_name`).
    pub root_names: HashMap<u32, String>,
    /// The next `proxy_http_call` token of this worker (ngx_wasm_module counts per process from
    /// 0); `None`: world-wide tokens from 1.
    pub worker_tokens: Option<Arc<std::sync::atomic::AtomicU32>>,
    pub call_response: Option<CallResponseData>,
    /// While `on_grpc_receive` runs: the message; while `on_grpc_close` runs: the status.
    pub grpc_message: Option<Vec<u8>>,
    pub grpc_status: Option<(u32, String)>,
    pub outbox: Outbox,
    /// A host crash the last hostcall caused (the guest is unwound with a trap).
    pub fatal: Option<String>,
    /// A trap that kills the worker for good (no recovery).
    pub fatal_trap: Option<String>,
    /// Root contexts of this instance that have set their tick period (ngx: only once).
    pub tick_set: std::collections::HashSet<u32>,
}

impl Host {
    /// The store data of a new instance of a worker at `origin`: no root context yet (the caller
    /// adds its filters' `root_configs` and `root_names`), nothing in flight.
    pub(crate) fn new(
        wasi: WasiP1Ctx,
        world: Arc<WorldShared>,
        node: Arc<NodeShared>,
        origin: Origin,
        generation: u64,
        worker_tokens: Option<Arc<std::sync::atomic::AtomicU32>>,
    ) -> Host {
        Host {
            wasi,
            world,
            node,
            origin,
            generation,
            callback: Callback::Initialize,
            effective_context: 0,
            root_configs: HashMap::new(),
            streams: HashMap::new(),
            stream_of: HashMap::new(),
            root_names: HashMap::new(),
            worker_tokens,
            call_response: None,
            grpc_message: None,
            grpc_status: None,
            outbox: Outbox::default(),
            fatal: None,
            fatal_trap: None,
            tick_set: Default::default(),
        }
    }

    pub(crate) fn is_root(&self, context_id: u32) -> bool {
        self.root_configs.contains_key(&context_id)
    }

    /// The exchange of the effective context (an HTTP context).
    pub(crate) fn stream(&self) -> Option<&StreamData> {
        let key = self.stream_of.get(&self.effective_context)?;
        self.streams.get(key)
    }

    pub(crate) fn stream_mut(&mut self) -> Option<&mut StreamData> {
        let key = self.stream_of.get(&self.effective_context)?;
        self.streams.get_mut(key)
    }

    /// Whether `ctx` is a live HTTP context.
    pub(crate) fn is_stream(&self, ctx: u32) -> bool {
        self.stream_of.contains_key(&ctx)
    }

    /// The `plugin_name` of the effective context.
    pub(crate) fn plugin_name(&self) -> Option<String> {
        let ctx = self.effective_context;
        if let Some(name) = self.root_names.get(&ctx) {
            return Some(name.clone());
        }
        self.stream()?.filter_names.get(&ctx).cloned()
    }
}

/// A linker with every hostcall the harness provides and WASI preview 1.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<Host>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |h: &mut Host| &mut h.wasi)?;
    // The pre-snapshot name of WASI's exit, which proxy-wasm hosts still provide
    // (proxy-wasm-cpp-host registers WASI functions under both names): AssemblyScript's `abort`
    // ends there. The guest stops with a trap, as an exit inside a callback does.
    linker.func_wrap(
        "wasi_unstable",
        "proc_exit",
        |_: wasmtime::Caller<'_, Host>, code: i32| -> wasmtime::Result<()> {
            wasmtime::bail!("proc_exit({code})")
        },
    )?;
    hostcalls::add(&mut linker)?;
    Ok(linker)
}

/// `(module, name)` of every function the harness provides.
pub(crate) fn provided_imports(engine: &Engine) -> wasmtime::Result<Vec<(String, String)>> {
    let linker = linker(engine)?;
    let mut store = wasmtime::Store::new(engine, probe_host());
    Ok(linker
        .iter(&mut store)
        .map(|(m, n, _)| (m.to_string(), n.to_string()))
        .collect())
}

/// A host for listing a linker's definitions (no guest ever runs in it).
pub(crate) fn probe_host() -> Host {
    let world = WorldShared::new(
        crate::clock::Clock::virtual_default(),
        crate::profile::HostProfile::envoy(),
    );
    let origin = Origin {
        node: "probe".into(),
        worker: 0,
    };
    Host::new(
        wasmtime_wasi::WasiCtxBuilder::new().build_p1(),
        Arc::new(world),
        NodeShared::new("probe", "probe"),
        origin,
        0,
        None,
    )
}
