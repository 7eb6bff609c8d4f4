//! Buffers: `proxy_get_buffer_bytes`, `proxy_set_buffer_bytes` (bodies, call response body,
//! VM and plugin configuration).

use wasmtime::{Linker, Result};

use super::super::memory::{read, return_bytes};
use super::super::status::{BAD_ARGUMENT, NOT_FOUND, OK};
use super::super::Host;
use super::{inject, C};
use crate::hostile::{status_of, Injection};

// Buffer types of the ABI.
const BUF_REQUEST_BODY: u32 = 0;
const BUF_RESPONSE_BODY: u32 = 1;
// L4 stream contexts keep downstream data as the request body and upstream data as the response's.
const BUF_DOWNSTREAM_DATA: u32 = 2;
const BUF_UPSTREAM_DATA: u32 = 3;
const BUF_CALL_RESPONSE_BODY: u32 = 4;
const BUF_GRPC_RECEIVE: u32 = 5;
const BUF_VM_CONFIGURATION: u32 = 6;
const BUF_PLUGIN_CONFIGURATION: u32 = 7;

pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |c: C, ty: u32, start: u32, max: u32, ptr_out: u32, size_out: u32| {
            let world = c.data().world.clone();
            world.time_copy(|| proxy_get_buffer_bytes(c, ty, start, max, ptr_out, size_out))
        },
    )?;
    linker.func_wrap("env", "proxy_set_buffer_bytes", proxy_set_buffer_bytes)?;
    Ok(())
}

fn buffer(h: &Host, ty: u32) -> Option<&[u8]> {
    let ctx = h.effective_context;
    let stream = || h.stream().map(|s| &s.messages);
    match ty {
        BUF_REQUEST_BODY | BUF_DOWNSTREAM_DATA => stream().map(|m| m.request_body.as_slice()),
        BUF_RESPONSE_BODY | BUF_UPSTREAM_DATA => stream().map(|m| m.response_body.as_slice()),
        BUF_CALL_RESPONSE_BODY => h.call_response.as_ref().map(|r| r.body.as_slice()),
        BUF_GRPC_RECEIVE => h.grpc_message.as_deref(),
        BUF_VM_CONFIGURATION => h.root_configs.get(&ctx).map(|(vm, _)| vm.as_slice()),
        BUF_PLUGIN_CONFIGURATION => h.root_configs.get(&ctx).map(|(_, p)| p.as_slice()),
        _ => None,
    }
}

fn proxy_get_buffer_bytes(
    mut c: C,
    ty: u32,
    start: u32,
    max_size: u32,
    ptr_out: u32,
    size_out: u32,
) -> Result<i32> {
    // ngx_wasm_module ignores `start` for the request and response bodies (seen in the engine:
    // start 2, max 3 gives the first 3 bytes).
    let start = match ty {
        BUF_REQUEST_BODY | BUF_RESPONSE_BODY if c.data().world.profile.strict_hostcalls => 0,
        _ => start,
    };
    let mut slice = match buffer(c.data(), ty) {
        None => return Ok(NOT_FOUND),
        Some(b) => {
            let start = (start as usize).min(b.len());
            let end = start.saturating_add(max_size as usize).min(b.len());
            b[start..end].to_vec()
        }
    };
    // Hostile: the buffer is said to be missing or empty, or comes back short.
    let full = slice.len();
    match inject(c.data(), Injection::Buffer, || {
        format!("buffer {ty}, {full} bytes")
    }) {
        None => {}
        Some("short") => slice.truncate(full / 2),
        Some(v) => return Ok(status_of(v).unwrap_or(OK)),
    }
    // An empty buffer is "no data" (null pointer): the SDK then returns None.
    let data = if slice.is_empty() {
        None
    } else {
        Some(slice.as_slice())
    };
    return_bytes(&mut c, data, ptr_out, size_out)?;
    Ok(OK)
}

fn proxy_set_buffer_bytes(
    mut c: C,
    ty: u32,
    start: u32,
    size: u32,
    ptr: u32,
    len: u32,
) -> Result<i32> {
    let data = read(&mut c, ptr, len)?;
    let h = c.data_mut();
    let ngx = h.world.profile.strict_hostcalls;
    let Some(stream) = h.stream_mut() else {
        return Ok(NOT_FOUND);
    };
    let body = match ty {
        BUF_REQUEST_BODY | BUF_DOWNSTREAM_DATA => &mut stream.messages.request_body,
        BUF_RESPONSE_BODY | BUF_UPSTREAM_DATA => &mut stream.messages.response_body,
        _ => return Ok(BAD_ARGUMENT),
    };
    let start = (start as usize).min(body.len());
    if ngx {
        // ngx_wasm_module replaces the chunk from `start` on and ignores `size` (seen in the
        // engine: "upstream body\n" with start 2, size 3, "XY" becomes "upXY"; start past the
        // end appends).
        body.truncate(start);
        body.extend_from_slice(&data);
        return Ok(OK);
    }
    // Envoy's rule: (0, len) replaces the whole buffer, (len, 0) appends, (0, 0) prepends.
    let end = start.saturating_add(size as usize).min(body.len());
    body.splice(start..end, data);
    Ok(OK)
}
