//! `host_tick_ms` against the host's tick period. A root context sets its period once
//! (ngx_wasm_module traps on a second `set_tick_period`: docs/host-behaviours.md), sometimes
//! before the configuration that names `host_tick_ms` is known: a large configuration is validated
//! across ticks of the default period first. A longer `host_tick_ms` is still kept: the shell runs
//! the filter's work only at the host ticks that fall due. A shorter one cannot be (the shell says
//! so once).

/// Whether the host tick at `now` runs the filter's work, the last one having run at `last`
/// (host ms), the host ticking every `period_ms` and the configuration asking for `host_tick_ms`:
/// the first host tick at or past `last + host_tick_ms`, give or take half a host period (a timer
/// may fire a millisecond early). Every tick when the host already ticks that slowly, and after a
/// clock that went back.
pub fn due(now: u64, last: u64, host_tick_ms: u64, period_ms: u64) -> bool {
    if host_tick_ms <= period_ms || now < last {
        return true;
    }
    now.saturating_sub(last).saturating_add(period_ms / 2) >= host_tick_ms
}

#[cfg(test)]
mod tests {
    use super::due;

    #[test]
    fn a_longer_host_tick_runs_every_that_many_ms_of_host_ticks() {
        // Host ticks every 50 ms, the configuration asks for 1 s: one tick in twenty runs.
        let ran: Vec<u64> = (1..=60u64)
            .map(|i| i * 50)
            .scan(0u64, |last, now| {
                let run = due(now, *last, 1_000, 50);
                if run {
                    *last = now;
                }
                Some(run.then_some(now))
            })
            .flatten()
            .collect();
        assert_eq!(ran, [1_000, 2_000, 3_000]);
        // A timer a millisecond early still counts.
        assert!(due(1_999, 1_000, 1_000, 50));
        assert!(!due(1_950, 1_000, 1_000, 50));
    }

    #[test]
    fn the_hosts_own_period_and_a_clock_going_back_run_every_tick() {
        assert!(due(1_049, 1_000, 50, 50));
        assert!(
            due(1_010, 1_000, 20, 50),
            "shorter than the host's: every tick"
        );
        assert!(due(500, 1_000, 1_000, 50), "the clock went back");
    }
}
