//! Serves a mock S3 on a TCP port until killed (stand-in for `host-harness serve s3`).
//!
//! cargo run -q -p harness-mocks --example serve_s3 -- --port 9000 --region us-east-1 \
//!     --bucket backups --access-key AK --secret-key SK \
//!     [--session-token T] [--read-only-access-key AKR --read-only-secret-key SKR] \
//!     [--domain s3.local] [--host 127.0.0.1]
//!
//! Prints `listening on http://HOST:PORT` once ready.

use std::sync::Arc;

use harness_mocks::s3::{MockS3, MockS3Config, S3Credential};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut host = "127.0.0.1".to_string();
    let mut port = "0".to_string();
    let mut config = MockS3Config::default();
    let (mut ak, mut sk, mut token, mut rak, mut rsk) = (None, None, None, None, None);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| fail(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--host" => host = value(),
            "--port" => port = value(),
            "--region" => config.region = value(),
            "--domain" => config.domain = Some(value()),
            "--bucket" => config.buckets.push(value()),
            "--access-key" => ak = Some(value()),
            "--secret-key" => sk = Some(value()),
            "--session-token" => token = Some(value()),
            "--read-only-access-key" => rak = Some(value()),
            "--read-only-secret-key" => rsk = Some(value()),
            other => fail(&format!("unknown flag {other}")),
        }
    }
    match (ak, sk) {
        (Some(a), Some(s)) => {
            let mut c = S3Credential::new(&a, &s);
            c.session_token = token;
            config.credentials.push(c);
        }
        (None, None) => {}
        _ => fail("--access-key and --secret-key go together"),
    }
    match (rak, rsk) {
        (Some(a), Some(s)) => config
            .credentials
            .push(S3Credential::new(&a, &s).read_only()),
        (None, None) => {}
        _ => fail("--read-only-access-key and --read-only-secret-key go together"),
    }
    let s3 = MockS3::from_config(&config);
    let server = harness_mocks::serve::spawn(Arc::new(s3), &format!("{host}:{port}"))
        .unwrap_or_else(|e| fail(&format!("cannot listen on {host}:{port}: {e}")));
    println!("listening on {}", server.url());
    loop {
        std::thread::park();
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("serve_s3: {msg}");
    std::process::exit(2)
}
