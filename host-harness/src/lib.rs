//! host-harness
pub use harness_mocks as mocks;
pub use harness_mocks::http;
