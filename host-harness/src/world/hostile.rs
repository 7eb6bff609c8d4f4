//! The callbacks a hostile profile ([`crate::hostile`]) adds or takes away: lost answers, answers
//! for tokens never issued, callbacks for contexts that do not exist, answers delivered twice.
//! Each is decided by the world's seeded dice and recorded.

use std::time::Duration;

use super::scheduler::{CallDone, Event};
use super::World;
use crate::abi::{CallResponseData, Callback, PendingCall};
use crate::hostile::Injection;
use crate::record::Origin;

/// Tokens and context ids no world ever issues (they count up from 1).
const BOGUS_TOKEN: u32 = 0xF000_0000;
const BOGUS_CONTEXT: u32 = 0xC000_0000;

impl World {
    /// Hostile: this call is never answered. Returns whether it is lost.
    pub(super) fn hostile_lost_callback(&self, origin: &Origin, call: &PendingCall) -> bool {
        let detail = || format!("token {} to {}", call.token, call.upstream);
        self.shared
            .inject(origin, Injection::LostCallback, detail)
            .is_some()
    }

    /// Hostile: before a call's answer, an answer for a token the guest never received, on the
    /// same context if it is still alive, with zero headers and zero body.
    pub(super) fn hostile_unknown_token(&mut self, done: &CallDone) {
        if !self.is_hostile() {
            return;
        }
        let (n, w, context) = (done.node, done.worker, done.context);
        let Some(is_root) = self.call_target(n, w, done.generation, context) else {
            return;
        };
        let token = self.bogus_id(BOGUS_TOKEN);
        let detail = || format!("token {token:#x} to context {context}");
        if self
            .inject_at(n, w, Injection::UnknownToken, detail)
            .is_some()
        {
            let data = CallResponseData::default();
            self.call_back(n, w, context, token, is_root, data, [0, 0, 0]);
        }
    }

    /// Hostile: the answer just delivered comes again 1 ms later (if its context still exists).
    pub(super) fn hostile_duplicate(&mut self, done: CallDone) {
        let detail = || format!("token {} to context {}", done.token, done.context);
        let injected = self.inject_at(done.node, done.worker, Injection::DuplicateDelivery, detail);
        if injected.is_some() {
            let due = self.elapsed() + Duration::from_millis(1);
            let again = CallDone {
                duplicate: true,
                ..done
            };
            self.schedule(due, Event::CallDone(again));
        }
    }

    /// Hostile, after a tick: a callback for a context id that does not exist.
    pub(super) fn hostile_unknown_context(&mut self, n: usize, w: usize) {
        if !self.is_hostile() || self.nodes[n].workers[w].dead.is_some() {
            return;
        }
        let context = self.bogus_id(BOGUS_CONTEXT);
        let detail = || format!("context {context:#x}");
        match self.inject_at(n, w, Injection::UnknownContext, detail) {
            None => {}
            Some("on_tick") => {
                self.invoke(
                    n,
                    w,
                    Callback::Tick,
                    context,
                    "proxy_on_tick",
                    &[context as i32],
                );
            }
            Some("on_queue_ready") => {
                let args = [context as i32, 1];
                self.invoke(
                    n,
                    w,
                    Callback::QueueReady,
                    context,
                    "proxy_on_queue_ready",
                    &args,
                );
            }
            Some(_) => {
                let token = self.bogus_id(BOGUS_TOKEN);
                let data = CallResponseData::default();
                self.call_back(n, w, context, token, false, data, [0, 0, 0]);
            }
        }
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
        self.shared.inject(&self.origin(n, w), kind, detail)
    }

    /// A fresh id in a range the world never issues.
    fn bogus_id(&mut self, base: u32) -> u32 {
        self.seq += 1;
        base | (self.seq as u32 & 0x0FFF_FFFF)
    }
}
