//! The [`Scheduler`]: the world's clock and its queue of events in virtual time (ticks, call
//! answers, queue notifications, exchange timeouts), delivered in time order and, at the same
//! time, in the order they were scheduled. What an event does is the router's business
//! (`super::events`); the scheduler only keeps time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use crate::clock::Clock;
use crate::http::{CallFailure, HttpResponse};

/// How a dispatched call ends.
#[derive(Clone, Debug)]
pub(super) enum CallResult {
    /// The answer, and whether it came over the wire ([`crate::http::Handler::on_the_wire`]).
    Response(HttpResponse, bool),
    Failed(CallFailure),
}

/// A call's answer, due for delivery to the context that dispatched it.
#[derive(Clone, Debug)]
pub(super) struct CallDone {
    pub node: usize,
    pub worker: usize,
    pub generation: u64,
    pub token: u32,
    pub context: u32,
    pub result: CallResult,
    /// A second delivery of an answer already delivered (hostile profile).
    pub duplicate: bool,
}

/// Something due at a moment of virtual time.
#[derive(Clone, Debug)]
pub(super) enum Event {
    Tick {
        node: usize,
        worker: usize,
        root: u32,
        timer: u64,
    },
    CallDone(CallDone),
    QueueReady {
        node: usize,
        worker: usize,
        generation: u64,
        context: u32,
        queue: u32,
    },
    /// A paused exchange's `max_pause` is over (ignored if it resumed since: `seq`).
    ExchangeTimeout {
        id: usize,
        seq: u64,
    },
    /// A gRPC unary call's answer (Envoy profile).
    GrpcDone {
        node: usize,
        worker: usize,
        generation: u64,
        token: u32,
        context: u32,
        reply: crate::grpc::GrpcReply,
    },
}

struct Scheduled {
    due: Duration,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// The clock and the event queue. Only the scheduler moves the clock (forward, to each event
/// it hands out, then to the deadline); everyone else reads it.
pub(super) struct Scheduler {
    clock: Clock,
    events: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
}

impl Scheduler {
    pub(super) fn new(clock: Clock) -> Self {
        Scheduler {
            clock,
            events: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Virtual time since the world started.
    pub(super) fn now(&self) -> Duration {
        self.clock.elapsed()
    }

    /// Queues `event` for `due`; events due at the same time come out in this order.
    pub(super) fn schedule(&mut self, due: Duration, event: Event) {
        let seq = self.next_seq();
        self.events.push(Reverse(Scheduled { due, seq, event }));
    }

    /// A number never handed out before (the queue's order; the hostile profile's bogus ids).
    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// When the next event is due.
    pub(super) fn next_due(&self) -> Option<Duration> {
        self.events.peek().map(|Reverse(s)| s.due)
    }

    /// Events waiting.
    pub(super) fn len(&self) -> usize {
        self.events.len()
    }

    /// The next event due by `deadline`, with the clock moved to its time.
    pub(super) fn pop_due(&mut self, deadline: Duration) -> Option<Event> {
        if self.next_due()? > deadline {
            return None;
        }
        let Reverse(next) = self.events.pop()?;
        self.clock.set_elapsed(next.due);
        Some(next.event)
    }

    /// Moves the clock to `deadline` (never backward).
    pub(super) fn move_to(&mut self, deadline: Duration) {
        self.clock.set_elapsed(deadline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout(id: usize) -> Event {
        Event::ExchangeTimeout { id, seq: 0 }
    }

    fn id_of(event: Option<Event>) -> Option<usize> {
        match event {
            Some(Event::ExchangeTimeout { id, .. }) => Some(id),
            _ => None,
        }
    }

    #[test]
    fn events_come_out_in_time_order_then_in_the_order_scheduled() {
        let mut s = Scheduler::new(Clock::virtual_default());
        let ms = Duration::from_millis;
        s.schedule(ms(20), timeout(1));
        s.schedule(ms(10), timeout(2));
        s.schedule(ms(20), timeout(3));
        s.schedule(ms(10), timeout(4));
        assert_eq!((s.len(), s.next_due()), (4, Some(ms(10))));
        assert_eq!(id_of(s.pop_due(ms(15))), Some(2));
        assert_eq!(s.now(), ms(10), "the clock is at the event's time");
        assert_eq!(id_of(s.pop_due(ms(15))), Some(4));
        assert_eq!(id_of(s.pop_due(ms(15))), None, "not due by the deadline");
        s.move_to(ms(15));
        assert_eq!(s.now(), ms(15));
        assert_eq!(id_of(s.pop_due(ms(20))), Some(1));
        assert_eq!(id_of(s.pop_due(ms(20))), Some(3));
        assert_eq!(s.len(), 0);
        s.move_to(ms(5));
        assert_eq!(s.now(), ms(20), "the clock never goes back");
    }
}
