//! Metric ids, defined lazily; a host without the metrics ABI (or with partial support) disables
//! them for good instead of failing anything else.

use super::hostcalls;
use crate::engine::{Metric, MetricKind};
use crate::vec_map::VecMap;

#[derive(Default)]
pub(super) struct Metrics {
    ids: VecMap<&'static str, u32>,
    disabled: bool,
}

impl Metrics {
    pub(super) fn apply(&mut self, metric: Metric, value: u64) {
        if self.disabled {
            return;
        }
        let id = match self.ids.get(&metric.name()) {
            Some(id) => *id,
            None => {
                let kind = match metric.kind() {
                    MetricKind::Counter => hostcalls::COUNTER,
                    MetricKind::Gauge => hostcalls::GAUGE,
                };
                match hostcalls::define_metric(kind, metric.name()) {
                    Ok(id) => {
                        self.ids.insert(metric.name(), id);
                        id
                    }
                    Err(_) => {
                        self.disabled = true;
                        return;
                    }
                }
            }
        };
        let result = match metric.kind() {
            MetricKind::Counter => {
                hostcalls::increment_metric(id, i64::try_from(value).unwrap_or(i64::MAX))
            }
            MetricKind::Gauge => hostcalls::record_metric(id, value),
        };
        if result.is_err() {
            self.disabled = true;
        }
    }
}
