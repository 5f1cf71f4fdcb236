//! The JSON bodies of the etcd v2 keys API and the error codes the
//! registry acts on (etcd's `error/error.go` in the v2 store).

use std::time::{Duration, SystemTime};

use hyper::StatusCode;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

use super::client::Reply;
use crate::error::RegistryError;
use crate::registry::{Expiry, Revision};

/// "Key not found".
pub(super) const KEY_NOT_FOUND: u32 = 100;
/// "Compare failed": `prevIndex` or `prevValue` did not match.
pub(super) const COMPARE_FAILED: u32 = 101;
/// "Not a file": the key is a directory.
pub(super) const NOT_A_FILE: u32 = 102;
/// "Key already exists": `prevExist=false` found the key.
pub(super) const KEY_EXISTS: u32 = 105;
/// "The event in requested index is outdated and cleared": the store keeps
/// only its last 1000 events.
pub(super) const INDEX_CLEARED: u32 = 401;

/// Characters left as they are in a key path: `/` separates the levels.
const PATH_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Characters left as they are in a form or query value.
const VALUE_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Returns the API path of a key, such as `/v2/keys/coreos.com/network/config`.
pub(super) fn key_url(key: &str) -> String {
    format!("/v2/keys{}", utf8_percent_encode(key, PATH_KEEP))
}

/// Encodes one form or query value.
pub(super) fn encode_value(value: &str) -> String {
    utf8_percent_encode(value, VALUE_KEEP).to_string()
}

/// The body of a successful response: what was done and to which node.
#[derive(Debug, Deserialize)]
pub(super) struct ActionReply {
    /// `get`, `set`, `create`, `update`, `compareAndSwap`, `delete`,
    /// `compareAndDelete` or `expire`.
    pub(super) action: String,
    pub(super) node: Node,
}

/// A key or a directory.
#[derive(Debug, Deserialize)]
pub(super) struct Node {
    pub(super) key: String,
    #[serde(default)]
    pub(super) value: Option<String>,
    #[serde(default)]
    pub(super) dir: bool,
    #[serde(default)]
    pub(super) nodes: Vec<Node>,
    /// RFC 3339 time at which the key expires, by the etcd leader's clock.
    #[serde(default)]
    pub(super) expiration: Option<String>,
    /// Whole seconds left, rounded up.
    #[serde(default)]
    pub(super) ttl: Option<i64>,
    #[serde(rename = "modifiedIndex", default)]
    pub(super) modified_index: Revision,
}

impl Node {
    /// When the key expires: never without a TTL (a reservation), else at
    /// `expiration`. A node whose expiration cannot be read expires `ttl`
    /// seconds from now.
    pub(super) fn expiry(&self) -> Expiry {
        let parsed = self
            .expiration
            .as_deref()
            .and_then(|text| humantime::parse_rfc3339(text).ok());
        match (parsed, self.ttl) {
            (Some(time), _) => Expiry::At(time),
            (None, Some(seconds)) => Expiry::At(
                SystemTime::now() + Duration::from_secs(u64::try_from(seconds).unwrap_or(0)),
            ),
            (None, None) => Expiry::Never,
        }
    }
}

/// The body of an error response. etcd's authentication layer sends only a
/// message, without a code.
#[derive(Debug, Deserialize)]
pub(super) struct ErrorReply {
    #[serde(rename = "errorCode", default)]
    pub(super) error_code: u32,
    #[serde(default)]
    pub(super) message: String,
    #[serde(default)]
    pub(super) cause: String,
}

impl ErrorReply {
    /// Returns whether the requested watch index is no longer in etcd's
    /// history.
    pub(super) fn is_index_cleared(&self, status: StatusCode) -> bool {
        status == StatusCode::BAD_REQUEST && self.error_code == INDEX_CLEARED
    }
}

/// A successful response or an etcd error.
#[derive(Debug)]
pub(super) enum Outcome {
    Done(ActionReply),
    Failed(StatusCode, ErrorReply),
}

impl Outcome {
    /// Parses `reply`'s body by its status.
    pub(super) fn parse(
        reply: &Reply,
        operation: &'static str,
        key: &str,
    ) -> Result<Self, RegistryError> {
        let parsed = if reply.status.is_success() {
            serde_json::from_slice(&reply.body).map(Self::Done)
        } else {
            serde_json::from_slice(&reply.body).map(|error| Self::Failed(reply.status, error))
        };
        // etcd 3.4 without `--enable-v2=true` has no route for /v2/keys.
        if parsed.is_err() && reply.status == StatusCode::NOT_FOUND {
            return Err(RegistryError::UnexpectedResponse {
                operation,
                key: key.to_owned(),
                detail: "HTTP 404 Not Found: this etcd does not serve the v2 API; \
                         start etcd with --enable-v2=true"
                    .to_owned(),
            });
        }
        parsed.map_err(|error| RegistryError::UnexpectedResponse {
            operation,
            key: key.to_owned(),
            detail: format!(
                "HTTP {} with a body that is not etcd v2 JSON ({error}): {}",
                reply.status,
                String::from_utf8_lossy(&reply.body).trim()
            ),
        })
    }
}

/// Builds the error for an etcd error response that the operation does not
/// expect, such as rejected credentials.
pub(super) fn unexpected(
    operation: &'static str,
    key: &str,
    status: StatusCode,
    error: &ErrorReply,
) -> RegistryError {
    let mut detail = format!("HTTP {status}");
    if error.error_code != 0 {
        detail.push_str(&format!(", etcd error {}", error.error_code));
    }
    detail.push_str(&format!(": {}", error.message));
    if !error.cause.is_empty() {
        detail.push_str(&format!(" ({})", error.cause));
    }
    RegistryError::UnexpectedResponse {
        operation,
        key: key.to_owned(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_reads_go_time_format() {
        let node = Node {
            key: "/a".into(),
            value: Some("v".into()),
            dir: false,
            nodes: Vec::new(),
            expiration: Some("2026-12-05T20:34:18.3798134Z".into()),
            ttl: Some(86400),
            modified_index: 6,
        };
        let expected = SystemTime::UNIX_EPOCH + Duration::new(1_796_502_858, 379_813_400);
        assert_eq!(node.expiry(), Expiry::At(expected));
    }

    #[test]
    fn node_without_ttl_never_expires() {
        let node: Node = serde_json::from_str(
            r#"{"key":"/coreos.com/network/subnets/10.5.7.0-24","value":"{}","modifiedIndex":7,"createdIndex":7}"#,
        )
        .unwrap();
        assert_eq!(node.expiry(), Expiry::Never);
        assert_eq!(node.modified_index, 7);
    }

    #[test]
    fn key_url_escapes_dual_stack_key() {
        assert_eq!(
            key_url("/coreos.com/network/subnets/10.5.1.0-24&fc00:0:0:1::-64"),
            "/v2/keys/coreos.com/network/subnets/10.5.1.0-24%26fc00%3A0%3A0%3A1%3A%3A-64"
        );
    }

    #[test]
    fn form_value_escapes_json() {
        assert_eq!(
            encode_value(r#"{"PublicIP":"10.0.0.1"}"#),
            "%7B%22PublicIP%22%3A%2210.0.0.1%22%7D"
        );
    }
}
