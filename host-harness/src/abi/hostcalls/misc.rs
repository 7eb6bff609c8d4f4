//! Whatever remains: `proxy_done`, `proxy_set_effective_context`, foreign functions, and gRPC
//! (not simulated: ngx_wasm_module has none either) with `proxy_get_status`.

use wasmtime::{FuncType, Linker, Result, Val, ValType};

use super::super::maps::deserialize;
use super::super::memory::{read, read_string, return_bytes, write_u32};
use super::super::status::{BAD_ARGUMENT, INTERNAL_FAILURE, NOT_FOUND, OK};
use super::super::Host;
use super::{nyi, C};

pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> Result<()> {
    linker.func_wrap("env", "proxy_done", |c: C| -> Result<i32> {
        nyi(c.data(), "proxy_done")?;
        Ok(OK)
    })?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        proxy_set_effective_context,
    )?;
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut c: C, np: u32, ns: u32, _ap: u32, _as: u32, _rp: u32, _rs: u32| -> Result<i32> {
            let name = read_string(&mut c, np, ns)?;
            // ngx_wasm_module knows only `resolve_lua` (with Lua) and traps on any other name;
            // Envoy answers NotFound for an unregistered one.
            if c.data().world.profile.strict_hostcalls {
                return Err(wasmtime::format_err!(
                    "host trap (internal error): unknown foreign function \"{name}\""
                ));
            }
            Ok(NOT_FOUND)
        },
    )?;
    add_grpc(linker)
}

fn proxy_set_effective_context(mut c: C, ctx: u32) -> Result<i32> {
    let h = c.data_mut();
    if h.is_root(ctx) || h.is_stream(ctx) {
        h.effective_context = ctx;
        Ok(OK)
    } else {
        Ok(BAD_ARGUMENT)
    }
}

/// gRPC: unary calls to a routed cluster (Envoy profile, [`crate::grpc`]); streams are not
/// simulated (the SDK maps these statuses to `Err`); ngx_wasm_module traps on all of them.
fn add_grpc(linker: &mut Linker<Host>) -> Result<()> {
    linker.func_wrap("env", "proxy_grpc_call", proxy_grpc_call)?;
    // (name, number of i32 parameters, status)
    let stubs = [
        ("proxy_grpc_stream", 9, INTERNAL_FAILURE),
        ("proxy_grpc_send", 4, NOT_FOUND),
        ("proxy_grpc_cancel", 1, NOT_FOUND),
        ("proxy_grpc_close", 1, NOT_FOUND),
    ];
    for (name, params, status) in stubs {
        let ty = FuncType::new(
            linker.engine(),
            std::iter::repeat_n(ValType::I32, params),
            [ValType::I32],
        );
        linker.func_new("env", name, ty, move |c, _params, results| {
            nyi(c.data(), name)?;
            results[0] = Val::I32(status);
            Ok(())
        })?;
    }
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: C, code_out: u32, ptr_out: u32, size_out: u32| -> Result<i32> {
            nyi(c.data(), "proxy_get_status")?;
            // The status of the gRPC call being closed, else OK without a message.
            let (code, message) = c.data().grpc_status.clone().unwrap_or_default();
            write_u32(&mut c, code_out, code)?;
            let message = (!message.is_empty()).then_some(message.into_bytes());
            return_bytes(&mut c, message.as_deref(), ptr_out, size_out)?;
            Ok(OK)
        },
    )?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn proxy_grpc_call(
    mut c: C,
    up: u32,
    us: u32,
    sp: u32,
    ss: u32,
    mp: u32,
    ms: u32,
    hp: u32,
    hs: u32,
    bp: u32,
    bs: u32,
    _timeout_ms: u32,
    token_out: u32,
) -> Result<i32> {
    nyi(c.data(), "proxy_grpc_call")?;
    let request = crate::grpc::GrpcRequest {
        cluster: read_string(&mut c, up, us)?,
        service: read_string(&mut c, sp, ss)?,
        method: read_string(&mut c, mp, ms)?,
        metadata: deserialize(&read(&mut c, hp, hs)?).unwrap_or_default(),
        message: read(&mut c, bp, bs)?,
    };
    let routed = c
        .data()
        .world
        .grpc_routes
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&request.cluster);
    if !routed {
        return Ok(INTERNAL_FAILURE);
    }
    let token = c.data().world.token();
    write_u32(&mut c, token_out, token)?;
    let ctx = c.data().effective_context;
    c.data_mut().outbox.grpc_calls.push((token, ctx, request));
    Ok(OK)
}
