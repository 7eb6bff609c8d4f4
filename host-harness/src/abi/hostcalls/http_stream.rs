//! The HTTP stream of an HTTP context: `proxy_continue_stream`, `proxy_close_stream`, the ABI
//! 0.2.0 names `proxy_continue_request`/`proxy_continue_response`, `proxy_send_local_response`,
//! `proxy_clear_route_cache`.

use wasmtime::{Linker, Result};

use super::super::maps::deserialize;
use super::super::memory::{read, read_string};
use super::super::status::{BAD_ARGUMENT, OK};
use super::super::{Callback, Host, LocalResponse};
use super::maps::{header_name, header_value};
use super::{bad_usage, nyi, C};

pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: C, ty: u32| -> Result<i32> { Ok(resume(c.data_mut(), ty)) },
    )?;
    linker.func_wrap("env", "proxy_close_stream", proxy_close_stream)?;
    // ABI 0.2.0 names.
    linker.func_wrap("env", "proxy_continue_request", |mut c: C| -> Result<i32> {
        Ok(resume(c.data_mut(), 0))
    })?;
    linker.func_wrap(
        "env",
        "proxy_continue_response",
        |mut c: C| -> Result<i32> {
            nyi(c.data(), "proxy_continue_response")?;
            Ok(resume(c.data_mut(), 1))
        },
    )?;
    linker.func_wrap("env", "proxy_clear_route_cache", |_c: C| -> Result<i32> {
        Ok(OK)
    })?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        proxy_send_local_response,
    )?;
    Ok(())
}

fn resume(h: &mut Host, stream_type: u32) -> i32 {
    let Some(s) = h.stream_mut() else {
        return BAD_ARGUMENT;
    };
    match stream_type {
        0 => s.resumed_request = true,
        1 => s.resumed_response = true,
        _ => return BAD_ARGUMENT,
    }
    OK
}

fn proxy_close_stream(mut c: C, _ty: u32) -> Result<i32> {
    nyi(c.data(), "proxy_close_stream")?;
    match c.data_mut().stream_mut() {
        Some(s) => {
            s.closed = true;
            Ok(OK)
        }
        None => Ok(BAD_ARGUMENT),
    }
}

#[allow(clippy::too_many_arguments)]
fn proxy_send_local_response(
    mut c: C,
    status: u32,
    dp: u32,
    ds: u32,
    bp: u32,
    bs: u32,
    hp: u32,
    hs: u32,
    grpc_status: i32,
) -> Result<i32> {
    let details = read_string(&mut c, dp, ds)?;
    let body = read(&mut c, bp, bs)?;
    let Some(headers) = deserialize(&read(&mut c, hp, hs)?) else {
        return Ok(BAD_ARGUMENT);
    };
    let h = c.data_mut();
    let strict = h.world.profile.strict_hostcalls;
    // ngx_wasm_module stores a local response's headers as any other (names keep their case,
    // characters not allowed in a name are percent-encoded: `Sp%20ace`, seen in the engine).
    let headers = headers
        .into_iter()
        .map(|(k, v)| (header_name(&k, strict), header_value(&v, strict)))
        .collect();
    let callback = h.callback;
    let Some(stream) = h.stream_mut() else {
        return Ok(BAD_ARGUMENT);
    };
    if strict {
        // ngx_wasm_module (`ngx_http_wasm_stash_local_response`): once the response has entered
        // the header filter it traps, except from on_response_headers, where the status and body
        // replace the response's; a second local response before the first went out traps; a
        // status outside 100-999 is refused.
        let in_response_headers = callback == Callback::ResponseHeaders;
        let late = matches!(callback, Callback::Log | Callback::Done | Callback::Delete)
            || stream.entered_response_body
            || (stream.entered_response_headers && !in_response_headers);
        if late {
            return Err(bad_usage("response already sent"));
        }
        if stream.local_response.is_some() && !stream.local_response_sent {
            return Err(bad_usage("local response already stashed"));
        }
        if !(100..=999).contains(&status) {
            return Ok(BAD_ARGUMENT);
        }
    }
    stream.local_response_sent = false;
    stream.local_response = Some(LocalResponse {
        status,
        details,
        headers,
        body,
        grpc_status,
    });
    Ok(OK)
}
