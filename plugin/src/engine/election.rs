//! The election sub-machine's place (its own issue): Kong-compatible registration objects under
//! `<prefix>/<version>/election/`, listed through the store, the oldest fresh candidate leads.
//! Until then every exporting node leads (conditional writes keep overlapping exports from
//! overwriting a newer config).

use super::CallId;
use crate::http::{HttpResponse, OutboundRequest};

#[derive(Debug, Default)]
pub(super) struct Election;

impl Election {
    /// Whether this node may export now.
    pub(super) fn is_leader(&self) -> bool {
        true
    }

    /// The next request to send, if any (called on ticks by the node's lease holder, when no
    /// election call is in flight).
    pub(super) fn poll(&mut self, _now: u64) -> Option<OutboundRequest> {
        None
    }

    pub(super) fn on_answer(&mut self, _id: CallId, _response: HttpResponse) {}

    pub(super) fn on_failure(&mut self, _id: CallId, _reason: &str) {}
}
