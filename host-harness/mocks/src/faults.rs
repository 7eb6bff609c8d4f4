//! Fault injection around any handler. API (fixed; implementation in progress):
//!   `Faulty::new(inner: SharedHandler) -> Faulty` (a `Handler`, cheap to clone, shared state),
//!   scripted faults (`push(Fault)` for the next request, `push_matching(pred, Fault)`),
//!   probabilistic faults with a seed, and `partition(node)` / `heal(node)`.
