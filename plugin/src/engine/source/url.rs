//! A URL polled on ticks by the node's lease holder; change detected by ETag (`If-None-Match` →
//! 304) or, without ETags, by the content hash (the export never uploads identical bytes twice).

use std::rc::Rc;

use super::PollResult;
use crate::document::validate_declarative_json;
use crate::http::{HttpResponse, OutboundRequest};
use crate::http_url::HttpUrl;

#[derive(Clone, Debug)]
pub struct UrlPoller {
    url: HttpUrl,
    upstream: String,
    interval_ms: u64,
    etag: Option<String>,
    next_poll_at: u64,
}

impl UrlPoller {
    pub fn new(url: HttpUrl, upstream: String, interval_ms: u64) -> UrlPoller {
        UrlPoller {
            url,
            upstream,
            interval_ms,
            etag: None,
            next_poll_at: 0,
        }
    }

    pub fn due(&self, now: u64) -> bool {
        now >= self.next_poll_at
    }

    pub fn describe(&self) -> String {
        self.url.to_string()
    }

    /// The GET for this poll; the next poll is scheduled now so that a lost answer cannot stall it.
    pub fn request(&mut self, now: u64) -> OutboundRequest {
        self.next_poll_at = now.saturating_add(self.interval_ms);
        let mut headers = vec![("accept".to_string(), "application/json".to_string())];
        if let Some(e) = &self.etag {
            headers.push(("if-none-match".to_string(), e.clone()));
        }
        OutboundRequest {
            upstream: self.upstream.clone(),
            method: "GET".into(),
            path: self.url.path_and_query.clone(),
            authority: self.url.authority(),
            scheme: self.url.scheme.clone(),
            headers,
            body: Rc::default(),
        }
    }

    pub fn on_response(&mut self, resp: HttpResponse) -> PollResult {
        match resp.status {
            304 => PollResult::Unchanged,
            200 => {
                if let Err(reason) = validate_declarative_json(&resp.body) {
                    return PollResult::Failed(format!("the answer {reason}"));
                }
                self.etag = resp.header("etag").map(str::to_string);
                PollResult::Fetched(resp.body)
            }
            s => PollResult::Failed(format!("HTTP {s}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poller() -> UrlPoller {
        match super::super::Source::from_config(&crate::settings::SourceConfig::Url {
            url: HttpUrl::parse("http://127.0.0.1:8001/config?x=1").unwrap(),
            upstream: "127.0.0.1:8001".into(),
            poll_interval_ms: 5000,
        }) {
            super::super::Source::Url(p) => p,
            _ => panic!("not a URL source"),
        }
    }

    fn resp(status: u16, etag: Option<&str>, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: etag
                .map(|e| vec![("etag".to_string(), e.to_string())])
                .unwrap_or_default(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn polls_on_schedule_with_etag() {
        let mut p = poller();
        assert!(p.due(0));
        let r = p.request(0);
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.authority.as_str()),
            ("GET", "/config?x=1", "127.0.0.1:8001")
        );
        assert_eq!(r.header("if-none-match"), None);
        // Log lines name the URL without its query (a signed URL's query is a credential).
        assert_eq!(p.describe(), "http://127.0.0.1:8001/config?…");
        assert!(!p.due(4999) && p.due(5000));
        let body = r#"{"_format_version":"3.0"}"#;
        assert_eq!(
            p.on_response(resp(200, Some("\"v1\""), body)),
            PollResult::Fetched(body.as_bytes().to_vec())
        );
        assert_eq!(p.request(5000).header("if-none-match"), Some("\"v1\""));
        assert_eq!(p.on_response(resp(304, None, "")), PollResult::Unchanged);
    }

    #[test]
    fn rejects_answers_that_are_not_declarative_configs() {
        let mut p = poller();
        assert!(matches!(
            p.on_response(resp(200, None, "[1]")),
            PollResult::Failed(_)
        ));
        assert!(matches!(
            p.on_response(resp(200, None, "{\"a\":1}")),
            PollResult::Failed(_)
        ));
        assert_eq!(
            p.on_response(resp(500, None, "")),
            PollResult::Failed("HTTP 500".into())
        );
    }
}
