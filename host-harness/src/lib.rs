//! A proxy-wasm host for tests and experiments: loads a real filter `.wasm` with wasmtime and runs
//! it without a gateway — virtual clock, many workers and nodes, shared data, dispatched HTTP calls
//! routed to in-process handlers (mock S3/GCS/Kong, closures) or real TCP endpoints, and the
//! behaviour differences of Envoy and ngx_wasm_module (Kong), and a seeded `hostile` host that
//! answers with unusual-but-legal statuses and unasked-for callbacks ([`hostile`]).
//!
//! The crate's README has a quickstart for testing your own filter (build it with
//! [`wasm_build::build_in`], route its calls, send requests, advance time). Any proxy-wasm 0.2.x
//! module loads, whatever its language; this one is written in WebAssembly text and logs on
//! every tick:
//!
//! ```
//! use std::time::Duration;
//! use host_harness::{HostProfile, NodeSpec, PluginModule, World};
//! let module = PluginModule::from_bytes(br#"(module
//!   (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
//!   (import "env" "proxy_set_tick_period_milliseconds" (func $period (param i32) (result i32)))
//!   (memory (export "memory") 1)
//!   (data (i32.const 16) "tick")
//!   (func (export "proxy_abi_version_0_2_1"))
//!   (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 1024)
//!   (func (export "proxy_on_context_create") (param i32 i32))
//!   (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1)
//!   (func (export "proxy_on_configure") (param i32 i32) (result i32)
//!     (drop (call $period (i32.const 1000))) i32.const 1)
//!   (func (export "proxy_on_tick") (param i32)
//!     (drop (call $log (i32.const 2) (i32.const 16) (i32.const 4)))))"#)?;
//! let mut world = World::new(HostProfile::ngx_wasm_module());
//! let node = world.add_node(NodeSpec::new("gw", &module).workers(2).filter("{}"))?;
//! world.advance(Duration::from_millis(3500));
//! assert_eq!(world.logs_containing("tick").len(), 2 * 3); // 3 ticks on each worker
//! assert_eq!(world.worker_count(node), 2);
//! assert!(world.traps().is_empty());
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! ```no_run
//! use std::time::Duration;
//! use host_harness::{HostProfile, NodeSpec, PluginModule, World};
//! let module = PluginModule::load("filter.wasm").unwrap();
//! let mut world = World::new(HostProfile::ngx_wasm_module());
//! let node = world.add_node(NodeSpec::new("dp1", &module).workers(2).filter(r#"{"k":"v"}"#)).unwrap();
//! world.advance(Duration::from_secs(60));
//! assert!(world.traps().is_empty());
//! ```
//!
//! An HTTP filter: requests through it as the profile's host runs them (response phases on a local
//! response, body chunks and buffering, callback order, several requests in flight):
//!
//! ```no_run
//! use host_harness::{HostProfile, HttpExchange, NodeSpec, PluginModule, World};
//! let module = PluginModule::load("my_filter.wasm").unwrap();
//! let mut world = World::new(HostProfile::ngx_wasm_module());
//! let node = world.add_node(NodeSpec::new("gw", &module).named_filter("auth", "{}")).unwrap();
//! let request = HttpExchange::request("POST", "/login", Vec::new())
//!     .header("Authorization", "Bearer x")
//!     .request_body_chunks(&[b"user=", b"me"])
//!     .respond(200, &[("content-type", "text/plain")], b"welcome");
//! let out = world.http(node, 0, 0, request);
//! println!("{} {:?}", out.status(), out.data.response_headers);
//! for call in &out.callbacks {
//!     println!("{}({:?}) -> {:?}", call.name, call.args, call.result);
//! }
//! if let Some(trap) = world.traps().first() {
//!     println!("{}", trap.summary()); // callback, kind, the guest's panic, frames
//! }
//! ```

pub(crate) mod abi;
pub use abi::{HttpMessages, LocalResponse, StreamData};
pub mod cli;
pub mod clock;
mod cpu_time;
pub mod grpc;
pub mod hostile;
pub mod module;
pub mod profile;
pub mod record;
mod state;
pub mod tcp_upstream;
pub mod wasm_build;
pub mod world;

/// Mock S3, GCS and Kong Admin API servers as call handlers, fault injection, and `serve` (the
/// same handlers on a TCP port).
pub use harness_mocks as mocks;
/// What a dispatched call handler sees and answers ([`http::HttpRequest`], [`http::Reply`]).
pub use harness_mocks::http;
pub use hostile::{Hostility, Injection, InjectionRecord};
pub use module::{AbiVersion, PluginModule};
pub use profile::{HostProfile, HttpModel};
pub use record::{
    CallOutcome, CallRecord, CallbackTimes, GuestCall, LogLevel, LogLine, TrapRecord,
};
pub use state::SharedValue;
pub use world::{
    Action, CallbackCall, ExchangeId, FilterSpec, HttpExchange, HttpOutcome, NodeId, NodeSpec,
    TcpExchange, TcpOutcome, World,
};
