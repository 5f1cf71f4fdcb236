//! The registry conformance battery on the in-memory registry.

mod common;

conformance_tests!(common::MemoryHarness::new());
