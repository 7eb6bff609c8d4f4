//! Metrics: `proxy_{define,increment,record,get}_metric`, per node.

use wasmtime::{Linker, Result};

use super::super::memory::{read_string, write_u32, write_u64};
use super::super::status::{BAD_ARGUMENT, INTERNAL_FAILURE, NOT_FOUND, OK};
use super::super::Host;
use super::{inject, C};
use crate::hostile::{status_of, Injection};
use crate::record::MetricKind;
use crate::state::{lock, Metric};

pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> Result<()> {
    linker.func_wrap("env", "proxy_define_metric", define)?;
    linker.func_wrap("env", "proxy_increment_metric", increment)?;
    linker.func_wrap("env", "proxy_record_metric", record)?;
    linker.func_wrap("env", "proxy_get_metric", get)?;
    Ok(())
}

/// Hostile: the metrics ABI is not implemented (as in hosts that lack it).
fn unimplemented(h: &Host, hostcall: &'static str) -> Option<i32> {
    inject(h, Injection::Metrics, || hostcall.into()).map(|v| status_of(v).unwrap_or(OK))
}

fn define(mut c: C, kind: u32, np: u32, ns: u32, out: u32) -> Result<i32> {
    if !c.data().world.profile.metrics {
        return Ok(INTERNAL_FAILURE);
    }
    if let Some(status) = unimplemented(c.data(), "define_metric") {
        return Ok(status);
    }
    let kind = match kind {
        0 => MetricKind::Counter,
        1 => MetricKind::Gauge,
        2 => MetricKind::Histogram,
        _ => return Ok(BAD_ARGUMENT),
    };
    let name = read_string(&mut c, np, ns)?;
    let id = lock(&c.data().node.metrics).define(kind, &name);
    write_u32(&mut c, out, id)?;
    Ok(OK)
}

/// Runs `f` on metric `id` (NotFound when there is none).
fn with_metric(
    h: &Host,
    hostcall: &'static str,
    id: u32,
    f: impl FnOnce(&mut Metric) -> i32,
) -> i32 {
    if let Some(status) = unimplemented(h, hostcall) {
        return status;
    }
    match lock(&h.node.metrics).get_mut(id) {
        None => NOT_FOUND,
        Some(m) => f(m),
    }
}

fn increment(c: C, id: u32, offset: i64) -> Result<i32> {
    Ok(with_metric(c.data(), "increment_metric", id, |m| {
        match m.kind {
            MetricKind::Histogram => BAD_ARGUMENT,
            MetricKind::Counter if offset < 0 => BAD_ARGUMENT,
            _ => {
                m.value = m.value.saturating_add(offset);
                OK
            }
        }
    }))
}

fn record(c: C, id: u32, value: u64) -> Result<i32> {
    Ok(with_metric(c.data(), "record_metric", id, |m| {
        m.value = i64::try_from(value).unwrap_or(i64::MAX);
        OK
    }))
}

fn get(mut c: C, id: u32, out: u32) -> Result<i32> {
    let mut value = 0;
    let status = with_metric(c.data(), "get_metric", id, |m| {
        if m.kind == MetricKind::Histogram {
            return BAD_ARGUMENT;
        }
        value = m.value;
        OK
    });
    if status == OK {
        write_u64(&mut c, out, value as u64)?;
    }
    Ok(status)
}
