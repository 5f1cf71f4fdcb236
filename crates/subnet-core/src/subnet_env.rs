//! The `subnet.env` file that flanneld writes and Docker's set-up reads.
//!
//! The file is a list of shell variable assignments, one per line:
//!
//! ```text
//! FLANNEL_NETWORK=172.16.0.0/16
//! FLANNEL_SUBNET=172.16.37.1/24
//! FLANNEL_MTU=1472
//! FLANNEL_IPMASQ=false
//! ```
//!
//! A dual-stack host adds `FLANNEL_IPV6_NETWORK` and `FLANNEL_IPV6_SUBNET`.
//! [`SubnetEnv::render`] writes the variables in that order and
//! [`SubnetEnv::parse`] reads them back. Shell scripts such as
//! `mk-docker-opts.sh` source the file, and systemd units load it as an
//! environment file, so it is replaced atomically by [`write_file_atomic`]. A
//! reader sees either the old file or the new one, never a half-written one.

use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use ipnet::{Ipv4Net, Ipv6Net};

/// Name of the whole IPv4 overlay's variable.
pub const FLANNEL_NETWORK: &str = "FLANNEL_NETWORK";
/// Name of this host's IPv4 subnet variable.
pub const FLANNEL_SUBNET: &str = "FLANNEL_SUBNET";
/// Name of the overlay MTU variable.
pub const FLANNEL_MTU: &str = "FLANNEL_MTU";
/// Name of the variable for flanneld's IP masquerading (`true` or `false`).
pub const FLANNEL_IPMASQ: &str = "FLANNEL_IPMASQ";
/// Name of the whole IPv6 overlay's variable.
pub const FLANNEL_IPV6_NETWORK: &str = "FLANNEL_IPV6_NETWORK";
/// Name of this host's IPv6 subnet variable.
pub const FLANNEL_IPV6_SUBNET: &str = "FLANNEL_IPV6_SUBNET";

/// Smallest MTU accepted in `FLANNEL_MTU`: the minimum every IPv4 link must
/// carry (RFC 791).
pub const MIN_MTU: u32 = 68;

/// The variables of a `subnet.env` file.
///
/// Every field is optional because flanneld leaves out what does not apply
/// (the IPv6 variables on an IPv4-only network, the IPv4 ones on an
/// IPv6-only network).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubnetEnv {
    /// `FLANNEL_NETWORK`: the whole overlay.
    pub network: Option<Ipv4Net>,
    /// `FLANNEL_SUBNET`: this host's first address with the lease's prefix.
    pub subnet: Option<Ipv4Net>,
    /// `FLANNEL_MTU`: the overlay MTU in bytes.
    pub mtu: Option<u32>,
    /// `FLANNEL_IPMASQ`: whether flanneld masquerades traffic leaving the
    /// overlay.
    pub ipmasq: Option<bool>,
    /// `FLANNEL_IPV6_NETWORK`.
    pub ipv6_network: Option<Ipv6Net>,
    /// `FLANNEL_IPV6_SUBNET`: this host's first IPv6 address with the
    /// lease's prefix.
    pub ipv6_subnet: Option<Ipv6Net>,
}

/// Error from [`SubnetEnv::parse`]: the first line that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line is neither blank, a `#` comment nor `NAME=value`.
    #[error("line {line}: expected NAME=value, a # comment or a blank line, found {text:?}")]
    Syntax {
        /// Line number, counted from 1.
        line: usize,
        /// The line as found.
        text: String,
    },
    /// A known variable has a value of the wrong form.
    #[error("line {line}: invalid {name} value {value:?}: expected {expected}")]
    InvalidValue {
        /// Line number, counted from 1.
        line: usize,
        /// The variable, such as `FLANNEL_MTU`.
        name: &'static str,
        /// The value as found, without quotes.
        value: String,
        /// A description of the valid values.
        expected: &'static str,
    },
    /// A known variable is assigned twice. A shell would keep the last value
    /// silently, which hides a broken file, so this is rejected.
    #[error("line {line}: {name} is set again; it was first set on line {first_line}")]
    Duplicate {
        /// Line number of the second assignment, counted from 1.
        line: usize,
        /// The variable.
        name: &'static str,
        /// Line number of the first assignment.
        first_line: usize,
    },
}

/// Error from [`SubnetEnv::read`].
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file does not exist. flanneld writes it once it holds a lease.
    #[error("subnet.env {path} not found; flanneld writes it once it holds a lease")]
    NotFound {
        /// The path that was read.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("failed to read subnet.env {path}: {source}")]
    Io {
        /// The path that was read.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file was read but a line is not valid.
    #[error("invalid subnet.env {path}: {source}")]
    Parse {
        /// The path that was read.
        path: PathBuf,
        /// The first invalid line.
        source: ParseError,
    },
}

impl ReadError {
    /// The path of the file that could not be read.
    pub fn path(&self) -> &Path {
        match self {
            ReadError::NotFound { path }
            | ReadError::Io { path, .. }
            | ReadError::Parse { path, .. } => path,
        }
    }
}

/// Error from [`write_file_atomic`] and [`SubnetEnv::write_atomic`]. The file
/// at the target path is unchanged whenever this is returned.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The target path has no file name, such as `/` or `..`.
    #[error("cannot write {path}: the path does not name a file")]
    NotAFilePath {
        /// The target path.
        path: PathBuf,
    },
    /// The folder of the target could not be created.
    #[error("failed to create folder {path}: {source}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The temporary file next to the target could not be created, written
    /// or flushed to disk.
    #[error("failed to write temporary file {path}: {source}")]
    WriteTemp {
        /// The temporary file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The temporary file could not be renamed over the target.
    #[error("failed to rename {from} to {to}: {source}")]
    Rename {
        /// The temporary file.
        from: PathBuf,
        /// The target path.
        to: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl SubnetEnv {
    /// Renders the file: one `NAME=value` line for each variable that is
    /// set, in the order `FLANNEL_NETWORK`, `FLANNEL_SUBNET`, `FLANNEL_MTU`,
    /// `FLANNEL_IPMASQ`, `FLANNEL_IPV6_NETWORK`, `FLANNEL_IPV6_SUBNET`.
    ///
    /// Values are written as they are. [`SubnetEnv::parse`] reads the result
    /// back unchanged when `mtu` is at least [`MIN_MTU`].
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = self.write_lines(&mut out);
        out
    }

    fn write_lines(&self, out: &mut String) -> fmt::Result {
        if let Some(network) = self.network {
            writeln!(out, "{FLANNEL_NETWORK}={network}")?;
        }
        if let Some(subnet) = self.subnet {
            writeln!(out, "{FLANNEL_SUBNET}={subnet}")?;
        }
        if let Some(mtu) = self.mtu {
            writeln!(out, "{FLANNEL_MTU}={mtu}")?;
        }
        if let Some(ipmasq) = self.ipmasq {
            writeln!(out, "{FLANNEL_IPMASQ}={ipmasq}")?;
        }
        if let Some(network) = self.ipv6_network {
            writeln!(out, "{FLANNEL_IPV6_NETWORK}={network}")?;
        }
        if let Some(subnet) = self.ipv6_subnet {
            writeln!(out, "{FLANNEL_IPV6_SUBNET}={subnet}")?;
        }
        Ok(())
    }

    /// Parses the text of a `subnet.env` file.
    ///
    /// Accepts blank lines, `#` comments and `NAME=value` lines, where the
    /// value may be wrapped in one pair of double or single quotes. Unknown
    /// variables are ignored, so that files from newer writers still read.
    /// A known variable with an invalid value, a known variable set twice or
    /// a line of another form is an error naming the line.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut env = SubnetEnv::default();
        let mut first_lines: [Option<usize>; 6] = [None; 6];

        for (index, raw_line) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw_line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }

            let Some((name, raw_value)) = trimmed.split_once('=') else {
                return Err(syntax_error(line, raw_line));
            };
            if !is_variable_name(name) {
                return Err(syntax_error(line, raw_line));
            }
            let Some(value) = unquote(raw_value) else {
                return Err(syntax_error(line, raw_line));
            };

            let Some(slot) = VARIABLES.iter().position(|known| *known == name) else {
                continue;
            };
            let name = VARIABLES[slot];
            if let Some(first_line) = first_lines[slot] {
                return Err(ParseError::Duplicate {
                    line,
                    name,
                    first_line,
                });
            }
            first_lines[slot] = Some(line);

            env.set(name, value, line)?;
        }
        Ok(env)
    }

    fn set(&mut self, name: &'static str, value: &str, line: usize) -> Result<(), ParseError> {
        let invalid = |expected| ParseError::InvalidValue {
            line,
            name,
            value: value.to_owned(),
            expected,
        };
        match name {
            FLANNEL_NETWORK => {
                self.network = Some(value.parse().map_err(|_| invalid(EXPECTED_IPV4_NETWORK))?);
            }
            FLANNEL_SUBNET => {
                self.subnet = Some(value.parse().map_err(|_| invalid(EXPECTED_IPV4_SUBNET))?);
            }
            FLANNEL_MTU => {
                let mtu = value.parse::<u32>().ok().filter(|mtu| *mtu >= MIN_MTU);
                self.mtu = Some(mtu.ok_or_else(|| invalid(EXPECTED_MTU))?);
            }
            FLANNEL_IPMASQ => {
                // The shell scripts that read this file compare with the exact
                // words, so `True` or `1` would be silently misread there.
                let ipmasq = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid(EXPECTED_BOOL)),
                };
                self.ipmasq = Some(ipmasq);
            }
            FLANNEL_IPV6_NETWORK => {
                self.ipv6_network =
                    Some(value.parse().map_err(|_| invalid(EXPECTED_IPV6_NETWORK))?);
            }
            FLANNEL_IPV6_SUBNET => {
                self.ipv6_subnet = Some(value.parse().map_err(|_| invalid(EXPECTED_IPV6_SUBNET))?);
            }
            _ => unreachable!("every name in VARIABLES has a branch"),
        }
        Ok(())
    }

    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Self, ReadError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(source) if source.kind() == io::ErrorKind::NotFound => {
                return Err(ReadError::NotFound {
                    path: path.to_owned(),
                });
            }
            Err(source) => {
                return Err(ReadError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        SubnetEnv::parse(&text).map_err(|source| ReadError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Renders the file and writes it to `path` with [`write_file_atomic`].
    pub fn write_atomic(&self, path: &Path) -> Result<(), WriteError> {
        write_file_atomic(path, self.render().as_bytes())
    }
}

impl FromStr for SubnetEnv {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        SubnetEnv::parse(text)
    }
}

/// Known variables, in the order [`SubnetEnv::render`] writes them.
const VARIABLES: [&str; 6] = [
    FLANNEL_NETWORK,
    FLANNEL_SUBNET,
    FLANNEL_MTU,
    FLANNEL_IPMASQ,
    FLANNEL_IPV6_NETWORK,
    FLANNEL_IPV6_SUBNET,
];

const EXPECTED_IPV4_NETWORK: &str = "an IPv4 network with a prefix length, such as 172.16.0.0/16";
const EXPECTED_IPV4_SUBNET: &str = "an IPv4 address with a prefix length, such as 172.16.37.1/24";
const EXPECTED_MTU: &str = "a whole number of bytes from 68 to 4294967295";
const EXPECTED_BOOL: &str = "true or false";
const EXPECTED_IPV6_NETWORK: &str = "an IPv6 network with a prefix length, such as fc00::/48";
const EXPECTED_IPV6_SUBNET: &str = "an IPv6 address with a prefix length, such as fc00:0:0:1::1/64";

fn syntax_error(line: usize, text: &str) -> ParseError {
    ParseError::Syntax {
        line,
        text: text.to_owned(),
    }
}

/// Checks whether `name` is a shell variable name: a letter or `_`, then letters,
/// digits or `_`.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Strips one pair of matching quotes. Returns `None` for an unbalanced
/// quote, which a shell would reject too.
fn unquote(value: &str) -> Option<&str> {
    for quote in ['"', '\''] {
        if let Some(rest) = value.strip_prefix(quote) {
            return rest
                .strip_suffix(quote)
                .filter(|inner| !inner.contains(quote));
        }
    }
    Some(value)
}

/// Writes `contents` to `path` so that a reader sees either the old file or
/// the new one, never a partial file.
///
/// Creates the folder of `path` if needed, writes a temporary file in that
/// folder, flushes it to disk, renames it over `path` and then flushes the
/// folder so that the rename survives a crash. When `path` already exists,
/// the new file gets its permission bits; otherwise the usual default (0666
/// less the umask). A symbolic link at `path` is replaced by the new file,
/// not followed. On any error the temporary file is removed and the file at
/// `path` is left as it was.
pub fn write_file_atomic(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    let Some(file_name) = path.file_name() else {
        return Err(WriteError::NotAFilePath {
            path: path.to_owned(),
        });
    };
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(|source| WriteError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;

    let temp_path = dir.join(temp_file_name(file_name));
    let written = write_temp(&temp_path, path, contents).map_err(|source| WriteError::WriteTemp {
        path: temp_path.clone(),
        source,
    });
    if let Err(error) = written {
        let _ = fs::remove_file(&temp_path);
        return Err(error);
    }

    if let Err(source) = fs::rename(&temp_path, path) {
        let _ = fs::remove_file(&temp_path);
        return Err(WriteError::Rename {
            from: temp_path,
            to: path.to_owned(),
            source,
        });
    }

    // The new file is in place. A failed folder sync only weakens crash
    // durability, so it is not reported as a failed write.
    if let Ok(dir_handle) = File::open(dir) {
        let _ = dir_handle.sync_all();
    }
    Ok(())
}

fn write_temp(temp_path: &Path, target: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp_path)?;
    if let Ok(metadata) = fs::metadata(target) {
        file.set_permissions(metadata.permissions())?;
    }
    file.write_all(contents)?;
    file.sync_all()
}

/// Builds a hidden file name next to the target, unique within this process
/// and across processes, so that concurrent writers never share a temporary file.
fn temp_file_name(file_name: &std::ffi::OsStr) -> OsString {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);

    let mut name = OsString::from(".");
    name.push(file_name);
    name.push(format!(".{}.{count}.tmp", std::process::id()));
    name
}
