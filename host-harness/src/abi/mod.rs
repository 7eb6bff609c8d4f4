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
    /// Any callback of an HTTP context (headers, bodies, its call responses, log, done).
    Http,
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
            Callback::Http => "http context callback",
        }
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
    pub request_body: Vec<u8>,
    pub request_trailers: Vec<(String, String)>,
    /// Response headers including `:status`.
    pub response_headers: Vec<(String, String)>,
    pub response_body: Vec<u8>,
    pub response_trailers: Vec<(String, String)>,
}

/// Request/response data of one HTTP context.
#[derive(Clone, Debug, Default)]
pub struct StreamData {
    pub messages: HttpMessages,
    pub local_response: Option<LocalResponse>,
    /// Set by `proxy_continue_stream` / `proxy_continue_request|response`.
    pub resumed_request: bool,
    pub resumed_response: bool,
    pub closed: bool,
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
    pub status: u32,
    pub details: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
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
    pub streams: HashMap<u32, StreamData>,
    pub call_response: Option<CallResponseData>,
    pub outbox: Outbox,
    /// A host crash the last hostcall caused (the guest is unwound with a trap).
    pub fatal: Option<String>,
    /// A trap that kills the worker for good (no recovery).
    pub fatal_trap: Option<String>,
    /// Root contexts of this instance that have set their tick period (ngx: only once).
    pub tick_set: std::collections::HashSet<u32>,
}

impl Host {
    pub(crate) fn is_root(&self, context_id: u32) -> bool {
        self.root_configs.contains_key(&context_id)
    }
}

/// A linker with every hostcall the harness provides and WASI preview 1.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<Host>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |h: &mut Host| &mut h.wasi)?;
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
    Host {
        wasi: wasmtime_wasi::WasiCtxBuilder::new().build_p1(),
        world: Arc::new(WorldShared::new(
            crate::clock::Clock::virtual_default(),
            crate::profile::HostProfile::envoy(),
        )),
        node: NodeShared::new("probe"),
        origin: Origin {
            node: "probe".into(),
            worker: 0,
        },
        generation: 0,
        callback: Callback::Initialize,
        effective_context: 0,
        root_configs: HashMap::new(),
        streams: HashMap::new(),
        call_response: None,
        outbox: Outbox::default(),
        fatal: None,
        fatal_trap: None,
        tick_set: Default::default(),
    }
}
