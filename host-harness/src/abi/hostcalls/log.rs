//! Logging: `proxy_log`, `proxy_get_log_level`.

use wasmtime::{Linker, Result};

use super::super::memory::{read_string, write_u32};
use super::super::status::{BAD_ARGUMENT, OK};
use super::super::Host;
use super::{inject, nyi, C};
use crate::hostile::{status_of, Injection};
use crate::record::{LogLevel, LogLine};
use crate::state::lock;

pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> Result<()> {
    linker.func_wrap("env", "proxy_log", proxy_log)?;
    linker.func_wrap("env", "proxy_get_log_level", proxy_get_log_level)?;
    Ok(())
}

fn proxy_log(mut c: C, level: i32, ptr: u32, size: u32) -> Result<i32> {
    let message = read_string(&mut c, ptr, size)?;
    let h = c.data();
    // Hostile: the host refuses the line (ngx_wasm_module answers an error for a bad level).
    if let Some(v) = inject(h, Injection::Log, || format!("dropped: {message}")) {
        return Ok(status_of(v).unwrap_or(OK));
    }
    let level = match LogLevel::from_abi(level) {
        Some(level) => level,
        // ngx_wasm_module logs "NYI - proxy_log bad log_level" and answers BadArgument (the SDK
        // then panics); Envoy logs the line anyway.
        None if h.world.profile.strict_hostcalls => {
            let line = LogLine {
                at: h.world.clock.elapsed(),
                origin: h.origin.clone(),
                level: LogLevel::Error,
                message: format!("[host] NYI - proxy_log bad log_level: {level}"),
            };
            lock(&h.world.recorder).push_log(line, false);
            return Ok(BAD_ARGUMENT);
        }
        None => LogLevel::Info,
    };
    let line = LogLine {
        at: h.world.clock.elapsed(),
        origin: h.origin.clone(),
        level,
        message,
    };
    lock(&h.world.recorder).push_log(line, true);
    // The SDK panics on anything but Ok.
    Ok(OK)
}

fn proxy_get_log_level(mut c: C, out: u32) -> Result<i32> {
    nyi(c.data(), "proxy_get_log_level")?;
    let level = *c
        .data()
        .world
        .log_level
        .read()
        .unwrap_or_else(|e| e.into_inner());
    write_u32(&mut c, out, level as u32)?;
    Ok(OK)
}
