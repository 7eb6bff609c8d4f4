//! The callbacks a hostile profile ([`crate::hostile`]) adds or takes away: answers for tokens
//! never issued, callbacks for contexts that do not exist, answers delivered twice (a lost
//! answer is the sending worker's: `worker::outbox`). Each is decided by the world's seeded dice
//! and recorded.

use super::scheduler::CallDone;
use super::World;
use crate::abi::{CallResponseData, Callback};
use crate::hostile::Injection;

/// Tokens and context ids no world ever issues (they count up from 1).
const BOGUS_TOKEN: u32 = 0xF000_0000;
const BOGUS_CONTEXT: u32 = 0xC000_0000;

impl World {
    /// Hostile: before a call's answer, an answer for a token the guest never received, on the
    /// same context if it is still alive, with zero headers and zero body.
    pub(super) fn hostile_unknown_token(&mut self, done: &CallDone) {
        if !self.is_hostile() {
            return;
        }
        let (n, w, context) = (done.node, done.worker, done.context);
        let Some(is_root) = self.nodes[n].workers[w].call_target(done.generation, context) else {
            return;
        };
        let token = self.bogus_id(BOGUS_TOKEN);
        let detail = || format!("token {token:#x} to context {context}");
        if self
            .inject_at(n, w, Injection::UnknownToken, detail)
            .is_some()
        {
            let data = CallResponseData::default();
            self.on_worker(n, w, |worker| {
                worker.call_back(context, token, is_root, data, [0, 0, 0])
            });
        }
    }

    /// Hostile: the answer just delivered comes again 1 ms later (if its context still exists).
    pub(super) fn hostile_duplicate(&mut self, done: CallDone) {
        let detail = || format!("token {} to context {}", done.token, done.context);
        let injected = self.inject_at(done.node, done.worker, Injection::DuplicateDelivery, detail);
        if injected.is_some() {
            self.schedule_duplicate(done);
        }
    }

    /// Hostile, after a tick: a callback for a context id that does not exist.
    pub(super) fn hostile_unknown_context(&mut self, n: usize, w: usize) {
        if !self.is_hostile() || !self.nodes[n].workers[w].is_running() {
            return;
        }
        let context = self.bogus_id(BOGUS_CONTEXT);
        let detail = || format!("context {context:#x}");
        let Some(kind) = self.inject_at(n, w, Injection::UnknownContext, detail) else {
            return;
        };
        let token = match kind {
            "on_tick" | "on_queue_ready" => 0,
            _ => self.bogus_id(BOGUS_TOKEN),
        };
        self.on_worker(n, w, |worker| match kind {
            "on_tick" => {
                let args = [context as i32];
                worker.invoke(Callback::Tick, context, "proxy_on_tick", &args);
            }
            "on_queue_ready" => {
                let args = [context as i32, 1];
                worker.invoke(Callback::QueueReady, context, "proxy_on_queue_ready", &args);
            }
            _ => {
                let data = CallResponseData::default();
                worker.call_back(context, token, false, data, [0, 0, 0]);
            }
        });
    }

    fn is_hostile(&self) -> bool {
        self.shared.profile.hostility.is_some()
    }

    fn inject_at(
        &self,
        n: usize,
        w: usize,
        kind: Injection,
        detail: impl FnOnce() -> String,
    ) -> Option<&'static str> {
        if !self.is_hostile() {
            return None;
        }
        let origin = self.nodes[n].workers[w].origin();
        self.shared.inject(origin, kind, detail)
    }

    /// A fresh id in a range the world never issues.
    fn bogus_id(&mut self, base: u32) -> u32 {
        base | (self.scheduler.next_seq() as u32 & 0x0FFF_FFFF)
    }
}
