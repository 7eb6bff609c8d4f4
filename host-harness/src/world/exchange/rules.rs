//! The pure rules of how a host builds an exchange's messages: the headers and bodies it makes
//! (nginx's shim headers, local responses, the 500 page), body chunks, the guest export of each
//! callback. No worker, no state: unit-tested alone.

use crate::abi::{Callback, LocalResponse};
use crate::profile::HttpModel;

/// nginx's 500 page (`ngx_http_error_500_page` and its tail), as the engine answers a trap.
pub(super) const NGINX_500: &str =
    "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n\
<body>\r\n<center><h1>500 Internal Server Error</h1></center>\r\n\
<hr><center>nginx/1.27.4</center>\r\n</body>\r\n</html>\r\n";

/// The guest export of an HTTP context's callback.
pub(super) fn func_of(cb: Callback) -> &'static str {
    match cb {
        Callback::HttpCreate => "proxy_on_context_create",
        Callback::RequestHeaders => "proxy_on_request_headers",
        Callback::RequestBody => "proxy_on_request_body",
        Callback::RequestTrailers => "proxy_on_request_trailers",
        Callback::ResponseHeaders => "proxy_on_response_headers",
        Callback::ResponseBody => "proxy_on_response_body",
        Callback::ResponseTrailers => "proxy_on_response_trailers",
        Callback::Log => "proxy_on_log",
        Callback::Done => "proxy_on_done",
        Callback::Delete => "proxy_on_delete",
        _ => "proxy_on_http_call_response",
    }
}

/// A body split where the test asked (`chunks`: sizes), else one chunk.
pub(super) fn body_chunks(body: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
    if sizes.is_empty() {
        return if body.is_empty() {
            Vec::new()
        } else {
            vec![body.to_vec()]
        };
    }
    let mut out = Vec::new();
    let mut at = 0;
    for size in sizes {
        let end = (at + size).min(body.len());
        out.push(body[at..end].to_vec());
        at = end;
    }
    if at < body.len() {
        out.push(body[at..].to_vec());
    }
    out
}

/// The response headers a filter set before the response (ngx_wasm_module keeps them on the
/// answer: the upstream's, a local response, nginx's 500 page after a trap).
pub(super) fn added_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| !k.starts_with(':'))
        .cloned()
        .collect()
}

/// The headers nginx adds to every response after the filters, which ngx_wasm_module already
/// shows them ("shim headers", `ngx_http_wasm_count_shim_headers`): `Connection`, `Server`,
/// `Date` (the virtual clock's). The map comes in nginx's order: `:status`, its known headers
/// (`Content-Type`, `Content-Length`, `Connection`), the others in order, `Server`, `Date`; a
/// local response's `Content-Length` (set when it is flushed) after the others (seen in the
/// engine: docs/host-behaviours.md).
pub(super) fn add_shim_headers(
    headers: &mut Vec<(String, String)>,
    now: std::time::SystemTime,
    local: bool,
) {
    for (name, value) in [
        ("Connection", "keep-alive".to_string()),
        ("Server", "nginx/1.27.4".to_string()),
        ("Date", httpdate::fmt_http_date(now)),
    ] {
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
            headers.push((name.to_string(), value));
        }
    }
    let rank = |k: &str| match k.to_ascii_lowercase().as_str() {
        k if k.starts_with(':') => 0,
        "content-type" => 1,
        "content-length" if local => 4,
        "content-length" => 2,
        "connection" => 3,
        "server" => 5,
        "date" => 6,
        _ => 4,
    };
    // A stable sort keeps the upstream's order among the others.
    headers.sort_by_key(|(k, _)| rank(k));
}

/// Sets a header (case-insensitive name), replacing every value it had.
pub(super) fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    match headers
        .iter()
        .position(|(k, _)| k.eq_ignore_ascii_case(name))
    {
        Some(i) => {
            headers[i].1 = value.to_string();
            let mut seen = false;
            headers.retain(|(k, _)| {
                if !k.eq_ignore_ascii_case(name) {
                    return true;
                }
                let keep = !seen;
                seen = true;
                keep
            });
        }
        None => headers.push((name.to_string(), value.to_string())),
    }
}

/// The response a local response becomes: headers and body.
///
/// * ngx_wasm_module (`ngx_http_wasm_stash_local_response`, `..._flush_local_response`): the
///   body gets a trailing LF; headers the filter added to the response before are kept and the
///   local ones set over them; `Content-Type` (nginx's `default_type`, `text/plain`) when there
///   is a body, `Content-Length` always.
/// * Envoy (`sendLocalReply`): the local headers; `content-length` and `content-type:
///   text/plain` when there is a body.
pub(super) fn local_response_message(
    local: &LocalResponse,
    kept: Vec<(String, String)>,
    ngx: bool,
) -> (Vec<(String, String)>, Vec<u8>) {
    let mut headers = vec![(":status".to_string(), local.status.to_string())];
    let mut body = local.body.clone();
    if ngx {
        headers.extend(kept);
        for (k, v) in &local.headers {
            set_header(&mut headers, k, v);
        }
        if !body.is_empty() {
            body.push(b'\n');
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                headers.push(("Content-Type".into(), "text/plain".into()));
            }
        }
        set_header(&mut headers, "Content-Length", &body.len().to_string());
    } else {
        headers.extend(local.headers.iter().cloned());
        HttpModel::Envoy.present_names(&mut headers);
        if !body.is_empty() {
            set_header(&mut headers, "content-length", &body.len().to_string());
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                headers.push(("content-type".into(), "text/plain".into()));
            }
        }
    }
    (headers, body)
}

#[cfg(test)]
mod tests {
    use super::super::Direction;
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_local_responses_length_comes_after_the_filters_headers_in_nginx() {
        let local = LocalResponse {
            status: 403,
            details: String::new(),
            headers: pairs(&[("Sp%20ace", "v"), ("Ok-Name", "v")]),
            body: b"denied".to_vec(),
            grpc_status: -1,
        };
        let (mut headers, body) = local_response_message(&local, Vec::new(), true);
        assert_eq!(body, b"denied\n");
        add_shim_headers(&mut headers, std::time::UNIX_EPOCH, true);
        let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                ":status",
                "Content-Type",
                "Connection",
                "Sp%20ace",
                "Ok-Name",
                "Content-Length",
                "Server",
                "Date"
            ]
        );
        // An upstream's response keeps nginx's order of known headers.
        let mut up = pairs(&[(":status", "200"), ("X-Up", "1"), ("Content-Length", "2")]);
        add_shim_headers(&mut up, std::time::UNIX_EPOCH, false);
        assert_eq!(up[1].0, "Content-Length");
    }

    #[test]
    fn envoy_local_responses_are_lower_case_without_a_trailing_lf() {
        let local = LocalResponse {
            status: 200,
            details: String::new(),
            headers: pairs(&[("Hello", "World")]),
            body: b"hi".to_vec(),
            grpc_status: -1,
        };
        let (headers, body) = local_response_message(&local, Vec::new(), false);
        assert_eq!(body, b"hi");
        assert_eq!(
            headers,
            pairs(&[
                (":status", "200"),
                ("hello", "World"),
                ("content-length", "2"),
                ("content-type", "text/plain")
            ])
        );
    }

    #[test]
    fn bodies_split_where_the_test_asked() {
        assert_eq!(
            body_chunks(b"abcdef", &[2, 3]),
            [b"ab".to_vec(), b"cde".to_vec(), b"f".to_vec()]
        );
        assert!(body_chunks(b"", &[]).is_empty());
        assert_eq!(Direction::Request.other(), Direction::Response);
    }
}
