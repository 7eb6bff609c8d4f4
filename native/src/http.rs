//! Real HTTP for the core's requests: an `OutboundRequest` (built and signed by the core) goes
//! out with ureq exactly as built — method, path (already percent-encoded), headers, body — to
//! `scheme://authority`, and the answer comes back as the core's `HttpResponse`. The request's
//! `upstream` is a `dispatch_http_call` notion (a cluster name on Envoy) and is not used here.
//!
//! Redirects are not followed (an S3 301 names the right region; the core reports it). Error
//! texts name the host and the transport error, never a header (headers carry signatures,
//! session tokens and RBAC tokens).

use std::time::Duration;

use config_bridge::http::{HttpResponse, OutboundRequest};
use config_bridge::http_url::HttpUrl;
use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
use ureq::{Agent, SendBody};

use crate::outcome::Progress;
use crate::transfer::{Counting, Meter};
use std::io::Read;

/// The largest answer read (`import_max_bytes` allows at most 1 GiB).
const MAX_BODY: u64 = 1 << 30;

pub struct Http {
    agent: Agent,
    /// The progress line of long transfers (`transfer`).
    meter: Option<Meter>,
    /// `scheme://authority` of a probe and the agent that asks it without verifying TLS.
    unverified: Option<(String, Agent)>,
}

impl Http {
    /// Every request gives up after `timeout`. `roots`: the CAs https servers are verified
    /// against (`--ca-file`); `None`: the Mozilla roots built into the binary.
    pub fn new(timeout: Duration, roots: Option<RootCerts>) -> Http {
        let tls = TlsConfig::builder().root_certs(roots.unwrap_or(RootCerts::WebPki));
        Http {
            agent: agent(timeout, tls.build()),
            unverified: None,
            meter: None,
        }
    }

    /// Long downloads and uploads report their progress on stderr.
    pub fn with_progress(mut self, progress: Progress) -> Http {
        self.meter = Some(Meter::new(progress));
        self
    }

    /// Requests to `url`'s origin skip certificate verification. Only for the CP probe, which
    /// asks "does anything answer?" and trusts nothing in the answer (a CP's cluster listener
    /// usually has a private CA).
    pub fn with_unverified_origin(mut self, url: &HttpUrl, timeout: Duration) -> Http {
        let origin = format!("{}://{}", url.scheme, url.authority());
        let tls = TlsConfig::builder().disable_verification(true).build();
        self.unverified = Some((origin, agent(timeout, tls)));
        self
    }

    pub fn send(&self, req: &OutboundRequest) -> Result<HttpResponse, String> {
        let origin = format!("{}://{}", req.scheme, req.authority);
        let agent = match &self.unverified {
            Some((o, a)) if *o == origin => a,
            _ => &self.agent,
        };
        let url = format!("{origin}{}", req.path);
        let mut builder = ureq::http::Request::builder()
            .method(req.method.as_str())
            .uri(url.as_str());
        for (name, value) in &req.headers {
            // `:authority` is the URL's; the core never adds `host`, but a caller might.
            if !name.eq_ignore_ascii_case("host") {
                builder = builder.header(name.as_str(), value.as_str());
            }
        }
        let upload = self.meter.and_then(|m| {
            m.start(
                format!("uploading to {}", req.authority),
                req.body.len() as u64,
            )
        });
        let sent = if req.body.is_empty() && !matches!(req.method.as_str(), "PUT" | "POST") {
            builder.body(()).map(|r| agent.run(r))
        } else if let Some(report) = upload {
            // The length is known (the core sets content-length): no chunked encoding.
            let mut reader = Counting {
                inner: req.body.as_slice(),
                report,
            };
            builder
                .body(SendBody::from_reader(&mut reader))
                .map(|r| agent.run(r))
        } else {
            builder.body(req.body.as_slice()).map(|r| agent.run(r))
        };
        let mut resp = sent
            .map_err(|e| format!("cannot build the request: {e}"))?
            .map_err(|e| format!("{} {}: {e}", req.method, req.authority))?;
        let status = resp.status().as_u16();
        // Names come lower-cased from the http crate; values need not be UTF-8.
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), lossy(v)))
            .collect();
        let reading = |e: &dyn std::fmt::Display| {
            format!("{} {}: reading the answer: {e}", req.method, req.authority)
        };
        let length = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let download = match (self.meter, length) {
            (Some(m), Some(n)) => m.start(format!("downloading from {}", req.authority), n),
            _ => None,
        };
        let body = if req.method == "HEAD" {
            Vec::new()
        } else if let Some(report) = download {
            let mut reader = Counting {
                inner: resp.body_mut().with_config().limit(MAX_BODY).reader(),
                report,
            };
            let mut body = Vec::new();
            reader.read_to_end(&mut body).map_err(|e| reading(&e))?;
            body
        } else {
            resp.body_mut()
                .with_config()
                .limit(MAX_BODY)
                .read_to_vec()
                .map_err(|e| reading(&e))?
        };
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

fn lossy(value: &ureq::http::HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

/// The certificates of a PEM file, as the only roots https servers are verified against.
pub fn load_roots(pem: &[u8]) -> Result<RootCerts, String> {
    let mut certs = Vec::new();
    for item in parse_pem(pem) {
        // A key in a CA bundle is a mistake, but not one to stop for.
        if let PemItem::Certificate(c) = item.map_err(|e| format!("not a PEM file ({e})"))? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(RootCerts::new_with_certs(&certs))
}

fn agent(timeout: Duration, tls: TlsConfig) -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(timeout))
        .user_agent(concat!("config-bridge/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build()
        .into()
}
