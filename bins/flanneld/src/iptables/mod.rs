//! Keeping flanneld's iptables rules in place by running the `iptables`
//! program.
//!
//! Each rule set lives in a chain of its own ([`rules::ChainSpec`]) with one
//! jump from a built-in chain. Installing flushes and refills only that
//! chain; checking restores it when its rules or the jump went missing.
//! Rules in other chains are never touched.

pub mod rules;

use std::ffi::OsString;
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::{oneshot, watch};

pub use rules::{ChainSpec, JumpAt};

/// Seconds iptables waits for the xtables lock held by another program.
const LOCK_WAIT_SECONDS: &str = "5";

/// An iptables command failed.
#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    /// The program could not be started.
    #[error(
        "running {program} failed: {source}; is iptables installed (apt-get install iptables)?"
    )]
    Spawn {
        /// The program.
        program: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The program ran and reported an error.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its error output, trimmed.
        stderr: String,
    },
}

/// The outcome of [`Iptables::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Every rule and the jump were in place.
    Intact,
    /// Something was missing and has been put back.
    Restored,
}

/// Runs iptables; the command can be prefixed, e.g. with
/// `ip netns exec NAME`.
#[derive(Debug, Clone)]
pub struct Iptables {
    command: Vec<OsString>,
}

impl Default for Iptables {
    fn default() -> Self {
        Self::new()
    }
}

impl Iptables {
    /// Runs `iptables` from `PATH`.
    pub fn new() -> Self {
        Self::with_command(vec!["iptables".into()])
    }

    /// Runs `command` (program and leading arguments) in place of
    /// `iptables`.
    pub fn with_command(command: Vec<OsString>) -> Self {
        assert!(!command.is_empty(), "an iptables command needs a program");
        Self { command }
    }

    fn describe(&self, args: &[&str]) -> String {
        let mut words: Vec<String> = self
            .command
            .iter()
            .map(|word| word.to_string_lossy().into_owned())
            .collect();
        words.extend(args.iter().map(|arg| quote(arg)));
        words.join(" ")
    }

    /// Runs iptables with `args`; the exit status decides success.
    async fn output(&self, args: &[&str]) -> Result<Output, IptablesError> {
        Command::new(&self.command[0])
            .args(&self.command[1..])
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| IptablesError::Spawn {
                program: self.command[0].to_string_lossy().into_owned(),
                source,
            })
    }

    async fn run(&self, args: &[&str]) -> Result<Output, IptablesError> {
        let output = self.output(args).await?;
        if !output.status.success() {
            return Err(IptablesError::Failed {
                command: self.describe(args),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(output)
    }

    /// Returns whether this iptables supports MASQUERADE's `--random-fully`
    /// option.
    pub async fn supports_random_fully(&self) -> bool {
        match self.output(&["-j", "MASQUERADE", "--help"]).await {
            Ok(output) => String::from_utf8_lossy(&output.stdout).contains("--random-fully"),
            Err(_) => false,
        }
    }

    /// Lists the rules in `spec.chain` as `iptables -S` prints them; `None`
    /// when the chain does not exist.
    async fn list(&self, spec: &ChainSpec) -> Result<Option<Vec<String>>, IptablesError> {
        let args = ["-w", LOCK_WAIT_SECONDS, "-t", spec.table, "-S", spec.chain];
        let output = self.output(&args).await?;
        if !output.status.success() {
            return Ok(None);
        }
        let prefix = format!("-A {} ", spec.chain);
        let rules = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| line.starts_with(&prefix))
            .map(str::to_owned)
            .collect();
        Ok(Some(rules))
    }

    async fn exists(
        &self,
        table: &str,
        chain: &str,
        rule: &[String],
    ) -> Result<bool, IptablesError> {
        let mut args = vec!["-w", LOCK_WAIT_SECONDS, "-t", table, "-C", chain];
        args.extend(rule.iter().map(String::as_str));
        Ok(self.output(&args).await?.status.success())
    }

    /// Creates the chain if needed, replaces its rules with `spec.rules`
    /// and adds the jump if it is missing. Returns the chain as iptables
    /// lists it, the reference for later checks.
    pub async fn install(&self, spec: &ChainSpec) -> Result<Installed, IptablesError> {
        let base = ["-w", LOCK_WAIT_SECONDS, "-t", spec.table];
        if self.list(spec).await?.is_none() {
            self.run(&[&base[..], &["-N", spec.chain]].concat()).await?;
        }
        self.run(&[&base[..], &["-F", spec.chain]].concat()).await?;
        for rule in &spec.rules {
            let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
            self.run(&[&base[..], &["-A", spec.chain], &rule[..]].concat())
                .await?;
        }
        self.ensure_jump(spec).await?;
        let listing = self.list(spec).await?.unwrap_or_default();
        Ok(Installed {
            spec: spec.clone(),
            listing,
        })
    }

    /// Adds the jump into `spec.chain` unless it exists; true if added.
    async fn ensure_jump(&self, spec: &ChainSpec) -> Result<bool, IptablesError> {
        let jump = spec.jump();
        if self.exists(spec.table, spec.parent, &jump).await? {
            return Ok(false);
        }
        let jump: Vec<&str> = jump.iter().map(String::as_str).collect();
        let base = ["-w", LOCK_WAIT_SECONDS, "-t", spec.table];
        let position: &[&str] = match spec.jump_at {
            JumpAt::First => &["-I", spec.parent, "1"],
            JumpAt::Last => &["-A", spec.parent],
        };
        self.run(&[&base[..], position, &jump[..]].concat()).await?;
        Ok(true)
    }

    /// Puts back whatever of an installed rule set is missing. The chain is
    /// refilled when its listing differs from the one taken at install time
    /// (a rule missing, moved or added), and the jump is added when missing.
    pub async fn check(&self, installed: &mut Installed) -> Result<Checked, IptablesError> {
        let listing = self.list(&installed.spec).await?;
        if listing.as_ref() != Some(&installed.listing) {
            *installed = self.install(&installed.spec).await?;
            return Ok(Checked::Restored);
        }
        if self.ensure_jump(&installed.spec).await? {
            return Ok(Checked::Restored);
        }
        Ok(Checked::Intact)
    }
}

/// A rule set as installed, with the chain's listing right after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The rule set.
    pub spec: ChainSpec,
    /// `iptables -S` lines of the chain, in order.
    pub listing: Vec<String>,
}

/// Quotes a word for a shell-like command line in messages.
fn quote(word: &str) -> String {
    if !word.is_empty() && !word.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
        return word.to_owned();
    }
    format!("{word:?}")
}

/// Installs the rule sets from `specs` and re-checks them every `interval`,
/// re-installing when `specs` changes (a new lease), until `specs` closes.
/// Failures are logged and retried at the next interval. `first_pass` is
/// completed once the first installation was attempted.
pub async fn keep(
    iptables: Iptables,
    mut specs: watch::Receiver<Vec<ChainSpec>>,
    interval: Duration,
    first_pass: Option<oneshot::Sender<()>>,
) {
    let mut first_pass = first_pass;
    let mut installed: Vec<Installed> = Vec::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wanted = specs.borrow_and_update().clone();
        installed.retain(|done| wanted.contains(&done.spec));
        for spec in &wanted {
            let (table, chain) = (spec.table, spec.chain);
            match installed.iter_mut().find(|done| &done.spec == spec) {
                Some(done) => match iptables.check(done).await {
                    Ok(Checked::Intact) => {}
                    Ok(Checked::Restored) => {
                        tracing::warn!(
                            table,
                            chain,
                            "iptables rules were missing or changed and have been restored"
                        );
                    }
                    Err(error) => {
                        tracing::error!(table, chain, %error, "checking iptables rules failed; retrying");
                    }
                },
                None => match iptables.install(spec).await {
                    Ok(done) => {
                        tracing::info!(
                            table,
                            chain,
                            rules = spec.rules.len(),
                            "iptables rules installed"
                        );
                        installed.push(done);
                    }
                    Err(error) => {
                        tracing::error!(table, chain, %error, "installing iptables rules failed; retrying");
                    }
                },
            }
        }

        if let Some(done) = first_pass.take() {
            let _ = done.send(());
        }

        tokio::select! {
            _ = ticker.tick() => {}
            changed = specs.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
