//! The native shell of the sans-IO engine: the same `Engine` the filter runs in every gateway
//! worker, driven here with the wall clock, an in-memory shared store and blocking HTTP.
//!
//! A loop of `tick` (which returns requests) and `on_event` (which takes their answers): each
//! request is sent at once and its answer handed back before the next tick, so a follow-up (the
//! PUT after a HEAD, a retry) goes out on the tick after. Between idle ticks the loop sleeps
//! briefly; the engine's own schedule (debounce, backoff) decides when something is due. The
//! command watches the effects (log lines, metrics) for the end it waits for.

use std::rc::Rc;
use std::time::{Duration, Instant};

use config_bridge::engine::{Effect, Engine, Event, Level};
use config_bridge::settings::Config;

use crate::http::Http;
use crate::outcome::Progress;
use crate::shared::MemShared;
use crate::time::now_ms;

/// Sleep between ticks with nothing to send.
const IDLE: Duration = Duration::from_millis(25);

pub struct Driver<'a> {
    engine: Engine,
    shared: MemShared,
    http: &'a Http,
    progress: Progress,
}

impl<'a> Driver<'a> {
    pub fn new(cfg: Config, http: &'a Http, progress: Progress) -> Driver<'a> {
        // A root-context identity: unique enough for one process.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let me = (u64::from(std::process::id()) << 32) ^ u64::from(nanos) ^ now_ms();
        Driver {
            engine: Engine::new(cfg, me),
            shared: MemShared::default(),
            http,
            progress,
        }
    }

    /// Runs until `watch` returns `Some` for an effect, or `deadline` passes (`None`).
    /// `first`: a document to apply before the first tick (the filter's own-config source).
    pub fn run<T>(
        &mut self,
        first: Option<Rc<Vec<u8>>>,
        deadline: Instant,
        mut watch: impl FnMut(&Effect) -> Option<T>,
    ) -> Option<T> {
        if let Some(doc) = first {
            let effects =
                self.engine
                    .on_event(Event::ConfigApplied(doc), now_ms(), &mut self.shared);
            if let Some(t) = self.see(effects, &mut watch) {
                return Some(t);
            }
        }
        loop {
            let out = self.engine.tick(now_ms(), &mut self.shared);
            if let Some(t) = self.see(out.effects, &mut watch) {
                return Some(t);
            }
            let idle = out.dispatches.is_empty();
            for d in out.dispatches {
                let what = format!(
                    "{} {}{}",
                    d.request.method,
                    d.request.authority,
                    path_only(&d.request.path)
                );
                let event = match self.http.send(&d.request) {
                    Ok(response) => {
                        self.progress
                            .debug(&format!("{what} -> {}", response.status));
                        Event::CallAnswered { id: d.id, response }
                    }
                    Err(reason) => {
                        self.progress.debug(&format!("{what} failed: {reason}"));
                        Event::CallFailed { id: d.id, reason }
                    }
                };
                let effects = self.engine.on_event(event, now_ms(), &mut self.shared);
                if let Some(t) = self.see(effects, &mut watch) {
                    return Some(t);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            if idle {
                std::thread::sleep(IDLE);
            }
        }
    }

    /// Asks `watch` about each effect and shows the log lines (warnings always, the rest with
    /// -v); a line followed by the effect that ends the run is not shown (the command reports
    /// the end, usually with that line).
    fn see<T>(
        &self,
        effects: Vec<Effect>,
        watch: &mut impl FnMut(&Effect) -> Option<T>,
    ) -> Option<T> {
        let mut pending: Option<(Level, String)> = None;
        for fx in effects {
            if let Some(t) = watch(&fx) {
                return Some(t);
            }
            if let Some((level, line)) = pending.take() {
                self.show(level, &line);
            }
            if let Effect::Log(level, line) = fx {
                pending = Some((level, line));
            }
        }
        if let Some((level, line)) = pending {
            self.show(level, &line);
        }
        None
    }

    fn show(&self, level: Level, line: &str) {
        match level {
            Level::Error | Level::Warn => self.progress.warn(line),
            Level::Info => self.progress.info(line),
            Level::Debug => self.progress.debug(line),
        }
    }
}

/// A request path without its query (a signed listing's query is long and says nothing).
fn path_only(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}
