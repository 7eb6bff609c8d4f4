//! The proxy-wasm ABI 0.2.1 exports, written directly instead of through the Rust SDK: the SDK's
//! dispatcher panics on context ids and call tokens it does not know, and on a root context that
//! declares no HTTP context type (docs/host-behaviours.md); a panic is a trap in a gateway
//! worker. Here every callback forwards to `super` and an unknown id is a no-op. HTTP and stream
//! contexts exist for the host's sake only: every phase continues.

// The exports are the module's interface to the host, not Rust API: `pub` by ABI convention.
#![allow(unreachable_pub)]

use super::{with_filter, Filter};

/// `Action::Continue` of the ABI.
const CONTINUE: u32 = 0;

#[cfg(target_os = "wasi")]
extern "C" {
    fn __wasm_call_ctors();
}

/// The host calls it first (a reactor module has no `_start`).
#[no_mangle]
pub extern "C" fn _initialize() {
    #[cfg(target_os = "wasi")]
    // SAFETY: the linker-generated constructor runner, called once before anything else.
    unsafe {
        __wasm_call_ctors();
    }
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// The host asks for memory to hand data to the filter; `hostcalls::take_host_bytes` reclaims it.
/// A size that cannot be allocated gives null, never an abort (`host_memory`).
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    crate::host_memory::allocate(size)
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
    if root_context_id == 0 {
        with_filter(|f| f.root_created(context_id));
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_context_id: u32, _vm_configuration_size: usize) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(context_id: u32, _plugin_configuration_size: usize) -> u32 {
    // A host that forgets proxy_on_context_create still gets a configured root.
    u32::from(with_filter(|f| f.configure(context_id)).unwrap_or(true))
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(context_id: u32) {
    with_filter(|f| f.tick(context_id));
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    context_id: u32,
    token: u32,
    _num_headers: usize,
    body_size: usize,
    _num_trailers: usize,
) {
    with_filter(|f| f.call_response(context_id, token, body_size));
}

#[no_mangle]
pub extern "C" fn proxy_on_done(context_id: u32) -> u32 {
    with_filter(|f| f.done(context_id));
    // Done at once: the withdrawal is fire and forget.
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_log(_context_id: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    with_filter(|f: &mut Filter| f.root_deleted(context_id));
}

#[no_mangle]
pub extern "C" fn proxy_on_queue_ready(_context_id: u32, _queue_id: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_foreign_function(_context_id: u32, _function_id: u32, _size: usize) {}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context_id: u32, _n: usize, _eos: u32) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(_context_id: u32, _size: usize, _eos: u32) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(_context_id: u32, _n: usize) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(_context_id: u32, _n: usize, _eos: u32) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(_context_id: u32, _size: usize, _eos: u32) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_trailers(_context_id: u32, _n: usize) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_new_connection(_context_id: u32) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_downstream_data(_context_id: u32, _size: usize, _eos: u32) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_downstream_connection_close(_context_id: u32, _peer: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_upstream_data(_context_id: u32, _size: usize, _eos: u32) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_upstream_connection_close(_context_id: u32, _peer: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive_initial_metadata(_context_id: u32, _token: u32, _n: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive(_context_id: u32, _token: u32, _size: usize) {}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive_trailing_metadata(_context_id: u32, _token: u32, _n: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_close(_context_id: u32, _token: u32, _status: u32) {}
