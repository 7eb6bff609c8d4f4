//! Whatever remains: `proxy_done`, `proxy_set_effective_context`, foreign functions, and gRPC
//! (not simulated: ngx_wasm_module has none either) with `proxy_get_status`.

use wasmtime::{FuncType, Linker, Result, Val, ValType};

use super::super::memory::{read_string, return_bytes, write_u32};
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

/// gRPC is not simulated; the SDK maps these statuses to `Err`.
fn add_grpc(linker: &mut Linker<Host>) -> Result<()> {
    // (name, number of i32 parameters, status)
    let stubs = [
        ("proxy_grpc_call", 12, INTERNAL_FAILURE),
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
            write_u32(&mut c, code_out, 0)?;
            return_bytes(&mut c, None, ptr_out, size_out)?;
            Ok(OK)
        },
    )?;
    Ok(())
}
