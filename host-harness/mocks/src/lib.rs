//! Endpoints for the simulated world and for real clients: mock S3, GCS and Kong Admin API, fault
//! injection, and a TCP server that puts any handler on a port.

pub mod http;

pub mod aws_credentials;
pub mod faults;
pub mod gcs;
pub mod kong;
pub mod s3;
pub mod serve;
pub mod sigv4;

pub use http::{
    CallContext, CallFailure, Handler, HttpRequest, HttpResponse, Reply, SharedHandler,
};
