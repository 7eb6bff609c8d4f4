//! Hostcalls whose proxy-wasm SDK wrappers panic on a status they do not expect (FACTS.md): the
//! metrics functions accept only Ok (a host without metrics, or with partial support, would trap
//! the worker), and `set_shared_data` only Ok/CasMismatch (a full `shm_kv` zone would). These
//! declare the same imports and turn every status into a `Result`. The SDK's header-map reader also
//! unwraps UTF-8 and slices unchecked; `call_response_headers` decodes with `header_map`.

// The SDK declares the same imports with its own enum types; the wasm signatures are identical.
#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
}

const OK: u32 = 0;
const CAS_MISMATCH: u32 = 8;

/// A non-Ok status, as the raw number (the host may return codes the SDK's enum lacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStatus(pub u32);

/// `Ok(true)` written, `Ok(false)` CAS mismatch.
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, HostStatus> {
    // SAFETY: pointers and lengths come from live slices; the host only reads them.
    let status = unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    };
    match status {
        OK => Ok(true),
        CAS_MISMATCH => Ok(false),
        s => Err(HostStatus(s)),
    }
}

/// Metric types of the ABI.
pub const COUNTER: u32 = 0;
pub const GAUGE: u32 = 1;

pub fn define_metric(kind: u32, name: &str) -> Result<u32, HostStatus> {
    let mut id = 0u32;
    // SAFETY: `name` is a live slice; `id` is a valid out-parameter for the call's duration.
    let status = unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
    match status {
        OK => Ok(id),
        s => Err(HostStatus(s)),
    }
}

pub fn increment_metric(id: u32, offset: i64) -> Result<(), HostStatus> {
    // SAFETY: plain values only.
    match unsafe { proxy_increment_metric(id, offset) } {
        OK => Ok(()),
        s => Err(HostStatus(s)),
    }
}

pub fn record_metric(id: u32, value: u64) -> Result<(), HostStatus> {
    // SAFETY: plain values only.
    match unsafe { proxy_record_metric(id, value) } {
        OK => Ok(()),
        s => Err(HostStatus(s)),
    }
}

/// Map type of an HTTP call's response headers.
const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;

/// The headers of the call response being delivered, including `:status` or, on ngx_wasm_module
/// failures, `:dispatch_status`. Non-UTF-8 values are replaced, malformed maps truncated.
pub fn call_response_headers() -> Result<Vec<(String, String)>, HostStatus> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: valid out-parameters for the call's duration.
    let status =
        unsafe { proxy_get_header_map_pairs(HTTP_CALL_RESPONSE_HEADERS, &mut data, &mut size) };
    if status != OK {
        return Err(HostStatus(status));
    }
    if data.is_null() || size == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: the host allocated exactly `size` bytes through our `proxy_on_memory_allocate` (a
    // boxed slice of that length) and hands them over; this is how the SDK itself reclaims them.
    let bytes = unsafe { Vec::from_raw_parts(data, size, size) };
    Ok(crate::header_map::decode_lossy(&bytes))
}
