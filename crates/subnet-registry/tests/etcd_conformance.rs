//! The registry conformance battery on a real etcd server.

mod common;

conformance_tests!(common::EtcdHarness::start().await);
