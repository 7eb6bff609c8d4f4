//! Shared data: `proxy_get_shared_data`, `proxy_set_shared_data`, with the profile's `shm_kv`
//! zones and CAS rules.

use wasmtime::{bail, Linker, Result};

use super::super::memory::{read, read_string, return_bytes, write_u32};
use super::super::status::{CAS_MISMATCH, NOT_FOUND, OK};
use super::super::Host;
use super::{inject, C};
use crate::hostile::{status_of, Injection};
use crate::state::{lock, SetResult};

pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> Result<()> {
    linker.func_wrap("env", "proxy_get_shared_data", proxy_get_shared_data)?;
    linker.func_wrap("env", "proxy_set_shared_data", proxy_set_shared_data)?;
    Ok(())
}

/// ngx_wasm_module traps when no `shm_kv` zone holds the key.
fn check_zone(h: &Host, hostcall: &str, key: &str) -> Result<()> {
    if let Err(why) = h.world.profile.resolve_shm_zone(key) {
        bail!("{hostcall}: {why} (ngx_wasm_module traps)");
    }
    Ok(())
}

fn proxy_get_shared_data(
    mut c: C,
    kp: u32,
    ks: u32,
    ptr_out: u32,
    size_out: u32,
    cas_out: u32,
) -> Result<i32> {
    let key = read_string(&mut c, kp, ks)?;
    check_zone(c.data(), "get_shared_data", &key)?;
    // Hostile: the key is said to be missing, or the host fails.
    if let Some(v) = inject(c.data(), Injection::SharedDataGet, || key.clone()) {
        return Ok(status_of(v).unwrap_or(OK));
    }
    let value = lock(&c.data().node.shared_data).get(&key);
    match value {
        None => Ok(NOT_FOUND),
        Some(v) => {
            // An existing empty value is still a value: hand back a real (zero-length) allocation.
            return_bytes(&mut c, Some(&v.value), ptr_out, size_out)?;
            write_u32(&mut c, cas_out, v.cas)?;
            Ok(OK)
        }
    }
}

fn proxy_set_shared_data(mut c: C, kp: u32, ks: u32, vp: u32, vs: u32, cas: u32) -> Result<i32> {
    let key = read_string(&mut c, kp, ks)?;
    check_zone(c.data(), "set_shared_data", &key)?;
    let value = read(&mut c, vp, vs)?;
    // Hostile: a CAS mismatch (as if another worker had won) or a failure; nothing is stored.
    if let Some(v) = inject(c.data(), Injection::SharedDataSet, || key.clone()) {
        return Ok(status_of(v).unwrap_or(OK));
    }
    let strict = c.data().world.profile.strict_cas;
    let result = lock(&c.data().node.shared_data).set(&key, value, cas, strict);
    Ok(match result {
        SetResult::Ok => OK,
        SetResult::CasMismatch => CAS_MISMATCH,
    })
}
