//! One clock for everything a guest can observe: `proxy_get_current_time_nanoseconds`, the WASI wall
//! and monotonic clocks, ticks and call latencies. In virtual mode time moves only when the world
//! advances it, so a 600 s election runs in milliseconds and every run is identical.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Virtual wall time at which a new world starts: 2026-01-01T00:00:00Z (fixed so runs repeat).
pub const DEFAULT_EPOCH_SECS: u64 = 1_767_225_600;

/// A shared clock. Cloning shares it.
#[derive(Clone, Debug)]
pub struct Clock {
    inner: Arc<ClockInner>,
}

#[derive(Debug)]
struct ClockInner {
    /// Wall time at elapsed = 0.
    base: SystemTime,
    elapsed_nanos: AtomicU64,
    /// Hosts report milliseconds: the guest-visible clocks are truncated to this.
    resolution: Duration,
}

impl Clock {
    /// A virtual clock at `base` (elapsed 0) whose guest-visible readings are truncated to `resolution`.
    pub fn new(base: SystemTime, resolution: Duration) -> Self {
        Clock {
            inner: Arc::new(ClockInner {
                base,
                elapsed_nanos: AtomicU64::new(0),
                resolution,
            }),
        }
    }

    /// A clock starting at [`DEFAULT_EPOCH_SECS`] with millisecond resolution.
    pub fn virtual_default() -> Self {
        Clock::new(
            UNIX_EPOCH + Duration::from_secs(DEFAULT_EPOCH_SECS),
            Duration::from_millis(1),
        )
    }

    /// Time since the world started.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.inner.elapsed_nanos.load(Ordering::SeqCst))
    }

    /// Moves the clock forward (never backward).
    pub fn set_elapsed(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.inner.elapsed_nanos.fetch_max(nanos, Ordering::SeqCst);
    }

    /// Full-precision wall time, for the host's own bookkeeping and for handlers.
    pub fn now(&self) -> SystemTime {
        self.inner.base + self.elapsed()
    }

    /// Wall time as the guest sees it (truncated to the host's resolution).
    pub fn guest_wall_nanos(&self) -> u64 {
        let since_epoch = self.now().duration_since(UNIX_EPOCH).unwrap_or_default();
        truncate(since_epoch, self.inner.resolution)
    }

    fn guest_monotonic_nanos(&self) -> u64 {
        truncate(self.elapsed(), self.inner.resolution)
    }
}

fn truncate(d: Duration, resolution: Duration) -> u64 {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let res = u64::try_from(resolution.as_nanos()).unwrap_or(1).max(1);
    nanos - nanos % res
}

/// The WASI wall clock of a guest, following the world clock.
pub(crate) struct WasiWall(pub Clock);

impl wasmtime_wasi::HostWallClock for WasiWall {
    fn resolution(&self) -> Duration {
        self.0.inner.resolution
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.guest_wall_nanos())
    }
}

/// The WASI monotonic clock of a guest, following the world clock.
pub(crate) struct WasiMonotonic(pub Clock);

impl wasmtime_wasi::HostMonotonicClock for WasiMonotonic {
    fn resolution(&self) -> u64 {
        u64::try_from(self.0.inner.resolution.as_nanos()).unwrap_or(1)
    }
    fn now(&self) -> u64 {
        self.0.guest_monotonic_nanos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_time_is_truncated_to_milliseconds_and_never_goes_back() {
        let c = Clock::virtual_default();
        c.set_elapsed(Duration::from_nanos(1_500_000_123));
        assert_eq!(
            c.guest_wall_nanos(),
            DEFAULT_EPOCH_SECS * 1_000_000_000 + 1_500_000_000
        );
        c.set_elapsed(Duration::from_secs(1));
        assert_eq!(c.elapsed(), Duration::from_nanos(1_500_000_123));
    }
}
