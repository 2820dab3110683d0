//! What kind of failure an error is, and the one retry policy every stage uses.
//!
//! A stage's error says what went wrong for people (its `Display`) and, through
//! [`Classify`], what the code should do about it: retry a throttle or a transient
//! fault, never retry a permanent refusal or a missing permission. [`RetryPolicy`] is
//! the one schedule of waits (capped exponential backoff with jitter, from `backon`)
//! every retry loop of the workspace draws from; each loop retries only the kinds that
//! [`ErrorKind::is_retryable`] allows.
#![deny(missing_docs)]

#[cfg(feature = "aws")]
pub mod aws;

use std::error::Error;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The waits of one retry loop ([`RetryPolicy::delays`]).
pub use backon::ExponentialBackoff as Delays;

/// What kind of failure an error is, which decides whether retrying can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The backend asked us to slow down (throttling, provisioned throughput exceeded).
    Throttled,
    /// A passing fault: a timeout, a dropped connection, a 5xx.
    Transient,
    /// The request itself is refused and will be refused again (invalid input, too large).
    Permanent,
    /// Credentials, permissions or configuration are wrong (access denied, no such
    /// stream or table): no retry helps until an operator fixes it.
    AuthOrConfig,
}

impl ErrorKind {
    /// Whether trying the same call again may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Throttled | ErrorKind::Transient)
    }

    /// The kind as it appears in logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Throttled => "throttled",
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
            ErrorKind::AuthOrConfig => "auth-or-config",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error that knows what kind of failure it is.
pub trait Classify {
    /// The kind of failure.
    fn kind(&self) -> ErrorKind;
}

/// A failure as a stage reports it: a sentence for people (no request ids or raw
/// responses), its kind for the code, and the underlying error as its source.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ClassifiedError {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl ClassifiedError {
    /// A failure of `kind` described by `message`, with no underlying error (e.g. a
    /// per-record error code).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A failure of `kind` described by `message`, caused by `source`.
    pub fn caused_by(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

impl Classify for ClassifiedError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// How often and how long to wait between attempts at a call that failed retryably.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; `None` retries until the call succeeds.
    pub max_attempts: Option<usize>,
    /// Wait before the second attempt; doubles for each further attempt.
    pub first_delay: Duration,
    /// Longest wait between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Six attempts, 50 ms doubling up to 5 s: about 3 s of retries in all.
    fn default() -> Self {
        Self {
            max_attempts: Some(6),
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// A policy that never gives up (for reconnection loops), waiting `first_delay`
    /// doubling up to `max_delay`.
    pub fn forever(first_delay: Duration, max_delay: Duration) -> Self {
        Self {
            max_attempts: None,
            first_delay,
            max_delay,
        }
    }

    /// The waits between attempts, with jitter: an iterator that ends when the
    /// attempts are used up.
    pub fn delays(&self) -> Delays {
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_jitter();
        match self.max_attempts {
            Some(attempts) => builder.with_max_times(attempts.saturating_sub(1)),
            None => builder.without_max_times(),
        }
        .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_allows_its_attempts_less_one_waits_within_its_bounds() {
        let policy = RetryPolicy {
            max_attempts: Some(4),
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        };
        let delays: Vec<Duration> = policy.delays().collect();
        assert_eq!(delays.len(), 3);
        assert!(
            delays
                .iter()
                .all(|delay| *delay <= Duration::from_millis(8))
        );
    }

    #[test]
    fn a_forever_policy_never_runs_out_of_delays() {
        let policy = RetryPolicy::forever(Duration::from_millis(1), Duration::from_millis(4));
        let delays: Vec<Duration> = policy.delays().take(100).collect();
        assert_eq!(delays.len(), 100);
        assert!(
            delays
                .iter()
                .all(|delay| *delay <= Duration::from_millis(8))
        );
    }

    #[test]
    fn only_throttles_and_transient_faults_are_retryable() {
        assert!(ErrorKind::Throttled.is_retryable());
        assert!(ErrorKind::Transient.is_retryable());
        assert!(!ErrorKind::Permanent.is_retryable());
        assert!(!ErrorKind::AuthOrConfig.is_retryable());
    }
}
