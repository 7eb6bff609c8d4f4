//! Every `env.proxy_*` import of the proxy-wasm 0.2.x SDKs, with the spec's status codes.
//! A hostcall returns `Err` (a trap) only where the real host traps or crashes, or when the guest
//! hands the host an out-of-bounds pointer.

use std::time::Duration;

use wasmtime::{bail, format_err, Caller, Linker, Result};

use super::maps;
use super::memory::{read, read_string, return_bytes, write_u32, write_u64};
use super::status::*;
use super::{Callback, Host, LocalResponse, PendingCall};
use crate::http::{CallFailure, HttpRequest};
use crate::record::{LogLevel, LogLine, MetricKind};
use crate::state::{lock, SetResult};

type C<'a> = Caller<'a, Host>;

// Map and buffer types of the ABI.
const MAP_REQUEST_HEADERS: u32 = 0;
const MAP_REQUEST_TRAILERS: u32 = 1;
const MAP_RESPONSE_HEADERS: u32 = 2;
const MAP_RESPONSE_TRAILERS: u32 = 3;
const MAP_CALL_RESPONSE_HEADERS: u32 = 6;
const MAP_CALL_RESPONSE_TRAILERS: u32 = 7;
const BUF_REQUEST_BODY: u32 = 0;
const BUF_RESPONSE_BODY: u32 = 1;
const BUF_CALL_RESPONSE_BODY: u32 = 4;
const BUF_VM_CONFIGURATION: u32 = 6;
const BUF_PLUGIN_CONFIGURATION: u32 = 7;

/// Default for a dispatch with timeout 0.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) fn add(linker: &mut Linker<Host>) -> Result<()> {
    linker.func_wrap("env", "proxy_log", proxy_log)?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: C, out: u32| -> Result<i32> {
            let level = *c
                .data()
                .world
                .log_level
                .read()
                .unwrap_or_else(|e| e.into_inner());
            write_u32(&mut c, out, level as u32)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: C, out: u32| -> Result<i32> {
            let now = c.data().world.clock.guest_wall_nanos();
            write_u64(&mut c, out, now)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: C, period: u32| -> Result<i32> {
            let ctx = c.data().effective_context;
            if !c.data().is_root(ctx) {
                return Ok(BAD_ARGUMENT);
            }
            c.data_mut().outbox.tick_periods.push((ctx, period));
            Ok(OK)
        },
    )?;
    linker.func_wrap("env", "proxy_get_buffer_bytes", proxy_get_buffer_bytes)?;
    linker.func_wrap("env", "proxy_set_buffer_bytes", proxy_set_buffer_bytes)?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: C, map: u32, ptr_out: u32, size_out: u32| -> Result<i32> {
            let pairs = match map_ref(c.data(), map) {
                Some(m) => m.clone(),
                None => return Ok(NOT_FOUND),
            };
            let bytes = maps::serialize(&pairs);
            return_bytes(&mut c, bytes.as_deref(), ptr_out, size_out)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: C, map: u32, ptr: u32, size: u32| -> Result<i32> {
            let bytes = read(&mut c, ptr, size)?;
            let Some(pairs) = maps::deserialize(&bytes) else {
                return Ok(BAD_ARGUMENT);
            };
            match map_mut(c.data_mut(), map) {
                Some(m) => {
                    *m = pairs;
                    Ok(OK)
                }
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: C, map: u32, kp: u32, ks: u32, ptr_out: u32, size_out: u32| -> Result<i32> {
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
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: C, map: u32, kp: u32, ks: u32, vp: u32, vs: u32| -> Result<i32> {
            let key = read_string(&mut c, kp, ks)?;
            let value = read_string(&mut c, vp, vs)?;
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
                None => m.push((key.to_ascii_lowercase(), value)),
            }
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: C, map: u32, kp: u32, ks: u32| -> Result<i32> {
            let key = read_string(&mut c, kp, ks)?;
            let Some(m) = map_mut(c.data_mut(), map) else {
                return Ok(NOT_FOUND);
            };
            m.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: C, map: u32, kp: u32, ks: u32, vp: u32, vs: u32| -> Result<i32> {
            let key = read_string(&mut c, kp, ks)?;
            let value = read_string(&mut c, vp, vs)?;
            let Some(m) = map_mut(c.data_mut(), map) else {
                return Ok(NOT_FOUND);
            };
            m.push((key.to_ascii_lowercase(), value));
            Ok(OK)
        },
    )?;
    linker.func_wrap("env", "proxy_get_property", proxy_get_property)?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: C, pp: u32, ps: u32, vp: u32, vs: u32| -> Result<i32> {
            let path = maps::property_path(&read(&mut c, pp, ps)?);
            let value = read(&mut c, vp, vs)?;
            let h = c.data();
            if h.world.profile.no_root_properties && h.is_root(h.effective_context) {
                return Ok(NOT_FOUND);
            }
            h.node
                .properties
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(path, value);
            Ok(OK)
        },
    )?;
    linker.func_wrap("env", "proxy_get_shared_data", proxy_get_shared_data)?;
    linker.func_wrap("env", "proxy_set_shared_data", proxy_set_shared_data)?;
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: C, np: u32, ns: u32, out: u32| -> Result<i32> {
            let name = read_string(&mut c, np, ns)?;
            let (worker, ctx, generation) = {
                let h = c.data();
                (h.origin.worker, h.effective_context, h.generation)
            };
            let id = {
                let mut queues = lock(&c.data().node.queues);
                match queues.find("", &name) {
                    Some(id) => {
                        // Re-registering moves the notifications to the caller (as in Envoy).
                        if let Some(q) = queues.get_mut(id) {
                            q.owner_worker = worker;
                            q.owner_context = ctx;
                            q.owner_generation = generation;
                        }
                        id
                    }
                    None => {
                        queues.queues.push(crate::state::Queue {
                            vm_id: String::new(),
                            name,
                            owner_worker: worker,
                            owner_context: ctx,
                            owner_generation: generation,
                            items: Default::default(),
                        });
                        queues.queues.len() as u32
                    }
                }
            };
            write_u32(&mut c, out, id)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: C, vp: u32, vs: u32, np: u32, ns: u32, out: u32| -> Result<i32> {
            let vm_id = read_string(&mut c, vp, vs)?;
            let name = read_string(&mut c, np, ns)?;
            let found = lock(&c.data().node.queues).find(&vm_id, &name);
            match found {
                Some(id) => {
                    write_u32(&mut c, out, id)?;
                    Ok(OK)
                }
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: C, id: u32, ptr_out: u32, size_out: u32| -> Result<i32> {
            let item = {
                let mut queues = lock(&c.data().node.queues);
                match queues.get_mut(id) {
                    None => return Ok(NOT_FOUND),
                    Some(q) => q.items.pop_front(),
                }
            };
            match item {
                None => Ok(EMPTY),
                Some(bytes) => {
                    return_bytes(&mut c, Some(&bytes), ptr_out, size_out)?;
                    Ok(OK)
                }
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: C, id: u32, vp: u32, vs: u32| -> Result<i32> {
            let value = read(&mut c, vp, vs)?;
            {
                let mut queues = lock(&c.data().node.queues);
                match queues.get_mut(id) {
                    None => return Ok(NOT_FOUND),
                    Some(q) => q.items.push_back(value),
                }
            }
            c.data_mut().outbox.enqueued.push(id);
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: C, ty: u32| -> Result<i32> { Ok(resume(c.data_mut(), ty)) },
    )?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut c: C, _ty: u32| -> Result<i32> {
            let ctx = c.data().effective_context;
            match c.data_mut().streams.get_mut(&ctx) {
                Some(s) => {
                    s.closed = true;
                    Ok(OK)
                }
                None => Ok(BAD_ARGUMENT),
            }
        },
    )?;
    // ABI 0.2.0 names.
    linker.func_wrap("env", "proxy_continue_request", |mut c: C| -> Result<i32> {
        Ok(resume(c.data_mut(), 0))
    })?;
    linker.func_wrap(
        "env",
        "proxy_continue_response",
        |mut c: C| -> Result<i32> { Ok(resume(c.data_mut(), 1)) },
    )?;
    linker.func_wrap("env", "proxy_clear_route_cache", |_c: C| -> Result<i32> {
        Ok(OK)
    })?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        proxy_send_local_response,
    )?;
    linker.func_wrap("env", "proxy_http_call", proxy_http_call)?;
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |_c: C,
         _a: u32,
         _b: u32,
         _d: u32,
         _e: u32,
         _f: u32,
         _g: u32,
         _h: u32,
         _i: u32,
         _j: u32,
         _k: u32,
         _l: u32,
         _m: u32|
         -> Result<i32> {
            // gRPC is not simulated (ngx_wasm_module has none either); the SDK maps this to Err.
            Ok(INTERNAL_FAILURE)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |_c: C,
         _a: u32,
         _b: u32,
         _d: u32,
         _e: u32,
         _f: u32,
         _g: u32,
         _h: u32,
         _i: u32,
         _j: u32|
         -> Result<i32> { Ok(INTERNAL_FAILURE) },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |_c: C, _t: u32, _p: u32, _s: u32, _e: u32| -> Result<i32> { Ok(NOT_FOUND) },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_cancel",
        |_c: C, _t: u32| -> Result<i32> { Ok(NOT_FOUND) },
    )?;
    linker.func_wrap("env", "proxy_grpc_close", |_c: C, _t: u32| -> Result<i32> {
        Ok(NOT_FOUND)
    })?;
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: C, code_out: u32, ptr_out: u32, size_out: u32| -> Result<i32> {
            write_u32(&mut c, code_out, 0)?;
            return_bytes(&mut c, None, ptr_out, size_out)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: C, ctx: u32| -> Result<i32> {
            let h = c.data_mut();
            if h.is_root(ctx) || h.streams.contains_key(&ctx) {
                h.effective_context = ctx;
                Ok(OK)
            } else {
                Ok(BAD_ARGUMENT)
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut c: C, np: u32, ns: u32, _ap: u32, _as: u32, _rp: u32, _rs: u32| -> Result<i32> {
            let _name = read_string(&mut c, np, ns)?;
            Ok(NOT_FOUND)
        },
    )?;
    linker.func_wrap("env", "proxy_done", |_c: C| -> Result<i32> { Ok(OK) })?;
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: C, kind: u32, np: u32, ns: u32, out: u32| -> Result<i32> {
            if !c.data().world.profile.metrics {
                return Ok(INTERNAL_FAILURE);
            }
            let kind = match kind {
                0 => MetricKind::Counter,
                1 => MetricKind::Gauge,
                2 => MetricKind::Histogram,
                _ => return Ok(BAD_ARGUMENT),
            };
            let name = read_string(&mut c, np, ns)?;
            let id = lock(&c.data().node.metrics).define(kind, &name);
            write_u32(&mut c, out, id)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |c: C, id: u32, offset: i64| -> Result<i32> {
            let mut metrics = lock(&c.data().node.metrics);
            match metrics.get_mut(id) {
                None => Ok(NOT_FOUND),
                Some(m) if m.kind == MetricKind::Histogram => Ok(BAD_ARGUMENT),
                Some(m) if m.kind == MetricKind::Counter && offset < 0 => Ok(BAD_ARGUMENT),
                Some(m) => {
                    m.value = m.value.saturating_add(offset);
                    Ok(OK)
                }
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |c: C, id: u32, value: u64| -> Result<i32> {
            let mut metrics = lock(&c.data().node.metrics);
            match metrics.get_mut(id) {
                None => Ok(NOT_FOUND),
                Some(m) => {
                    m.value = i64::try_from(value).unwrap_or(i64::MAX);
                    Ok(OK)
                }
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: C, id: u32, out: u32| -> Result<i32> {
            let value = match lock(&c.data().node.metrics).get_mut(id) {
                None => return Ok(NOT_FOUND),
                Some(m) if m.kind == MetricKind::Histogram => return Ok(BAD_ARGUMENT),
                Some(m) => m.value,
            };
            write_u64(&mut c, out, value as u64)?;
            Ok(OK)
        },
    )?;
    Ok(())
}

fn proxy_log(mut c: C, level: i32, ptr: u32, size: u32) -> Result<i32> {
    let message = read_string(&mut c, ptr, size)?;
    let h = c.data();
    let level = LogLevel::from_abi(level).unwrap_or(LogLevel::Info);
    let line = LogLine {
        at: h.world.clock.elapsed(),
        origin: h.origin.clone(),
        level,
        message,
    };
    let mut rec = lock(&h.world.recorder);
    if rec.echo {
        eprintln!(
            "[{:>9.3}s] {} {:?} {}",
            line.at.as_secs_f64(),
            line.origin,
            line.level,
            line.message
        );
    }
    rec.logs.push(line);
    // The SDK panics on anything but Ok.
    Ok(OK)
}

fn map_ref(h: &Host, map: u32) -> Option<&Vec<(String, String)>> {
    match map {
        MAP_CALL_RESPONSE_HEADERS => h.call_response.as_ref().map(|r| &r.headers),
        MAP_CALL_RESPONSE_TRAILERS => h.call_response.as_ref().map(|r| &r.trailers),
        _ => {
            let s = h.streams.get(&h.effective_context)?;
            match map {
                MAP_REQUEST_HEADERS => Some(&s.request_headers),
                MAP_REQUEST_TRAILERS => Some(&s.request_trailers),
                MAP_RESPONSE_HEADERS => Some(&s.response_headers),
                MAP_RESPONSE_TRAILERS => Some(&s.response_trailers),
                _ => None,
            }
        }
    }
}

fn map_mut(h: &mut Host, map: u32) -> Option<&mut Vec<(String, String)>> {
    match map {
        MAP_CALL_RESPONSE_HEADERS => h.call_response.as_mut().map(|r| &mut r.headers),
        MAP_CALL_RESPONSE_TRAILERS => h.call_response.as_mut().map(|r| &mut r.trailers),
        _ => {
            let ctx = h.effective_context;
            let s = h.streams.get_mut(&ctx)?;
            match map {
                MAP_REQUEST_HEADERS => Some(&mut s.request_headers),
                MAP_REQUEST_TRAILERS => Some(&mut s.request_trailers),
                MAP_RESPONSE_HEADERS => Some(&mut s.response_headers),
                MAP_RESPONSE_TRAILERS => Some(&mut s.response_trailers),
                _ => None,
            }
        }
    }
}

fn buffer(h: &Host, ty: u32) -> Option<&[u8]> {
    let ctx = h.effective_context;
    match ty {
        BUF_REQUEST_BODY => h.streams.get(&ctx).map(|s| s.request_body.as_slice()),
        BUF_RESPONSE_BODY => h.streams.get(&ctx).map(|s| s.response_body.as_slice()),
        BUF_CALL_RESPONSE_BODY => h.call_response.as_ref().map(|r| r.body.as_slice()),
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
    let slice = match buffer(c.data(), ty) {
        None => return Ok(NOT_FOUND),
        Some(b) => {
            let start = (start as usize).min(b.len());
            let end = start.saturating_add(max_size as usize).min(b.len());
            b[start..end].to_vec()
        }
    };
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
    let ctx = h.effective_context;
    let Some(stream) = h.streams.get_mut(&ctx) else {
        return Ok(NOT_FOUND);
    };
    let body = match ty {
        BUF_REQUEST_BODY => &mut stream.request_body,
        BUF_RESPONSE_BODY => &mut stream.response_body,
        _ => return Ok(BAD_ARGUMENT),
    };
    // Envoy's rule: (0, len) replaces the whole buffer, (len, 0) appends, (0, 0) prepends.
    let start = (start as usize).min(body.len());
    let end = start.saturating_add(size as usize).min(body.len());
    body.splice(start..end, data);
    Ok(OK)
}

fn proxy_get_property(mut c: C, pp: u32, ps: u32, ptr_out: u32, size_out: u32) -> Result<i32> {
    let path = maps::property_path(&read(&mut c, pp, ps)?);
    let value = {
        let h = c.data_mut();
        let in_root = h.is_root(h.effective_context)
            && matches!(
                h.callback,
                Callback::VmStart
                    | Callback::Configure
                    | Callback::Tick
                    | Callback::RootCallResponse
                    | Callback::QueueReady
                    | Callback::ContextCreate
            );
        if h.world.profile.no_root_properties && in_root {
            match path.as_str() {
                "plugin_name" if matches!(h.callback, Callback::VmStart | Callback::Configure) => {
                    h.fatal = Some(format!(
                        "host crashed reading property plugin_name in {}",
                        h.callback.name()
                    ));
                    bail!("host crash (segfault) reading plugin_name in a root context");
                }
                "plugin_root_id" => Some(b"0".to_vec()),
                _ => None,
            }
        } else {
            h.node
                .properties
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&path)
                .cloned()
        }
    };
    match value {
        None => Ok(NOT_FOUND),
        Some(v) => {
            return_bytes(&mut c, Some(&v), ptr_out, size_out)?;
            Ok(OK)
        }
    }
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
    if let Err(why) = c.data().world.profile.resolve_shm_zone(&key) {
        bail!("get_shared_data: {why} (ngx_wasm_module traps)");
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
    if let Err(why) = c.data().world.profile.resolve_shm_zone(&key) {
        bail!("set_shared_data: {why} (ngx_wasm_module traps)");
    }
    let value = read(&mut c, vp, vs)?;
    let strict = c.data().world.profile.strict_cas;
    let result = lock(&c.data().node.shared_data).set(&key, value, cas, strict);
    Ok(match result {
        SetResult::Ok => OK,
        SetResult::CasMismatch => CAS_MISMATCH,
    })
}

fn resume(h: &mut Host, stream_type: u32) -> i32 {
    let ctx = h.effective_context;
    let Some(s) = h.streams.get_mut(&ctx) else {
        return BAD_ARGUMENT;
    };
    match stream_type {
        0 => s.resumed_request = true,
        1 => s.resumed_response = true,
        _ => return BAD_ARGUMENT,
    }
    OK
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
    let Some(headers) = maps::deserialize(&read(&mut c, hp, hs)?) else {
        return Ok(BAD_ARGUMENT);
    };
    let h = c.data_mut();
    let ctx = h.effective_context;
    let Some(stream) = h.streams.get_mut(&ctx) else {
        return Ok(BAD_ARGUMENT);
    };
    stream.local_response = Some(LocalResponse {
        status,
        details,
        headers,
        body,
        grpc_status,
    });
    Ok(OK)
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
    let profile = c.data().world.profile.clone();
    let callback = c.data().callback;

    if profile.dispatch_traps_outside_callbacks
        && matches!(callback, Callback::VmStart | Callback::Configure)
    {
        let msg = format!(
            "dispatch_http_call from {} (the worker dies)",
            callback.name()
        );
        c.data_mut().fatal_trap = Some(msg.clone());
        bail!(msg);
    }
    if profile.dispatch_in_root_call_response_crashes && callback == Callback::RootCallResponse {
        let msg = "dispatch_http_call from a root on_http_call_response: host segfault".to_string();
        c.data_mut().fatal = Some(msg.clone());
        bail!(msg);
    }

    let (Some(headers), Some(_trailers)) = (
        maps::deserialize(&header_bytes),
        maps::deserialize(&trailer_bytes),
    ) else {
        return Ok(BAD_ARGUMENT);
    };
    let pseudo = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let (Some(method), Some(path)) = (pseudo(":method"), pseudo(":path")) else {
        return Ok(BAD_ARGUMENT);
    };
    if method.is_empty() || !path.starts_with('/') {
        return Ok(BAD_ARGUMENT);
    }
    let scheme = pseudo(":scheme").unwrap_or_else(|| "http".to_string());
    let https = scheme == "https";
    let authority = match pseudo(":authority") {
        Some(a) if !a.is_empty() => a,
        // Envoy requires :authority; ngx_wasm_module uses the upstream's host.
        _ if !profile.upstream_is_host_port => return Ok(BAD_ARGUMENT),
        _ => upstream.clone(),
    };
    if profile.upstream_is_host_port && (upstream.contains('/') || upstream.is_empty()) {
        // A URL or an empty name is not `host[:port]`.
        return Ok(BAD_ARGUMENT);
    }
    let route = c.data().world.route(&upstream, https);
    let immediate_failure = match (&route, profile.upstream_is_host_port) {
        (Some(_), _) => None,
        // Envoy: an unknown cluster is refused synchronously.
        (None, false) => return Ok(BAD_ARGUMENT),
        (None, true) => Some(CallFailure::ResolverFailure),
    };

    let regular: Vec<(String, String)> = headers
        .into_iter()
        .filter(|(k, _)| !k.starts_with(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let request = HttpRequest {
        method,
        path,
        authority,
        scheme,
        headers: regular,
        body,
    };
    let token = c.data().world.token();
    let context_id = c.data().effective_context;
    let timeout = if timeout_ms == 0 {
        DEFAULT_CALL_TIMEOUT
    } else {
        Duration::from_millis(u64::from(timeout_ms))
    };
    write_u32(&mut c, token_out, token).map_err(|e| format_err!("{e}"))?;
    c.data_mut().outbox.calls.push(PendingCall {
        token,
        context_id,
        upstream,
        request,
        timeout,
        immediate_failure,
    });
    Ok(OK)
}
