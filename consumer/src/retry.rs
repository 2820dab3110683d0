//! The one retry helper of the consumer: capped exponential backoff with jitter.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often and how long to wait between attempts at a call that failed transiently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles for each further attempt.
    pub initial_delay: Duration,
    /// Longest wait between two attempts.
    pub max_delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    /// The wait before attempt `attempt` (1-based; attempt 1 does not wait): the
    /// doubled delay, capped, with up to a quarter taken off at random so that
    /// concurrent consumers do not retry in lockstep.
    pub fn delay(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let doublings = (attempt - 2).min(16);
        let full = self
            .initial_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay);
        let jitter_quarters = u64::from(jitter_seed() % 1000);
        full.saturating_sub(full.mul_f64(jitter_quarters as f64 / 4000.0))
    }

    /// Sleeps before attempt `attempt`.
    pub async fn wait(&self, attempt: u32) {
        let delay = self.delay(attempt);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

/// A cheap, non-cryptographic source of jitter.
fn jitter_seed() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_at_most_a_quarter_of_jitter() {
        let backoff = Backoff {
            max_attempts: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        assert_eq!(backoff.delay(1), Duration::ZERO);
        for (attempt, full_ms) in [(2, 100), (3, 200), (4, 400), (5, 500), (9, 500)] {
            let delay = backoff.delay(attempt);
            let full = Duration::from_millis(full_ms);
            assert!(delay <= full, "attempt {attempt}: {delay:?}");
            assert!(delay >= full.mul_f64(0.75), "attempt {attempt}: {delay:?}");
        }
    }
}
