//! Every `env.proxy_*` import of the proxy-wasm 0.2.x SDKs, with the spec's status codes, one
//! module per interface (as wasmtime-wasi splits WASI). A hostcall returns `Err` (a trap) only
//! where the real host traps or crashes, or when the guest hands the host an out-of-bounds pointer.
//!
//! With a hostile profile ([`crate::hostile`]) a few hostcalls first ask [`inject`] whether to
//! answer something unusual instead; every other profile always gets `None` there.

mod buffers;
mod http_call;
mod http_stream;
mod log;
mod maps;
mod metrics;
mod misc;
mod properties;
mod queues;
mod shared_data;
mod time;

use wasmtime::{Caller, Linker, Result};

use super::Host;
use crate::hostile::Injection;

type C<'a> = Caller<'a, Host>;

/// Registers every hostcall.
pub(super) fn add(linker: &mut Linker<Host>) -> Result<()> {
    log::add_to_linker(linker)?;
    time::add_to_linker(linker)?;
    buffers::add_to_linker(linker)?;
    maps::add_to_linker(linker)?;
    properties::add_to_linker(linker)?;
    shared_data::add_to_linker(linker)?;
    queues::add_to_linker(linker)?;
    http_call::add_to_linker(linker)?;
    http_stream::add_to_linker(linker)?;
    metrics::add_to_linker(linker)?;
    misc::add_to_linker(linker)?;
    Ok(())
}

/// Traps when the profile's host leaves `hostcall` unimplemented (ngx_wasm_module's NYI
/// hostcalls trap with this message: docs/host-behaviours.md, "Unimplemented hostcalls").
fn nyi(h: &Host, hostcall: &str) -> Result<()> {
    if h.world.profile.nyi_hostcalls.contains(&hostcall) {
        wasmtime::bail!("host trap (function not yet implemented): {hostcall}");
    }
    Ok(())
}

/// Traps with ngx_wasm_module's message for a hostcall used where it is not allowed.
fn bad_usage(message: &str) -> wasmtime::Error {
    wasmtime::format_err!("host trap (bad usage): {message}")
}

/// Whether a hostile profile answers this hostcall with a variant of `kind` (recorded with
/// `detail`); `None` means "answer normally".
fn inject(h: &Host, kind: Injection, detail: impl FnOnce() -> String) -> Option<&'static str> {
    h.world.inject(&h.origin, kind, detail)
}

#[cfg(test)]
mod tests {
    use wasmtime::{Engine, Linker, Store};

    use super::*;

    type Add = fn(&mut Linker<Host>) -> Result<()>;

    fn names(engine: &Engine, add: Add) -> Vec<String> {
        let mut linker = Linker::new(engine);
        add(&mut linker).unwrap();
        let host = crate::abi::probe_host();
        let mut store = Store::new(engine, host);
        let mut names: Vec<String> = linker
            .iter(&mut store)
            .map(|(m, n, _)| {
                assert_eq!(m, "env");
                n.to_string()
            })
            .collect();
        names.sort();
        names
    }

    /// Each interface and the hostcalls it registers.
    const INTERFACES: [(Add, &[&str]); 11] = [
        (log::add_to_linker, &["proxy_get_log_level", "proxy_log"]),
        (
            time::add_to_linker,
            &[
                "proxy_get_current_time_nanoseconds",
                "proxy_set_tick_period_milliseconds",
            ],
        ),
        (
            buffers::add_to_linker,
            &["proxy_get_buffer_bytes", "proxy_set_buffer_bytes"],
        ),
        (
            maps::add_to_linker,
            &[
                "proxy_add_header_map_value",
                "proxy_get_header_map_pairs",
                "proxy_get_header_map_value",
                "proxy_remove_header_map_value",
                "proxy_replace_header_map_value",
                "proxy_set_header_map_pairs",
            ],
        ),
        (
            properties::add_to_linker,
            &["proxy_get_property", "proxy_set_property"],
        ),
        (
            shared_data::add_to_linker,
            &["proxy_get_shared_data", "proxy_set_shared_data"],
        ),
        (
            queues::add_to_linker,
            &[
                "proxy_dequeue_shared_queue",
                "proxy_enqueue_shared_queue",
                "proxy_register_shared_queue",
                "proxy_resolve_shared_queue",
            ],
        ),
        (http_call::add_to_linker, &["proxy_http_call"]),
        (
            http_stream::add_to_linker,
            &[
                "proxy_clear_route_cache",
                "proxy_close_stream",
                "proxy_continue_request",
                "proxy_continue_response",
                "proxy_continue_stream",
                "proxy_send_local_response",
            ],
        ),
        (
            metrics::add_to_linker,
            &[
                "proxy_define_metric",
                "proxy_get_metric",
                "proxy_increment_metric",
                "proxy_record_metric",
            ],
        ),
        (
            misc::add_to_linker,
            &[
                "proxy_call_foreign_function",
                "proxy_done",
                "proxy_get_status",
                "proxy_grpc_call",
                "proxy_grpc_cancel",
                "proxy_grpc_close",
                "proxy_grpc_send",
                "proxy_grpc_stream",
                "proxy_set_effective_context",
            ],
        ),
    ];

    #[test]
    fn each_interface_registers_exactly_its_hostcalls() {
        let engine = Engine::default();
        let mut all = Vec::new();
        for (add, expected) in INTERFACES {
            assert_eq!(names(&engine, add), expected);
            all.extend(expected.iter().map(|s| s.to_string()));
        }
        all.sort();
        assert_eq!(all.len(), 40);
        assert_eq!(names(&engine, super::add), all);
    }
}
