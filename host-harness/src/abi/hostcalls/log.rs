//! Logging: `proxy_log`, `proxy_get_log_level`.

use wasmtime::{Linker, Result};

use super::super::memory::{read_string, write_u32};
use super::super::status::OK;
use super::super::Host;
use super::{inject, C};
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
    let level = LogLevel::from_abi(level).unwrap_or(LogLevel::Info);
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
    let level = *c
        .data()
        .world
        .log_level
        .read()
        .unwrap_or_else(|e| e.into_inner());
    write_u32(&mut c, out, level as u32)?;
    Ok(OK)
}
