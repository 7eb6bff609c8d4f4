//! gRPC unary calls in the Envoy profile: a test routes a cluster to a handler
//! ([`crate::World::route_grpc`]); `proxy_grpc_call` to it is answered after the handler's latency
//! with `proxy_on_grpc_receive` (a message) or `proxy_on_grpc_close` (a status), as Envoy's
//! `GrpcCallClientHandler` does (`onSuccess` / `onFailure`). Streams are not emulated, and
//! ngx_wasm_module has no gRPC at all (its gRPC hostcalls trap: docs/host-behaviours.md).

use std::sync::Arc;
use std::time::Duration;

/// A unary call as the filter made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcRequest {
    /// The cluster (upstream) it was sent to.
    pub cluster: String,
    /// The gRPC service.
    pub service: String,
    /// The method.
    pub method: String,
    /// Initial metadata.
    pub metadata: Vec<(String, String)>,
    /// The request message (serialized protobuf).
    pub message: Vec<u8>,
}

/// How a handler answers a unary call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrpcReply {
    /// A response message (gRPC status OK), after `latency`.
    Message {
        /// The response message (serialized protobuf).
        message: Vec<u8>,
        /// How long the answer takes (virtual time).
        latency: Duration,
    },
    /// A non-OK gRPC status with its message, after `after`.
    Status {
        /// The gRPC status code (not 0).
        code: u32,
        /// The status message.
        message: String,
        /// How long until it closes (virtual time).
        after: Duration,
    },
}

/// Answers unary calls to one cluster.
pub type GrpcHandler = Arc<dyn Fn(&GrpcRequest) -> GrpcReply + Send + Sync>;
