//! The env file that `mk-docker-opts.sh` writes, byte for byte.

use std::fmt::Write as _;

use crate::options::DockerOptions;

/// Default name of the combined variable.
pub const DEFAULT_COMBINED_KEY: &str = "DOCKER_OPTS";

/// The layout of the env file: which kinds of line it has and the combined
/// variable's name and prefix.
///
/// The default writes both the individual lines and the combined line under
/// `DOCKER_OPTS` with no prefix, like the script without `-i` or `-c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFile {
    /// Write one `DOCKER_OPT_*="--flag=value"` line per option (`-i`).
    pub individual: bool,
    /// Write one line with every option under `combined_key` (`-c`).
    pub combined: bool,
    /// Name of the combined variable (`-k`).
    pub combined_key: String,
    /// Options that start the combined line: the value the combined variable
    /// already has in the environment, such as `--bridge=cbr0`.
    pub combined_prefix: String,
}

impl Default for EnvFile {
    fn default() -> Self {
        EnvFile {
            individual: true,
            combined: true,
            combined_key: DEFAULT_COMBINED_KEY.to_owned(),
            combined_prefix: String::new(),
        }
    }
}

/// Error from [`EnvFile::render`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvFileError {
    /// The combined key is not a shell variable name.
    #[error("invalid combined key {key:?}: expected a shell variable name (a letter or _, then letters, digits or _)")]
    InvalidKey {
        /// The key as given.
        key: String,
    },
    /// The prefix contains a character that would end or break the quoted
    /// value for the shells and systemd units that read the file.
    #[error("invalid value {prefix:?} of {key}: it must not contain a double quote, a backslash or a line break")]
    InvalidPrefix {
        /// The combined key the prefix came from.
        key: String,
        /// The prefix as given.
        prefix: String,
    },
}

impl EnvFile {
    /// Renders the env file for `options`.
    ///
    /// Individual lines come first, as `NAME="value"`, in the order of
    /// [`DockerOptions::flags`]. The combined line is
    /// `KEY="PREFIX --bip=… --ip-masq=… --mtu=… "`: the prefix, a space, and
    /// each option followed by a space, so it starts with a space when the
    /// prefix is empty.
    pub fn render(&self, options: &DockerOptions) -> Result<String, EnvFileError> {
        if self.combined {
            self.check_combined()?;
        }

        let flags = options.flags();
        let mut out = String::new();

        if self.individual {
            for flag in &flags {
                let _ = writeln!(out, "{}=\"{flag}\"", flag.variable());
            }
        }

        if self.combined {
            let mut value = format!("{} ", self.combined_prefix);
            for flag in &flags {
                let _ = write!(value, "{flag} ");
            }
            let _ = writeln!(out, "{}=\"{value}\"", self.combined_key);
        }
        Ok(out)
    }

    fn check_combined(&self) -> Result<(), EnvFileError> {
        if !subnet_core::subnet_env::is_variable_name(&self.combined_key) {
            return Err(EnvFileError::InvalidKey {
                key: self.combined_key.clone(),
            });
        }
        if self.combined_prefix.contains(['"', '\\', '\n', '\r']) {
            return Err(EnvFileError::InvalidPrefix {
                key: self.combined_key.clone(),
                prefix: self.combined_prefix.clone(),
            });
        }
        Ok(())
    }
}
