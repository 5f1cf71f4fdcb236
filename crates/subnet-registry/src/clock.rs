//! Time as the registry and the lease manager see it, passed in so that
//! expiries and renewals can be tested without sleeping.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

/// A source of wall-clock time that can also wait for a moment to come.
pub trait Clock: Clone + Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// Resolves once [`now`](Clock::now) is at or past `deadline`.
    fn sleep_until(&self, deadline: SystemTime) -> impl Future<Output = ()> + Send;
}

/// The operating system's clock, waiting with tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    async fn sleep_until(&self, deadline: SystemTime) {
        // Re-check after each sleep: the wall clock may be stepped while
        // tokio's monotonic timer runs.
        loop {
            let Ok(left) = deadline.duration_since(SystemTime::now()) else {
                return;
            };
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left).await;
        }
    }
}

/// A clock that moves only when the caller advances it, shared by every clone.
///
/// Tasks waiting in [`sleep_until`](Clock::sleep_until) wake when
/// [`advance`](ManualClock::advance) or [`set`](ManualClock::set) reaches
/// their deadline.
#[derive(Debug, Clone)]
pub struct ManualClock {
    time: Arc<watch::Sender<SystemTime>>,
}

impl ManualClock {
    /// Creates a clock that reads `start` until moved.
    pub fn new(start: SystemTime) -> Self {
        Self {
            time: Arc::new(watch::Sender::new(start)),
        }
    }

    /// Moves the clock forward by `step`.
    pub fn advance(&self, step: Duration) {
        self.time.send_modify(|time| *time += step);
    }

    /// Sets the clock to `time`, which may be earlier than now.
    pub fn set(&self, time: SystemTime) {
        self.time.send_replace(time);
    }
}

impl Default for ManualClock {
    /// A clock at 2026-01-01T00:00:00Z, so that test output is stable.
    fn default() -> Self {
        Self::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.time.borrow()
    }

    async fn sleep_until(&self, deadline: SystemTime) {
        let mut receiver = self.time.subscribe();
        // The sender lives as long as `self`, so `wait_for` cannot fail
        // while we hold `&self`.
        let _ = receiver.wait_for(|now| *now >= deadline).await;
    }
}
