//! Every proxy-wasm hostcall the filter makes, called through the ABI directly. Each one turns any
//! status a host returns into a `Result` (the SDK's wrappers panic on statuses they do not expect,
//! and a panic is a trap in a gateway worker: docs/host-behaviours.md). Data the host hands back
//! is decoded with bounds checks (`header_map`).

use std::ptr::null_mut;

use crate::header_map;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_http_call(
        upstream_data: *const u8,
        upstream_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        body_data: *const u8,
        body_size: usize,
        trailers_data: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        return_token: *mut u32,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn random_get(buf: *mut u8, buf_len: usize) -> i32;
}

/// 8 bytes of WASI randomness (not cryptographic on every host: only for identities).
pub(crate) fn random_u64() -> Result<u64, Status> {
    let mut buf = [0u8; 8];
    // SAFETY: a live, writable 8-byte buffer.
    let errno = unsafe { random_get(buf.as_mut_ptr(), buf.len()) };
    if errno == 0 {
        Ok(u64::from_le_bytes(buf))
    } else {
        Err(Status(u32::try_from(errno).unwrap_or(u32::MAX)))
    }
}

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const EMPTY: u32 = 7;
const CAS_MISMATCH: u32 = 8;

/// A non-Ok status, as the raw number (hosts may return codes the spec's enum lacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Status(pub(crate) u32);

/// Log levels of the ABI.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LogLevel {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

/// Buffer types of the ABI used here.
pub(crate) const HTTP_CALL_RESPONSE_BODY: u32 = 4;
pub(crate) const PLUGIN_CONFIGURATION: u32 = 7;
/// Map type of an HTTP call's response headers.
const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
/// Metric types of the ABI.
pub(crate) const COUNTER: u32 = 0;
pub(crate) const GAUGE: u32 = 1;

fn status(s: u32) -> Result<(), Status> {
    if s == OK {
        Ok(())
    } else {
        Err(Status(s))
    }
}

/// Takes ownership of bytes the host allocated through `proxy_on_memory_allocate`.
///
/// # Safety
/// `data`/`size` must come from the host as the out-parameters of a hostcall that returned Ok:
/// the host allocated exactly `size` bytes through our allocator (a boxed slice of that length).
unsafe fn take_host_bytes(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: see the function's contract; this is how the allocation is reclaimed.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

pub(crate) fn log(level: LogLevel, message: &str) -> Result<(), Status> {
    // SAFETY: a live slice; the host only reads it.
    status(unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) })
}

/// Host time in milliseconds since the epoch.
pub(crate) fn now_ms() -> Result<u64, Status> {
    let mut t: u64 = 0;
    // SAFETY: a valid out-parameter for the call's duration.
    status(unsafe { proxy_get_current_time_nanoseconds(&mut t) })?;
    Ok(t / 1_000_000)
}

pub(crate) fn set_tick_period_ms(period: u64) -> Result<(), Status> {
    let period = u32::try_from(period).unwrap_or(u32::MAX);
    // SAFETY: a plain value.
    status(unsafe { proxy_set_tick_period_milliseconds(period) })
}

/// A whole buffer (`max_size` bytes at most); a missing or empty buffer is empty.
pub(crate) fn buffer(buffer_type: u32, max_size: usize) -> Result<Vec<u8>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: valid out-parameters for the call's duration.
    let s = unsafe { proxy_get_buffer_bytes(buffer_type, 0, max_size, &mut data, &mut size) };
    match s {
        // SAFETY: Ok: the host handed over `size` bytes it allocated through our allocator.
        OK => Ok(unsafe { take_host_bytes(data, size) }),
        NOT_FOUND | EMPTY => Ok(Vec::new()),
        s => Err(Status(s)),
    }
}

/// The headers of the call response being delivered, including `:status` or, on ngx_wasm_module
/// failures, `:dispatch_status`. Non-UTF-8 values are replaced, malformed maps truncated.
pub(crate) fn call_response_headers() -> Result<Vec<(String, String)>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: valid out-parameters for the call's duration.
    let s = unsafe { proxy_get_header_map_pairs(HTTP_CALL_RESPONSE_HEADERS, &mut data, &mut size) };
    match s {
        OK => {
            // SAFETY: Ok: the host handed over `size` bytes it allocated through our allocator.
            let bytes = unsafe { take_host_bytes(data, size) };
            Ok(header_map::decode_lossy(&bytes))
        }
        NOT_FOUND | EMPTY => Ok(Vec::new()),
        s => Err(Status(s)),
    }
}

/// `(value, cas)`; `(None, None)` when the key does not exist.
pub(crate) fn get_shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    // SAFETY: a live key slice and valid out-parameters for the call's duration.
    let s =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match s {
        // As the SDK reads it: a null value is "no value", the cas is passed on as given.
        OK if data.is_null() => Ok((None, Some(cas))),
        OK => {
            // SAFETY: Ok: the host handed over `size` bytes it allocated through our allocator.
            let value = unsafe { take_host_bytes(data, size) };
            Ok((Some(value), Some(cas)))
        }
        NOT_FOUND => Ok((None, None)),
        s => Err(Status(s)),
    }
}

/// `Ok(true)` written, `Ok(false)` CAS mismatch.
pub(crate) fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, Status> {
    // SAFETY: live slices; the host only reads them.
    let s = unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    };
    match s {
        OK => Ok(true),
        CAS_MISMATCH => Ok(false),
        s => Err(Status(s)),
    }
}

/// The proxy-wasm header-map wire format (count, lengths, then NUL-terminated keys and values).
fn encode_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| k.len() + v.len() + 10)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&len32(pairs.len()));
    for (k, v) in pairs {
        out.extend_from_slice(&len32(k.len()));
        out.extend_from_slice(&len32(v.len()));
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Dispatches an HTTP call; returns the host's token.
pub(crate) fn http_call(
    upstream: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout_ms: u64,
) -> Result<u32, Status> {
    let headers = encode_map(headers);
    // An empty map is sent as its 4-byte encoding (count 0), as the SDK does.
    let trailers = encode_map(&[]);
    let timeout = u32::try_from(timeout_ms).unwrap_or(u32::MAX);
    let mut token: u32 = 0;
    // SAFETY: live slices the host only reads, and a valid out-parameter.
    let s = unsafe {
        proxy_http_call(
            upstream.as_ptr(),
            upstream.len(),
            headers.as_ptr(),
            headers.len(),
            if body.is_empty() {
                std::ptr::null()
            } else {
                body.as_ptr()
            },
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            timeout,
            &mut token,
        )
    };
    status(s).map(|()| token)
}

pub(crate) fn define_metric(kind: u32, name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    // SAFETY: `name` is a live slice; `id` is a valid out-parameter for the call's duration.
    status(unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub(crate) fn increment_metric(id: u32, offset: i64) -> Result<(), Status> {
    // SAFETY: plain values only.
    status(unsafe { proxy_increment_metric(id, offset) })
}

pub(crate) fn record_metric(id: u32, value: u64) -> Result<(), Status> {
    // SAFETY: plain values only.
    status(unsafe { proxy_record_metric(id, value) })
}
