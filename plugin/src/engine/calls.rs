//! The call table: which sub-machine owns each call in flight, and until when it may wait.
//! At most one call per owner is in flight — `open` refuses a second one, so the rule does not
//! rest on each caller checking first — a tick emits at most one request per sub-machine and
//! the table stays tiny. Ids are never reused for the life of a root context (a late answer
//! to an abandoned call must not match a new one).

/// Identifies one dispatched call inside the core (the shell maps host tokens to it).
pub type CallId = u64;

/// The sub-machine a call belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The store's prerequisite (a token), sent before any other request of the store.
    Store,
    Export,
    Source,
    Import,
    Election,
    /// The withdrawal of this node's registration when its configuration is replaced
    /// (`Engine::stop`): sent even while an election round is in flight, whose answer stays the
    /// election's.
    Withdrawal,
    /// History objects: record, list, prune (docs/history.md).
    History,
}

#[derive(Clone, Debug)]
struct Entry {
    id: CallId,
    owner: Owner,
    deadline: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct CallTable {
    next_id: CallId,
    entries: Vec<Entry>,
}

impl Default for CallTable {
    fn default() -> Self {
        CallTable {
            next_id: 1,
            entries: Vec::new(),
        }
    }
}

impl CallTable {
    /// Registers a new call of `owner`, answerable until `deadline`; `None` (nothing registered)
    /// while `owner` has a call in flight.
    pub(crate) fn open(&mut self, owner: Owner, deadline: u64) -> Option<CallId> {
        if self.busy(owner) {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.entries.push(Entry {
            id,
            owner,
            deadline,
        });
        Some(id)
    }

    pub(crate) fn busy(&self, owner: Owner) -> bool {
        self.entries.iter().any(|e| e.owner == owner)
    }

    /// The owner of an answered call, removing it; `None` for a late or unknown answer.
    pub(crate) fn take(&mut self, id: CallId) -> Option<Owner> {
        let at = self.entries.iter().position(|e| e.id == id)?;
        Some(self.entries.swap_remove(at).owner)
    }

    /// The owner of a call in flight, without taking it.
    pub(crate) fn owner(&self, id: CallId) -> Option<Owner> {
        self.entries.iter().find(|e| e.id == id).map(|e| e.owner)
    }

    /// Calls whose deadline passed (hosts that never call back), removed.
    pub(crate) fn expired(&mut self, now: u64) -> Vec<(CallId, Owner)> {
        let (gone, kept): (Vec<Entry>, Vec<Entry>) =
            self.entries.drain(..).partition(|e| now >= e.deadline);
        self.entries = kept;
        gone.into_iter().map(|e| (e.id, e.owner)).collect()
    }

    /// Continues the id sequence of a previous table (a reconfigured root context).
    pub(crate) fn continue_ids(&mut self, previous: &CallTable) {
        self.next_id = self.next_id.max(previous.next_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_owners_tracked_and_deadlines_expire() {
        let mut t = CallTable::default();
        let a = t.open(Owner::Export, 100).unwrap();
        let b = t.open(Owner::Source, 50).unwrap();
        assert_ne!(a, b);
        assert!(t.busy(Owner::Export) && t.busy(Owner::Source) && !t.busy(Owner::Import));
        assert_eq!(t.expired(49), vec![]);
        assert_eq!(t.expired(50), vec![(b, Owner::Source)]);
        assert_eq!(t.take(b), None, "expired calls are gone");
        assert_eq!(t.take(a), Some(Owner::Export));
        assert_eq!(t.take(a), None, "answered once");
        let c = t.open(Owner::Export, 10).unwrap();
        assert!(c > a);
        let mut next = CallTable::default();
        next.continue_ids(&t);
        assert!(next.open(Owner::Export, 1).unwrap() > c);
    }

    #[test]
    fn a_second_call_of_an_owner_is_refused_until_the_first_is_answered() {
        let mut t = CallTable::default();
        let a = t.open(Owner::Election, 100).unwrap();
        assert_eq!(t.open(Owner::Election, 100), None);
        // Another owner is not held up, and the withdrawal has a slot of its own.
        let w = t.open(Owner::Withdrawal, 100).unwrap();
        assert_eq!(t.take(a), Some(Owner::Election));
        assert_eq!(t.take(w), Some(Owner::Withdrawal));
        assert!(t.open(Owner::Election, 100).is_some());
        assert_eq!(t.entries.len(), 1);
    }
}
