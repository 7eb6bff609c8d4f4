//! The commands, and what they share: the deadline, the HTTP client, progress.

pub mod diff;
pub mod drill;
pub mod export;
pub mod history;
pub mod import;
pub mod status;

use std::time::{Duration, Instant};

use config_bridge::settings::Config;

use crate::args::Common;
use crate::http::{load_roots, Http};
use crate::outcome::{Exit, Outcome, Progress, Res};

/// The run's deadline from `--timeout`.
pub fn deadline(common: &Common) -> Res<Instant> {
    let secs = common.timeout;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(Outcome::new(
            Exit::Usage,
            "--timeout must be a number of seconds between 0 and 86400",
        ));
    }
    Ok(Instant::now() + Duration::from_secs_f64(secs))
}

pub fn progress(common: &Common) -> Progress {
    Progress {
        verbosity: common.verbose,
    }
}

/// One request's timeout: the filter's `call_timeout_ms` (10 s by default), at most the whole
/// `--timeout` (at least 1 s, so a short `--timeout` still gets one real attempt).
pub fn call_timeout(cfg: &Config, common: &Common) -> Duration {
    let whole = Duration::from_secs_f64(common.timeout.clamp(1.0, 86_400.0));
    Duration::from_millis(cfg.call_timeout_ms).min(whole)
}

/// The HTTP client: the call timeout, and `--ca-file` as the trusted CAs when given.
pub fn http(cfg: &Config, common: &Common) -> Res<Http> {
    let roots = match &common.ca_file {
        None => None,
        Some(path) => {
            let what = format!("--ca-file {}", path.display());
            let pem = std::fs::read(path)
                .map_err(|e| Outcome::new(Exit::Local, format!("cannot read {what}: {e}")))?;
            Some(load_roots(&pem).map_err(|e| Outcome::new(Exit::Usage, format!("{what} {e}")))?)
        }
    };
    Ok(Http::new(call_timeout(cfg, common), roots).with_progress(progress(common)))
}

/// `3.9.1` from `<prefix>/3.9.1/config.json`.
pub fn version_of_key(key: &str) -> &str {
    key.rsplit('/').nth(1).unwrap_or("")
}

/// An engine log line without its plan for the next attempt (`; retry 2 in 900 ms`,
/// `(next try in 900 ms)`), for the last line of a run that will not retry.
pub fn without_retry_plan(line: &str) -> &str {
    let line = line.split_once(" (next try in ").map_or(line, |(l, _)| l);
    let line = line.strip_suffix("; checking again").unwrap_or(line);
    let line = line
        .split_once("; next attempt in ")
        .map_or(line, |(l, _)| l);
    line.rsplit_once("; retry ").map_or(line, |(l, _)| l)
}
