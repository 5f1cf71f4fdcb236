//! The test server's error when the etcd binary is missing. This runs in a
//! test binary of its own because it empties PATH for the whole process.

use subnet_registry::testing::{EtcdServer, EtcdServerError};

#[test]
fn missing_etcd_names_package() {
    let empty = tempfile::tempdir().unwrap();
    std::env::set_var("PATH", empty.path());

    let error = EtcdServer::start().unwrap_err();

    assert!(matches!(error, EtcdServerError::NotInstalled), "{error:?}");
    assert_eq!(
        error.to_string(),
        "etcd not found on PATH: apt-get install etcd-server"
    );
}
