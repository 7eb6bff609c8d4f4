//! Dispatched calls: `proxy_http_call`. The call goes to the outbox; the world sends it after the
//! guest call returns, and answers through `proxy_on_http_call_response`.

use std::time::Duration;

use wasmtime::{bail, Linker, Result};

use super::super::maps::deserialize;
use super::super::memory::{read, read_string, write_u32};
use super::super::status::{BAD_ARGUMENT, OK};
use super::super::{Callback, Host, PendingCall};
use super::{inject, C};
use crate::hostile::{status_of, Injection};
use crate::http::{CallFailure, HttpRequest};
use crate::profile::HostProfile;

/// Default for a dispatch with timeout 0.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |c: C, up, us, hp, hs, bp, bs, tp, ts, timeout_ms, token_out| {
            let world = c.data().world.clone();
            world.time_copy(|| {
                proxy_http_call(c, up, us, hp, hs, bp, bs, tp, ts, timeout_ms, token_out)
            })
        },
    )?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn proxy_http_call(
    mut c: C,
    up: u32,
    us: u32,
    hp: u32,
    hs: u32,
    bp: u32,
    bs: u32,
    tp: u32,
    ts: u32,
    timeout_ms: u32,
    token_out: u32,
) -> Result<i32> {
    let upstream = read_string(&mut c, up, us)?;
    let header_bytes = read(&mut c, hp, hs)?;
    let body = read(&mut c, bp, bs)?;
    let trailer_bytes = read(&mut c, tp, ts)?;
    punish_forbidden_dispatch(c.data_mut())?;
    let world = c.data().world.clone();
    if world.profile.strict_hostcalls {
        check_ngx_dispatch(c.data(), &upstream, &header_bytes)?;
    }
    let request = match request(&world.profile, &upstream, &header_bytes, &trailer_bytes) {
        Ok(request) => HttpRequest { body, ..request },
        Err(status) => return Ok(status),
    };
    let immediate_failure = match world.route(&upstream, request.scheme == "https") {
        Some(_) => None,
        // Envoy: an unknown cluster is refused synchronously.
        None if !world.profile.upstream_is_host_port => return Ok(BAD_ARGUMENT),
        // An address nobody listens on is refused; a name nobody resolves is a resolver failure.
        None if is_ip_literal(&upstream) => Some(CallFailure::BrokenConnection),
        None => Some(CallFailure::ResolverFailure),
    };
    // Hostile: the host refuses a valid call.
    if let Some(v) = inject(c.data(), Injection::Dispatch, || upstream.clone()) {
        return Ok(status_of(v).unwrap_or(OK));
    }
    // ngx_wasm_module counts tokens per process from 0 (`callout_ids++`); the harness's other
    // profiles make them unique in the world.
    let token = match &c.data().worker_tokens {
        Some(t) => t.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
        None => world.token(),
    };
    write_u32(&mut c, token_out, token)?;
    let context_id = c.data().effective_context;
    c.data_mut().outbox.calls.push(PendingCall {
        token,
        context_id,
        upstream,
        request,
        timeout: match timeout_ms {
            0 => DEFAULT_CALL_TIMEOUT,
            ms => Duration::from_millis(u64::from(ms)),
        },
        immediate_failure,
    });
    Ok(OK)
}

/// Where the profile's host traps (`on_vm_start`/`on_configure`: the worker dies) or crashes (a
/// root `on_http_call_response`).
fn punish_forbidden_dispatch(h: &mut Host) -> Result<()> {
    let profile = &h.world.profile;
    let callback = h.callback;
    if profile.dispatch_traps_outside_callbacks
        && matches!(callback, Callback::VmStart | Callback::Configure)
    {
        let msg = format!(
            "dispatch_http_call from {} (the worker dies)",
            callback.name()
        );
        h.fatal_trap = Some(msg.clone());
        bail!(msg);
    }
    if profile.dispatch_in_root_call_response_crashes && callback == Callback::RootCallResponse {
        let msg = "dispatch_http_call from a root on_http_call_response: host segfault".to_string();
        h.fatal = Some(msg.clone());
        bail!(msg);
    }
    Ok(())
}

/// ngx_wasm_module's checks of a dispatch, each a trap (`ngx_proxy_wasm_hfuncs_dispatch_http_call`,
/// `ngx_http_proxy_wasm_dispatch`): only from `on_request_headers`, `on_request_body`,
/// `on_tick` and call responses; a host, `:method` and `:path` are required.
fn check_ngx_dispatch(h: &Host, upstream: &str, header_bytes: &[u8]) -> Result<()> {
    let allowed = matches!(
        h.callback,
        Callback::RequestHeaders
            | Callback::RequestBody
            | Callback::Tick
            | Callback::HttpCallResponse
            | Callback::RootCallResponse
            // on_vm_start/on_configure are punished as the worker's death before this.
            | Callback::VmStart
            | Callback::Configure
    );
    if !allowed {
        bail!(
            "host trap (bad usage): can only send HTTP dispatch during \"on_request_headers\", \
             \"on_request_body\", \"on_tick\", \"on_dispatch_response\", \"on_foreign_function\""
        );
    }
    if upstream.is_empty() {
        bail!("dispatch failed: no host");
    }
    let headers = deserialize(header_bytes).unwrap_or_default();
    for (name, what) in [(":method", "no :method"), (":path", "no :path")] {
        if !headers.iter().any(|(k, v)| k == name && !v.is_empty()) {
            bail!("dispatch failed: {what}");
        }
    }
    Ok(())
}

/// The request a dispatch describes (without its body), or the status refusing it.
fn request(
    profile: &HostProfile,
    upstream: &str,
    header_bytes: &[u8],
    trailer_bytes: &[u8],
) -> std::result::Result<HttpRequest, i32> {
    let (Some(headers), Some(_trailers)) = (deserialize(header_bytes), deserialize(trailer_bytes))
    else {
        return Err(BAD_ARGUMENT);
    };
    let pseudo = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let (Some(method), Some(path)) = (pseudo(":method"), pseudo(":path")) else {
        return Err(BAD_ARGUMENT);
    };
    if method.is_empty() || !path.starts_with('/') {
        return Err(BAD_ARGUMENT);
    }
    let scheme = pseudo(":scheme").unwrap_or_else(|| "http".to_string());
    let authority = match pseudo(":authority") {
        Some(a) if !a.is_empty() => a,
        // Envoy requires :authority; ngx_wasm_module uses the upstream's host.
        _ if !profile.upstream_is_host_port => return Err(BAD_ARGUMENT),
        _ => upstream.to_string(),
    };
    if profile.upstream_is_host_port && (upstream.contains('/') || upstream.is_empty()) {
        // A URL or an empty name is not `host[:port]`.
        return Err(BAD_ARGUMENT);
    }
    // ngx_wasm_module writes an HTTP/1.1 request itself: header names keep their case and it
    // adds `Connection: close` (`ngx_http_proxy_wasm_dispatch_request`); Envoy's are lowercase.
    let mut headers: Vec<(String, String)> = headers
        .into_iter()
        .filter(|(k, _)| !k.starts_with(':'))
        .map(|(k, v)| match profile.strict_hostcalls {
            true => (k, v),
            false => (k.to_ascii_lowercase(), v),
        })
        .collect();
    if profile.strict_hostcalls {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("connection"));
        headers.push(("Connection".to_string(), "close".to_string()));
    }
    Ok(HttpRequest {
        method,
        path,
        authority,
        scheme,
        headers,
        body: Vec::new(),
    })
}

/// Whether `host[:port]` names an IP address (`127.0.0.1:1`, `[::1]:80`).
fn is_ip_literal(upstream: &str) -> bool {
    let (host, _) = crate::state::host_and_port(upstream);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse::<std::net::IpAddr>().is_ok()
}
