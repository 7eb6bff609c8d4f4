//! Header maps: `proxy_{get,set}_header_map_pairs`, `proxy_{get,replace,remove,add}_header_map_value`
//! on the request/response headers and trailers of an HTTP context and on a call's response.

use wasmtime::{Linker, Result};

use super::super::maps as wire;
use super::super::memory::{read, read_string, return_bytes};
use super::super::status::{BAD_ARGUMENT, NOT_FOUND, OK};
use super::super::Host;
use super::{inject, C};
use crate::hostile::{status_of, Injection};
use crate::record::{LogLevel, LogLine};
use crate::state::lock;

type Pairs = Vec<(String, String)>;

// Map types of the ABI.
const MAP_REQUEST_HEADERS: u32 = 0;
const MAP_REQUEST_TRAILERS: u32 = 1;
const MAP_RESPONSE_HEADERS: u32 = 2;
const MAP_RESPONSE_TRAILERS: u32 = 3;
const MAP_CALL_RESPONSE_HEADERS: u32 = 6;
const MAP_CALL_RESPONSE_TRAILERS: u32 = 7;

pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> Result<()> {
    linker.func_wrap("env", "proxy_get_header_map_pairs", get_pairs)?;
    linker.func_wrap("env", "proxy_set_header_map_pairs", set_pairs)?;
    linker.func_wrap("env", "proxy_get_header_map_value", get_value)?;
    linker.func_wrap("env", "proxy_replace_header_map_value", replace_value)?;
    linker.func_wrap("env", "proxy_remove_header_map_value", remove_value)?;
    linker.func_wrap("env", "proxy_add_header_map_value", add_value)?;
    Ok(())
}

fn map_ref(h: &Host, map: u32) -> Option<&Pairs> {
    match map {
        MAP_CALL_RESPONSE_HEADERS => h.call_response.as_ref().map(|r| &r.headers),
        MAP_CALL_RESPONSE_TRAILERS => h.call_response.as_ref().map(|r| &r.trailers),
        _ => {
            let m = &h.stream()?.messages;
            match map {
                MAP_REQUEST_HEADERS => Some(&m.request_headers),
                MAP_REQUEST_TRAILERS => Some(&m.request_trailers),
                MAP_RESPONSE_HEADERS => Some(&m.response_headers),
                MAP_RESPONSE_TRAILERS => Some(&m.response_trailers),
                _ => None,
            }
        }
    }
}

fn map_mut(h: &mut Host, map: u32) -> Option<&mut Pairs> {
    match map {
        MAP_CALL_RESPONSE_HEADERS => h.call_response.as_mut().map(|r| &mut r.headers),
        MAP_CALL_RESPONSE_TRAILERS => h.call_response.as_mut().map(|r| &mut r.trailers),
        _ => {
            let m = &mut h.stream_mut()?.messages;
            match map {
                MAP_REQUEST_HEADERS => Some(&mut m.request_headers),
                MAP_REQUEST_TRAILERS => Some(&mut m.request_trailers),
                MAP_RESPONSE_HEADERS => Some(&mut m.response_headers),
                MAP_RESPONSE_TRAILERS => Some(&mut m.response_trailers),
                _ => None,
            }
        }
    }
}

/// ngx_wasm_module hands at most this many pairs (`NGX_HTTP_WASM_MAX_REQ_HEADERS`).
const NGX_MAX_PAIRS: usize = 100;

fn get_pairs(mut c: C, map: u32, ptr_out: u32, size_out: u32) -> Result<i32> {
    let mut pairs = match map_ref(c.data(), map) {
        Some(m) => m.clone(),
        None => return Ok(NOT_FOUND),
    };
    if c.data().world.profile.strict_hostcalls && pairs.len() > NGX_MAX_PAIRS {
        pairs.truncate(NGX_MAX_PAIRS);
        let h = c.data();
        let line = LogLine {
            at: h.world.clock.elapsed(),
            origin: h.origin.clone(),
            level: LogLevel::Warn,
            message: format!("[host] marshalled map truncated to {NGX_MAX_PAIRS} elements"),
        };
        lock(&h.world.recorder).push_log(line, false);
    }
    let mut bytes = wire::serialize(&pairs);
    // Hostile: NotFound, or the same headers in an odd but valid encoding.
    let n = pairs.len();
    match inject(c.data(), Injection::HeaderMap, || {
        format!("map {map}, {n} pairs")
    }) {
        None => {}
        Some("no pairs") => bytes = None,
        Some("zero count") => bytes = Some(0u32.to_le_bytes().to_vec()),
        Some("duplicated pairs") => {
            let upper = pairs
                .iter()
                .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()));
            let doubled: Pairs = pairs.iter().cloned().chain(upper).collect();
            bytes = wire::serialize(&doubled);
        }
        Some(v) => return Ok(status_of(v).unwrap_or(OK)),
    }
    return_bytes(&mut c, bytes.as_deref(), ptr_out, size_out)?;
    Ok(OK)
}

fn set_pairs(mut c: C, map: u32, ptr: u32, size: u32) -> Result<i32> {
    let bytes = read(&mut c, ptr, size)?;
    let Some(pairs) = wire::deserialize(&bytes) else {
        return Ok(BAD_ARGUMENT);
    };
    let strict = c.data().world.profile.strict_hostcalls;
    let pairs = pairs
        .into_iter()
        .map(|(k, v)| (header_name(&k, strict), header_value(&v, strict)))
        .collect();
    match map_mut(c.data_mut(), map) {
        Some(m) => {
            *m = if strict && map == MAP_REQUEST_HEADERS {
                keep_pseudo_headers(m, pairs)
            } else {
                pairs
            };
            Ok(OK)
        }
        None => Ok(NOT_FOUND),
    }
}

/// ngx_wasm_module replaces a request's headers but keeps the pseudo-headers the new map leaves
/// out (seen in the engine): the given pseudo-headers, the other old ones, then the rest.
fn keep_pseudo_headers(old: &Pairs, new: Pairs) -> Pairs {
    let (given, rest): (Pairs, Pairs) = new.into_iter().partition(|(k, _)| k.starts_with(':'));
    let kept = old
        .iter()
        .filter(|(k, _)| k.starts_with(':') && !given.iter().any(|(g, _)| g == k))
        .cloned();
    given.iter().cloned().chain(kept).chain(rest).collect()
}

fn get_value(mut c: C, map: u32, kp: u32, ks: u32, ptr_out: u32, size_out: u32) -> Result<i32> {
    let key = read_string(&mut c, kp, ks)?;
    let value = match map_ref(c.data(), map) {
        Some(m) => m
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&key))
            .map(|(_, v)| v.clone()),
        None => return Ok(NOT_FOUND),
    };
    match value {
        Some(v) => {
            return_bytes(&mut c, Some(v.as_bytes()), ptr_out, size_out)?;
            Ok(OK)
        }
        None => Ok(NOT_FOUND),
    }
}

fn replace_value(mut c: C, map: u32, kp: u32, ks: u32, vp: u32, vs: u32) -> Result<i32> {
    let strict = c.data().world.profile.strict_hostcalls;
    let key = header_name(&read_string(&mut c, kp, ks)?, strict);
    let value = header_value(&read_string(&mut c, vp, vs)?, strict);
    let Some(m) = map_mut(c.data_mut(), map) else {
        return Ok(NOT_FOUND);
    };
    match m.iter().position(|(k, _)| k.eq_ignore_ascii_case(&key)) {
        Some(i) => {
            m[i].1 = value;
            // Replace means one value: drop any further ones.
            let mut seen = false;
            m.retain(|(k, _)| {
                if !k.eq_ignore_ascii_case(&key) {
                    return true;
                }
                let keep = !seen;
                seen = true;
                keep
            });
        }
        None => m.push((key, value)),
    }
    Ok(OK)
}

fn remove_value(mut c: C, map: u32, kp: u32, ks: u32) -> Result<i32> {
    let key = read_string(&mut c, kp, ks)?;
    let Some(m) = map_mut(c.data_mut(), map) else {
        return Ok(NOT_FOUND);
    };
    m.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
    Ok(OK)
}

fn add_value(mut c: C, map: u32, kp: u32, ks: u32, vp: u32, vs: u32) -> Result<i32> {
    let strict = c.data().world.profile.strict_hostcalls;
    let key = header_name(&read_string(&mut c, kp, ks)?, strict);
    let value = header_value(&read_string(&mut c, vp, vs)?, strict);
    let Some(m) = map_mut(c.data_mut(), map) else {
        return Ok(NOT_FOUND);
    };
    m.push((key, value));
    Ok(OK)
}

/// A header name as the host stores it: Envoy lowercases; ngx_wasm_module keeps the case and
/// percent-encodes what is not allowed in a name (`ngx_http_wasm_escape`, header_name table:
/// controls, space, `"(),/:;<=>?@[\]{}`, DEL and non-ASCII). Pseudo-headers keep their colon.
pub(crate) fn header_name(name: &str, ngx: bool) -> String {
    if !ngx {
        return name.to_ascii_lowercase();
    }
    let (prefix, rest) = match name.strip_prefix(':') {
        Some(rest) => (":", rest),
        None => ("", name),
    };
    let escaped = percent_encode(rest, |b| {
        !(0x21..0x7f).contains(&b) || b"\"(),/:;<=>?@[\\]{}".contains(&b)
    });
    format!("{prefix}{escaped}")
}

/// A header value as ngx_wasm_module stores it: control characters but tab, and DEL, are
/// percent-encoded (header_value table).
pub(crate) fn header_value(value: &str, ngx: bool) -> String {
    if !ngx {
        return value.to_string();
    }
    percent_encode(value, |b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

fn percent_encode(s: &str, escape: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if escape(b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    // Bytes >= 0x80 are escaped, so `out` is ASCII.
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Pairs {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ngx_keeps_the_pseudo_headers_a_new_request_map_leaves_out() {
        let old = pairs(&[
            (":method", "POST"),
            (":path", "/"),
            (":scheme", "http"),
            (":authority", "a"),
            ("x", "1"),
        ]);
        let new = pairs(&[(":path", "/replaced"), (":method", "GET"), ("A", "1")]);
        assert_eq!(
            keep_pseudo_headers(&old, new),
            pairs(&[
                (":path", "/replaced"),
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "a"),
                ("A", "1"),
            ])
        );
    }

    #[test]
    fn ngx_escapes_header_names_and_values_envoy_lowercases() {
        assert_eq!(header_name("Escape-Colon:", true), "Escape-Colon%3A");
        assert_eq!(header_name(":path", true), ":path");
        assert_eq!(header_name("Hello", true), "Hello");
        assert_eq!(header_name("Hello", false), "hello");
        assert_eq!(header_value("a\tb\x01", true), "a\tb%01");
    }
}
