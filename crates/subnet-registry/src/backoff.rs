//! Exponential backoff for retries.

use std::time::Duration;

/// Delays that double from `initial` up to `max`, with up to a quarter of
/// random jitter so that hosts retrying together spread out.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// Returns the delay before the next attempt and doubles the following.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = delay.mul_f64(rand::random::<f64>() * 0.25);
        delay - jitter
    }

    /// Starts over from the initial delay after a success.
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}
