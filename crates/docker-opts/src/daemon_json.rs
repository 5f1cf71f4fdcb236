//! Docker's `daemon.json`: the same settings as the command-line options,
//! merged into an existing file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use subnet_core::subnet_env::{write_file_atomic, WriteError};

use crate::options::DockerOptions;

/// Default path of `daemon.json` for Docker on Linux.
pub const DEFAULT_DAEMON_JSON_PATH: &str = "/etc/docker/daemon.json";

/// Error from [`merge`]: the existing text is not a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DaemonJsonError {
    /// The existing text is not valid JSON.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Syntax {
        /// Line number, counted from 1.
        line: usize,
        /// Column number, counted from 1.
        column: usize,
        /// The JSON parser's description of the error.
        message: String,
    },
    /// The existing text is JSON but not an object.
    #[error("expected a JSON object at the top level, found {found}")]
    NotObject {
        /// The kind of value found, such as `an array`.
        found: &'static str,
    },
}

/// Error from [`merge_file`]. The file is unchanged whenever this is
/// returned.
#[derive(Debug, thiserror::Error)]
pub enum DaemonJsonFileError {
    /// The existing file could not be read.
    #[error("failed to read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The existing file is not a JSON object.
    #[error("invalid Docker daemon config {path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The problem with its contents.
        source: DaemonJsonError,
    },
    /// The merged file could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Merges `options` into the text of an existing `daemon.json`, or into an
/// empty object when `existing` is `None` or blank.
///
/// Sets `bip`, `mtu` and `ip-masq`, and `ipv6` and `fixed-cidr-v6` when IPv6
/// was selected. A setting that `options` does not carry (for example
/// `ip-masq` after [`crate::Selection::omit_ip_masq`]) leaves that key as it
/// was, and all other keys are kept with their values and order. Keys that
/// are new to the file follow the existing ones. The result is
/// pretty-printed with two-space indentation and ends with a newline.
pub fn merge(existing: Option<&str>, options: &DockerOptions) -> Result<String, DaemonJsonError> {
    let mut object = match existing {
        Some(text) if !text.trim().is_empty() => parse_object(text)?,
        _ => Map::new(),
    };

    object.insert("bip".to_owned(), Value::from(options.bip.to_string()));
    if let Some(mtu) = options.mtu {
        object.insert("mtu".to_owned(), Value::from(mtu));
    }
    if let Some(ip_masq) = options.ip_masq {
        object.insert("ip-masq".to_owned(), Value::from(ip_masq));
    }
    if let Some(subnet) = options.ipv6_subnet {
        object.insert("ipv6".to_owned(), Value::from(true));
        object.insert(
            "fixed-cidr-v6".to_owned(),
            Value::from(subnet.trunc().to_string()),
        );
    }

    let mut text = serde_json::to_string_pretty(&Value::Object(object))
        .expect("a JSON value built from strings, numbers and booleans always serializes");
    text.push('\n');
    Ok(text)
}

/// Merges `options` into the `daemon.json` at `path` and replaces the file
/// atomically. A missing file is created.
pub fn merge_file(path: &Path, options: &DockerOptions) -> Result<(), DaemonJsonFileError> {
    let existing = match fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(source) if source.kind() == io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(DaemonJsonFileError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };

    let merged =
        merge(existing.as_deref(), options).map_err(|source| DaemonJsonFileError::Invalid {
            path: path.to_owned(),
            source,
        })?;
    write_file_atomic(path, merged.as_bytes())?;
    Ok(())
}

fn parse_object(text: &str) -> Result<Map<String, Value>, DaemonJsonError> {
    let value: Value = serde_json::from_str(text).map_err(|error| DaemonJsonError::Syntax {
        line: error.line(),
        column: error.column(),
        message: syntax_message(&error),
    })?;

    match value {
        Value::Object(object) => Ok(object),
        Value::Null => Err(DaemonJsonError::NotObject { found: "null" }),
        Value::Bool(_) => Err(DaemonJsonError::NotObject { found: "a boolean" }),
        Value::Number(_) => Err(DaemonJsonError::NotObject { found: "a number" }),
        Value::String(_) => Err(DaemonJsonError::NotObject { found: "a string" }),
        Value::Array(_) => Err(DaemonJsonError::NotObject { found: "an array" }),
    }
}

/// Strips the parser's " at line L column C" suffix from its message,
/// because the error carries the position in fields.
fn syntax_message(error: &serde_json::Error) -> String {
    let full = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    full.strip_suffix(&suffix).unwrap_or(&full).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Selection;
    use subnet_core::subnet_env::SubnetEnv;

    fn options() -> DockerOptions {
        let env = SubnetEnv::parse(
            "FLANNEL_SUBNET=10.5.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
        )
        .unwrap();
        DockerOptions::from_subnet_env(&env, Selection::default()).unwrap()
    }

    #[test]
    fn merge_into_nothing() {
        let merged = merge(None, &options()).unwrap();
        assert_eq!(
            merged,
            "{\n  \"bip\": \"10.5.1.1/24\",\n  \"mtu\": 1450,\n  \"ip-masq\": true\n}\n"
        );
    }

    #[test]
    fn merge_keeps_other_keys() {
        let existing = r#"{"log-driver": "journald", "mtu": 9000, "labels": ["a"]}"#;
        let merged: Value =
            serde_json::from_str(&merge(Some(existing), &options()).unwrap()).unwrap();
        assert_eq!(merged["log-driver"], "journald");
        assert_eq!(merged["labels"], serde_json::json!(["a"]));
        assert_eq!(merged["mtu"], 1450);
    }

    #[test]
    fn merge_rejects_bad_json() {
        let error = merge(Some("{\n  \"bip\": \n}"), &options()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid JSON at line 3, column 1: expected value"
        );
    }

    #[test]
    fn merge_rejects_array() {
        let error = merge(Some("[1]"), &options()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "expected a JSON object at the top level, found an array"
        );
    }
}
