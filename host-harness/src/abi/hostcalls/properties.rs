//! Properties: `proxy_get_property`, `proxy_set_property`. A path is the ABI's NUL-separated
//! segments (a segment may contain dots: `metadata` / `envoy.filters.http.lua`). In an HTTP
//! context, properties are the request's own: what the filter set from this request, then what
//! the host derives from it (`request.*`, `response.*`, `source.*`, `plugin_name`), then the
//! node's; writes stay in the request (docs/host-behaviours.md, "Per-request properties").

use wasmtime::{bail, Linker, Result};

use super::super::maps::property_segments;
use super::super::memory::{read, return_bytes};
use super::super::status::{NOT_FOUND, OK};
use super::super::{Callback, Host, StreamData};
use super::C;
use crate::profile::HttpModel;

pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> Result<()> {
    linker.func_wrap("env", "proxy_get_property", proxy_get_property)?;
    linker.func_wrap("env", "proxy_set_property", proxy_set_property)?;
    Ok(())
}

/// Whether a root context's callback is running (where ngx_wasm_module has no properties).
fn in_root_callback(h: &Host) -> bool {
    h.is_root(h.effective_context) && !h.callback.is_http()
}

/// A property in a root context of ngx_wasm_module: `plugin_root_id` ("0") and, in `on_tick`
/// and call responses, `plugin_name`; `plugin_name` in `on_vm_start`/`on_configure` crashes the
/// worker.
fn root_property(h: &mut Host, path: &str) -> Result<Option<Vec<u8>>> {
    match path {
        "plugin_name" if matches!(h.callback, Callback::VmStart | Callback::Configure) => {
            h.fatal = Some(format!(
                "host crashed reading property plugin_name in {}",
                h.callback.name()
            ));
            bail!("host crash (segfault) reading plugin_name in a root context");
        }
        "plugin_name" => Ok(h.plugin_name().map(String::into_bytes)),
        "plugin_root_id" => Ok(Some(b"0".to_vec())),
        _ => Ok(None),
    }
}

/// The node-wide key of a path: segments joined by NUL.
pub(crate) fn key_of(segments: &[String]) -> String {
    segments.join("\0")
}

/// A property the host derives from the exchange, by dotted name.
fn derived(h: &Host, s: &StreamData, path: &[String]) -> Option<Vec<u8>> {
    let ngx = h.world.profile.http == HttpModel::Ngx;
    let header = |map: &[(String, String)], name: &str| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone().into_bytes())
    };
    let req = &s.messages.request_headers;
    let pseudo = |name: &str| header(req, name);
    let number = |n: i64| {
        if ngx {
            n.to_string().into_bytes()
        } else {
            // Envoy serialises integers as 8 little-endian bytes.
            n.to_le_bytes().to_vec()
        }
    };
    let first = path.first()?.as_str();
    if path.len() == 3 && path[1] == "headers" {
        let map = match first {
            "request" => req,
            "response" => &s.messages.response_headers,
            _ => return None,
        };
        return header(map, &path[2]);
    }
    let name = path.join(".");
    let full_path = pseudo(":path").unwrap_or_default();
    let (url_path, query) = match full_path.iter().position(|b| *b == b'?') {
        Some(i) => (full_path[..i].to_vec(), full_path[i + 1..].to_vec()),
        None => (full_path.clone(), Vec::new()),
    };
    Some(match name.as_str() {
        "request.path" => full_path,
        "request.url_path" => url_path,
        "request.query" => query,
        "request.method" => pseudo(":method")?,
        "request.scheme" => pseudo(":scheme")?,
        // ngx_wasm_module maps request.host to `$hostname` (the machine), Envoy to :authority.
        "request.host" if ngx => h.node.hostname.clone().into_bytes(),
        "request.host" => pseudo(":authority")?,
        "request.protocol" => b"HTTP/1.1".to_vec(),
        "request.useragent" => header(req, "user-agent")?,
        "request.referer" => header(req, "referer")?,
        "request.id" => header(req, "x-request-id")?,
        "response.code" => {
            let status = header(&s.messages.response_headers, ":status")?;
            let code: i64 = String::from_utf8_lossy(&status).parse().ok()?;
            number(code)
        }
        "source.address" if ngx => s.source.0.clone().into_bytes(),
        "source.address" => format!("{}:{}", s.source.0, s.source.1).into_bytes(),
        "source.port" => number(i64::from(s.source.1)),
        "plugin_root_id" => b"0".to_vec(),
        "plugin_name" => h.plugin_name()?.into_bytes(),
        _ if ngx => return ngx_request_property(h, s, &name),
        _ => return None,
    })
}

/// ngx_wasm_module's `request.*` properties backed by nginx variables, as the engine answers
/// them (text): `request.time` (`%T.%03M` of the request's start), `request.duration`
/// (`$request_time`), `request.size` (`$content_length`: the header, NotFound without one),
/// `request.total_size` (`$request_length`: the request line and headers as the client sent them,
/// plus the body once nginx read it), `request.is_subrequest` (`false`: the harness runs no
/// subrequests).
fn ngx_request_property(h: &Host, s: &StreamData, name: &str) -> Option<Vec<u8>> {
    let now = h.world.clock.now();
    let started = s.started.unwrap_or(now);
    let millis =
        |t: std::time::Duration| format!("{}.{:03}", t.as_secs(), t.subsec_millis()).into_bytes();
    let req = &s.messages.request_headers;
    Some(match name {
        "request.time" => millis(started.duration_since(std::time::UNIX_EPOCH).ok()?),
        "request.duration" => millis(now.duration_since(started).unwrap_or_default()),
        "request.size" => req
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.clone().into_bytes())?,
        "request.total_size" => {
            let body = if s.request_body_read {
                s.messages.request_body.len()
            } else {
                0
            };
            (request_head_len(req) + body).to_string().into_bytes()
        }
        "request.is_subrequest" => b"false".to_vec(),
        _ => return None,
    })
}

/// The length of an HTTP/1.1 request's head as a client sends it: `METHOD PATH HTTP/1.1`, then
/// each header line (pseudo-headers are not on the wire), then the empty line.
fn request_head_len(headers: &[(String, String)]) -> usize {
    let pseudo = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map_or(0, |(_, v)| v.len())
    };
    let line = pseudo(":method") + 1 + pseudo(":path") + " HTTP/1.1\r\n".len();
    let fields: usize = headers
        .iter()
        .filter(|(k, _)| !k.starts_with(':'))
        .map(|(k, v)| k.len() + 2 + v.len() + 2)
        .sum();
    line + fields + 2
}

fn proxy_get_property(mut c: C, pp: u32, ps: u32, ptr_out: u32, size_out: u32) -> Result<i32> {
    let segments = property_segments(&read(&mut c, pp, ps)?);
    let key = key_of(&segments);
    let value = {
        let h = c.data_mut();
        if h.world.profile.no_root_properties && in_root_callback(h) {
            root_property(h, &segments.join("."))?
        } else {
            let per_request = h.stream().and_then(|s| {
                s.properties
                    .get(&key)
                    .cloned()
                    .or_else(|| derived(h, s, &segments))
            });
            let root_name = match segments.as_slice() {
                [p] if p == "plugin_name" => h.plugin_name().map(String::into_bytes),
                _ => None,
            };
            per_request.or(root_name).or_else(|| {
                h.node
                    .properties
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&key)
                    .cloned()
            })
        }
    };
    match value {
        None => Ok(NOT_FOUND),
        Some(v) => {
            return_bytes(&mut c, Some(&v), ptr_out, size_out)?;
            Ok(OK)
        }
    }
}

/// ngx_wasm_module sets only host properties (`wasmx.*`) and nginx variables (`ngx.*`); any
/// other path is NotFound (`ngx_proxy_wasm_properties_set`). Envoy stores any path.
fn settable(h: &Host, segments: &[String]) -> bool {
    if !h.world.profile.strict_hostcalls {
        return true;
    }
    matches!(segments.first().map(String::as_str), Some("wasmx" | "ngx"))
}

fn proxy_set_property(mut c: C, pp: u32, ps: u32, vp: u32, vs: u32) -> Result<i32> {
    let segments = property_segments(&read(&mut c, pp, ps)?);
    let value = read(&mut c, vp, vs)?;
    let h = c.data_mut();
    if h.world.profile.no_root_properties && h.is_root(h.effective_context) {
        return Ok(NOT_FOUND);
    }
    if !settable(h, &segments) {
        return Ok(NOT_FOUND);
    }
    let key = key_of(&segments);
    // From an HTTP context: this request's own; from a root context: the node's.
    if let Some(s) = h.stream_mut() {
        s.properties.insert(key, value);
        return Ok(OK);
    }
    h.node
        .properties
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, value);
    Ok(OK)
}
