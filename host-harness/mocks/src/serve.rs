//! Puts any `Handler` on a TCP port (HTTP/1.1), so real clients (boto3, aws CLI,
//! google-cloud-storage) can talk to the same mocks the simulated world uses.
//!
//! API (fixed; implementation in progress):
//!   `pub fn spawn(handler: SharedHandler, addr: &str) -> std::io::Result<ServerHandle>`
//!   `ServerHandle::addr(&self) -> std::net::SocketAddr`, `ServerHandle::url(&self) -> String`
//!   (`http://127.0.0.1:PORT`), dropping the handle stops the server.
