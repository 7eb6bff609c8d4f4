//! The source sub-machine: where the configuration to export comes from. Each kind turns what it
//! sees into documents; the export does not care which produced them.
//!
//! * `Filter`: the `config` payload of the filter configuration; every `on_configure` applies it
//!   (no requests).
//! * `Url`: an HTTP URL polled on ticks by the node's lease holder (`url`).
//! * `KongAdmin`: a Kong Admin API, `/status` probe and the entity collections in Kong's flat
//!   form (`kong_admin`).

pub mod kong_admin;
pub mod url;

use crate::http::{HttpResponse, OutboundRequest};
use crate::settings::SourceConfig;
use kong_admin::KongAdmin;
pub use url::UrlPoller;

/// What an answer to the source's request gave.
#[derive(Debug, PartialEq, Eq)]
pub enum PollResult {
    Unchanged,
    /// A complete document to export.
    Fetched(Vec<u8>),
    /// Something an operator should know (info level), not an error.
    Note(String),
    Failed(String),
}

#[derive(Debug)]
pub enum Source {
    Filter,
    Url(UrlPoller),
    KongAdmin(Box<KongAdmin>),
}

impl Source {
    pub fn from_config(cfg: &SourceConfig) -> Source {
        match cfg {
            SourceConfig::Filter { .. } => Source::Filter,
            SourceConfig::Url {
                url,
                upstream,
                poll_interval_ms,
            } => Source::Url(UrlPoller::new(
                url.clone(),
                upstream.clone(),
                *poll_interval_ms,
            )),
            SourceConfig::KongAdmin(settings) => {
                Source::KongAdmin(Box::new(KongAdmin::new(settings.clone())))
            }
        }
    }

    /// The next request, if one is due (called by the lease holder, no source call in flight).
    pub fn poll(&mut self, now: u64) -> Option<OutboundRequest> {
        match self {
            Source::Filter => None,
            Source::Url(p) if p.due(now) => Some(p.request(now)),
            Source::Url(_) => None,
            Source::KongAdmin(k) => k.poll(now),
        }
    }

    pub fn on_response(&mut self, resp: HttpResponse, now: u64) -> PollResult {
        match self {
            Source::Filter => PollResult::Unchanged,
            Source::Url(p) => p.on_response(resp),
            Source::KongAdmin(k) => k.on_response(resp, now),
        }
    }

    /// A slice of the work between requests (a Kong Admin API page written into the flat form,
    /// a dump hashed): called on the lease holder's ticks when no source call is in flight.
    pub fn step(&mut self, now: u64) -> PollResult {
        match self {
            Source::KongAdmin(k) => k.step(now),
            Source::Filter | Source::Url(_) => PollResult::Unchanged,
        }
    }

    /// The source's call failed at the transport level (or timed out).
    pub fn on_failure(&mut self, now: u64) {
        if let Source::KongAdmin(k) = self {
            k.on_failure(now);
        }
    }

    /// Work in progress that goes a request per tick (a Kong Admin API dump).
    pub fn busy(&self) -> bool {
        matches!(self, Source::KongAdmin(k) if k.busy())
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Filter => "the filter configuration".into(),
            Source::Url(p) => p.describe(),
            Source::KongAdmin(k) => k.describe(),
        }
    }
}
