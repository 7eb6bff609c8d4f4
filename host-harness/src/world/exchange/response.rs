//! The response an exchange sends downstream: the upstream's answer, a local response the
//! filter sent before the response phases (it goes through them), and one sent from
//! `on_response_headers` (it replaces the response), each as the profile's host builds it.

use super::rules::{
    add_shim_headers, added_headers, body_chunks, local_response_message, set_header,
};
use super::{Direction, Exchange, Phase};
use crate::profile::HttpModel;
use crate::world::worker::Worker;

impl Exchange {
    /// The upstream answers: its headers, trailers and body chunks become the response.
    /// ngx_wasm_module keeps response headers the filter added before (`headers_out`).
    pub(super) fn install_upstream_response(&mut self, worker: &mut Worker) {
        let model = worker.profile().http;
        let now = worker.wall_now();
        let input = &self.input;
        let mut headers = input.response_headers.clone();
        let mut trailers = input.response_trailers.clone();
        model.present_names(&mut headers);
        model.present_names(&mut trailers);
        self.chunks = body_chunks(&input.response_body, &input.response_chunks);
        if let Some(s) = worker.stream_mut(self.key) {
            if model == HttpModel::Ngx {
                headers.extend(added_headers(&s.response_headers));
                add_shim_headers(&mut headers, now, false);
            }
            s.response_headers = headers;
            s.response_trailers = trailers;
            s.response_body.clear();
        }
    }

    /// The filter produced a local response outside the response phases: the request phases
    /// end and the local response goes through the response phases (both hosts run them;
    /// docs/host-behaviours.md, "Local responses").
    pub(super) fn send_local_response(&mut self, worker: &mut Worker) {
        let ngx = worker.profile().http == HttpModel::Ngx;
        let now = worker.wall_now();
        let Some(s) = worker.stream_mut(self.key) else {
            return;
        };
        let Some(local) = s.local_response.clone() else {
            return;
        };
        s.local_response_sent = true;
        s.resumed_request = false;
        if s.entered_response_body {
            // Too late: the response is on its way (ngx_wasm_module traps before this).
            return;
        }
        let kept = match ngx {
            true => added_headers(&s.response_headers),
            false => Vec::new(),
        };
        let (mut headers, body) = local_response_message(&local, kept, ngx);
        if ngx {
            add_shim_headers(&mut headers, now, true);
        }
        s.response_headers = headers;
        s.response_trailers.clear();
        s.response_body.clear();
        self.chunks = vec![body];
        self.waiting = None;
        self.phase = Phase::Headers {
            dir: Direction::Response,
            pos: 0,
        };
    }

    /// ngx_wasm_module: `send_local_response` from `on_response_headers` sets the status and
    /// replaces the body (with a trailing LF); its headers are not applied
    /// (`ngx_proxy_wasm_hfuncs_send_local_response`). Envoy: the local response replaces the
    /// response.
    pub(super) fn replace_response_from_headers_phase(&mut self, worker: &mut Worker) {
        let ngx = worker.profile().http == HttpModel::Ngx;
        let Some(s) = worker.stream_mut(self.key) else {
            return;
        };
        let Some(local) = s.local_response.clone() else {
            return;
        };
        s.local_response_sent = true;
        let body = if ngx {
            let mut body = local.body.clone();
            if !body.is_empty() {
                body.push(b'\n');
            }
            let status = local.status.to_string();
            set_header(&mut s.response_headers, ":status", &status);
            body
        } else {
            let (headers, body) = local_response_message(&local, Vec::new(), false);
            s.response_headers = headers;
            body
        };
        self.chunks = vec![body];
    }
}
