//! The per-callback-kind table both benchmarks print (issue 25).

use std::time::Duration;

use host_harness::record::CallbackTimes;

pub fn fmt_ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The header of [`row`], after a `lead` column of `width`.
pub fn header(lead: &str, width: usize) -> String {
    format!(
        "{lead:>width$} {:<24} {:>7} {:>11} {:>12} {:>13} {:>12}",
        "kind", "count", "longest", "total", "longest copy", "longest CPU"
    )
}

/// One kind: wall time in the guest (the host's copies apart), the longest copy, and the CPU time
/// of the longest call (copies included); flagged when both exceed 20 ms.
pub fn row(lead: &str, width: usize, kind: &str, t: &CallbackTimes) -> String {
    let flag = if t.longest_guest.min(t.longest_cpu) > Duration::from_millis(20) {
        "  > 20 ms"
    } else {
        ""
    };
    format!(
        "{lead:>width$} {:<24} {:>7} {:>11} {:>12} {:>13} {:>12}{flag}",
        kind,
        t.count,
        fmt_ms(t.longest_guest),
        fmt_ms(t.total_guest),
        fmt_ms(t.longest_copy),
        fmt_ms(t.longest_cpu)
    )
}
