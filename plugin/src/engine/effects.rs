//! What the core asks its shell to do besides sending requests: log lines and metrics.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// The metrics config-bridge reports (names are stable: dashboards use them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    ExportsTotal,
    ExportFailuresTotal,
    SourceErrorsTotal,
    LastExportBytes,
    LastExportDurationMs,
    LastExportTimestampSeconds,
    /// 1 while the filter configuration is invalid and the filter inert, else 0.
    ConfigInvalid,
    ImportsTotal,
    ImportFailuresTotal,
    /// 1 while this node leads the export, else 0.
    ElectionLeader,
    ElectionLeaderChangesTotal,
    ElectionFailuresTotal,
    /// Fresh candidates in the last round.
    ElectionCandidates,
    /// |store clock − node clock| in ms, as the store's `Date` header shows it.
    ElectionClockSkewMs,
    /// 1 while the listing is refused (401/403) and the node leads blind, else 0.
    ElectionBlind,
    /// Failed history requests (listing, recording, pruning; docs/history.md).
    HistoryFailuresTotal,
    /// History objects after the last history cycle.
    HistoryObjects,
}

impl Metric {
    pub const ALL: [Metric; 17] = [
        Metric::ExportsTotal,
        Metric::ExportFailuresTotal,
        Metric::SourceErrorsTotal,
        Metric::LastExportBytes,
        Metric::LastExportDurationMs,
        Metric::LastExportTimestampSeconds,
        Metric::ConfigInvalid,
        Metric::ImportsTotal,
        Metric::ImportFailuresTotal,
        Metric::ElectionLeader,
        Metric::ElectionLeaderChangesTotal,
        Metric::ElectionFailuresTotal,
        Metric::ElectionCandidates,
        Metric::ElectionClockSkewMs,
        Metric::ElectionBlind,
        Metric::HistoryFailuresTotal,
        Metric::HistoryObjects,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::ExportsTotal => "config_bridge_exports_total",
            Metric::ExportFailuresTotal => "config_bridge_export_failures_total",
            Metric::SourceErrorsTotal => "config_bridge_source_errors_total",
            Metric::LastExportBytes => "config_bridge_last_export_bytes",
            Metric::LastExportDurationMs => "config_bridge_last_export_duration_ms",
            Metric::LastExportTimestampSeconds => "config_bridge_last_export_timestamp_seconds",
            Metric::ConfigInvalid => "config_bridge_config_invalid",
            Metric::ImportsTotal => "config_bridge_imports_total",
            Metric::ImportFailuresTotal => "config_bridge_import_failures_total",
            Metric::ElectionLeader => "config_bridge_election_leader",
            Metric::ElectionLeaderChangesTotal => "config_bridge_election_leader_changes_total",
            Metric::ElectionFailuresTotal => "config_bridge_election_failures_total",
            Metric::ElectionCandidates => "config_bridge_election_candidates",
            Metric::ElectionClockSkewMs => "config_bridge_election_clock_skew_ms",
            Metric::ElectionBlind => "config_bridge_election_blind",
            Metric::HistoryFailuresTotal => "config_bridge_history_failures_total",
            Metric::HistoryObjects => "config_bridge_history_objects",
        }
    }

    pub fn kind(self) -> MetricKind {
        match self {
            Metric::ExportsTotal
            | Metric::ExportFailuresTotal
            | Metric::SourceErrorsTotal
            | Metric::ImportsTotal
            | Metric::ImportFailuresTotal
            | Metric::ElectionLeaderChangesTotal
            | Metric::ElectionFailuresTotal
            | Metric::HistoryFailuresTotal => MetricKind::Counter,
            _ => MetricKind::Gauge,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Log(Level, String),
    /// Counter: add; gauge: set.
    Metric(Metric, u64),
}

/// Where effects accumulate during one event or tick.
#[derive(Debug, Default)]
pub struct Effects(pub Vec<Effect>);

impl Effects {
    pub fn log(&mut self, level: Level, message: impl Into<String>) {
        self.0.push(Effect::Log(level, message.into()));
    }

    pub fn metric(&mut self, metric: Metric, value: u64) {
        self.0.push(Effect::Metric(metric, value));
    }
}
