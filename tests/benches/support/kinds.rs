//! The per-callback-kind table both benchmarks print (issue 25).

use std::time::Duration;

use host_harness::record::CallbackTimes;

pub fn fmt_ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The header of [`row`], after a `lead` column of `width`.
pub fn header(lead: &str, width: usize) -> String {
    format!(
        "{lead:>width$} {:<24} {:>7} {:>11} {:>12} {:>13} {:>12} {:>12} {:>12}",
        "kind", "count", "longest", "total", "longest copy", "guest CPU", "copy CPU", "all CPU"
    )
}

/// One kind: wall time in the guest (the host's copies apart), the longest copy (wall); then CPU
/// time, which load does not inflate: the longest call's guest share (the host's copies taken
/// out), the longest copy's, and the longest call's with its copies. Flagged when the guest's
/// share exceeds 20 ms (wall time when CPU time is not measured).
pub fn row(lead: &str, width: usize, kind: &str, t: &CallbackTimes) -> String {
    let guest = if t.longest_cpu.is_zero() {
        t.longest_guest
    } else {
        t.longest_guest_cpu
    };
    let flag = if guest > Duration::from_millis(20) {
        "  > 20 ms"
    } else {
        ""
    };
    format!(
        "{lead:>width$} {:<24} {:>7} {:>11} {:>12} {:>13} {:>12} {:>12} {:>12}{flag}",
        kind,
        t.count,
        fmt_ms(t.longest_guest),
        fmt_ms(t.total_guest),
        fmt_ms(t.longest_copy),
        fmt_ms(t.longest_guest_cpu),
        fmt_ms(t.longest_copy_cpu),
        fmt_ms(t.longest_cpu)
    )
}
