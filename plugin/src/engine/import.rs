//! The import sub-machine's place (its own issue): on a node with no config whose source of
//! truth is unreachable, download `<prefix>/<version>/config.json` through the store (`get`),
//! validate it, and apply it with `POST /config` on the node's Admin API. Until then it never
//! asks for a call, and `cluster_fallback_config_import` is accepted but inert (the shell says so).

use super::CallId;
use crate::http::{HttpResponse, OutboundRequest};

#[derive(Debug, Default)]
pub(super) struct Import;

impl Import {
    /// The next request to send, if any (called on ticks, when no import call is in flight).
    pub(super) fn poll(&mut self, _now: u64) -> Option<OutboundRequest> {
        None
    }

    pub(super) fn on_answer(&mut self, _id: CallId, _response: HttpResponse) {}

    pub(super) fn on_failure(&mut self, _id: CallId, _reason: &str) {}
}
