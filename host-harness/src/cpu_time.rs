//! The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`): what a guest callback and the
//! host's copies inside it cost, not inflated by other processes on busy cores.

use std::time::Duration;

/// The CPU time this thread has used: a guest callback runs on the calling thread, so the
/// difference around a call is the call's CPU time, whatever else the machine runs.
pub(crate) fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
    match (ok, u64::try_from(ts.tv_sec), u32::try_from(ts.tv_nsec)) {
        (true, Ok(s), Ok(ns)) => Duration::new(s, ns),
        _ => Duration::ZERO,
    }
}
