//! The registry conformance battery on the etcd v2 keys API of a real etcd
//! server.

mod common;

conformance_tests!(common::EtcdV2Harness::start().await);
