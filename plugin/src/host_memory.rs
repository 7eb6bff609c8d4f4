//! Memory the host asks the filter for (`proxy_on_memory_allocate`), to hand it data: a
//! configuration, a response body. The size comes from the host (and, for a body, from whatever
//! server answered): an allocation that cannot be made returns null — the host then reports the
//! call failed — instead of aborting the worker (`Vec::with_capacity` aborts on failure).

use std::mem::MaybeUninit;

/// `size` bytes, uninitialised, owned by the caller (reclaimed as a `Vec<u8>` of that length and
/// capacity); null when the memory cannot be had.
pub fn allocate(size: usize) -> *mut u8 {
    let mut v: Vec<MaybeUninit<u8>> = Vec::new();
    if v.try_reserve_exact(size).is_err() {
        return std::ptr::null_mut();
    }
    // SAFETY: capacity is at least `size` (exactly `size`: `try_reserve_exact` on an empty
    // vector); the bytes are uninitialised until the host writes them, and the filter reads only
    // what the host reports written.
    unsafe { v.set_len(size) };
    Box::into_raw(v.into_boxed_slice()).cast::<u8>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_sizes_give_null_and_others_memory() {
        assert!(allocate(usize::MAX).is_null());
        assert!(allocate(isize::MAX as usize).is_null());
        for size in [0, 1, 4096] {
            let p = allocate(size);
            assert!(!p.is_null());
            // SAFETY: as the shell reclaims host bytes (`hostcalls::take_host_bytes`).
            let v = unsafe { Vec::from_raw_parts(p, size, size) };
            assert_eq!(v.len(), size);
        }
    }
}
