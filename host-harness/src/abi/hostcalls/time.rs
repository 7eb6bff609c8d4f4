//! Time: `proxy_get_current_time_nanoseconds`, `proxy_set_tick_period_milliseconds`.

use wasmtime::{Linker, Result};

use super::super::memory::write_u64;
use super::super::status::{BAD_ARGUMENT, OK};
use super::super::Host;
use super::{bad_usage, inject, C};
use crate::hostile::{status_of, Injection};

/// A day, in nanoseconds: how far back the hostile clock jumps.
const DAY_NANOS: u64 = 86_400 * 1_000_000_000;

pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        proxy_get_current_time_nanoseconds,
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        proxy_set_tick_period_milliseconds,
    )?;
    Ok(())
}

fn proxy_get_current_time_nanoseconds(mut c: C, out: u32) -> Result<i32> {
    let skew_ms = c
        .data()
        .node
        .clock_skew_ms
        .load(std::sync::atomic::Ordering::SeqCst);
    let skew = skew_ms.unsigned_abs().saturating_mul(1_000_000);
    let wall = c.data().world.clock.guest_wall_nanos();
    let mut now = if skew_ms >= 0 {
        wall.saturating_add(skew)
    } else {
        wall.saturating_sub(skew)
    };
    // Hostile: an error status, or a time no sane clock gives.
    match inject(c.data(), Injection::Time, || "get_current_time".into()) {
        None => {}
        Some("epoch") => now = 0,
        Some("far future") => now = u64::MAX,
        Some("a day behind") => now = now.saturating_sub(DAY_NANOS),
        Some(v) => return Ok(status_of(v).unwrap_or(OK)),
    }
    write_u64(&mut c, out, now)?;
    Ok(OK)
}

fn proxy_set_tick_period_milliseconds(mut c: C, period: u32) -> Result<i32> {
    let mut ctx = c.data().effective_context;
    // Envoy (proxy-wasm-cpp-host) sets the period of the calling context's root context.
    let strict = c.data().world.profile.strict_hostcalls;
    if !strict && c.data().callback.is_http() {
        let root = c.data().stream().and_then(|s| s.roots.get(&ctx).copied());
        ctx = root.unwrap_or(ctx);
    }
    if !c.data().is_root(ctx) {
        // ngx_wasm_module traps (`ngx_proxy_wasm_hfuncs_set_tick_period`); Envoy refuses.
        if strict && c.data().callback.is_http() {
            return Err(bad_usage("can only set tick_period in root context"));
        }
        return Ok(BAD_ARGUMENT);
    }
    // ngx_wasm_module: a root context sets its tick period once; a second call traps.
    if c.data().world.profile.tick_period_once && period != 0 && c.data().tick_set.contains(&ctx) {
        wasmtime::bail!(
            "tick_period already set (ngx_wasm_module traps on a second set_tick_period)"
        );
    }
    // Hostile: the host refuses the timer (nothing is set); the old one (if any) keeps running.
    if let Some(v) = inject(c.data(), Injection::TickPeriod, || format!("{period} ms")) {
        return Ok(status_of(v).unwrap_or(OK));
    }
    c.data_mut().tick_set.insert(ctx);
    c.data_mut().outbox.tick_periods.push((ctx, period));
    Ok(OK)
}
