//! Serves a `MockGcs` on a local port for real clients (google-cloud-storage) until killed.
//!
//! `cargo run -q -p harness-mocks --example serve_gcs -- [--port P] [--bucket NAME]...`
//! prints `listening http://127.0.0.1:P` once ready. Keys are registered by the clients through
//! `POST /_mock/service-accounts` (see `harness_mocks::gcs`).

use std::sync::Arc;

use harness_mocks::gcs::MockGcs;
use harness_mocks::serve;

fn main() -> std::io::Result<()> {
    let mut port = 0u16;
    let mut buckets = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(0),
            "--bucket" => buckets.extend(args.next()),
            other => {
                eprintln!(
                    "unknown argument {other:?}; usage: serve_gcs [--port P] [--bucket NAME]..."
                );
                std::process::exit(2);
            }
        }
    }
    let gcs = MockGcs::new();
    for b in &buckets {
        gcs.create_bucket(b);
    }
    let server = serve::spawn(Arc::new(gcs.clone()), &format!("127.0.0.1:{port}"))?;
    // Key files and object links must name the served address.
    gcs.set_base_url(&server.url());
    println!("listening {}", server.url());
    loop {
        std::thread::park();
    }
}
