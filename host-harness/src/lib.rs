#![warn(unreachable_pub)]
//! A proxy-wasm host for tests and experiments: loads a real filter `.wasm` with wasmtime and runs
//! it without a gateway — virtual clock, many workers and nodes, shared data, dispatched HTTP calls
//! routed to in-process handlers (mock S3/GCS/Kong, closures) or real TCP endpoints, and the
//! behaviour differences of Envoy and ngx_wasm_module (Kong), and a seeded `hostile` host that
//! answers with unusual-but-legal statuses and unasked-for callbacks ([`hostile`]).
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

pub(crate) mod abi;
pub use abi::{HttpMessages, LocalResponse, StreamData};
pub mod cli;
pub mod clock;
pub mod grpc;
pub mod hostile;
pub mod module;
pub mod profile;
pub mod record;
mod state;
pub mod tcp_upstream;
pub mod wasm_build;
pub mod world;

pub use harness_mocks as mocks;
pub use harness_mocks::http;
pub use hostile::{Hostility, Injection, InjectionRecord};
pub use module::{AbiVersion, PluginModule};
pub use profile::{HostProfile, HttpModel};
pub use record::{CallOutcome, CallRecord, CallbackTimes, LogLevel, LogLine, TrapRecord};
pub use state::SharedValue;
pub use world::{
    Action, CallbackCall, ExchangeId, FilterSpec, HttpExchange, HttpOutcome, NodeId, NodeSpec,
    World,
};
