//! What kind of failure an error is, and the one retry policy every stage uses.
//!
//! A stage's error says what went wrong for people (its `Display`) and, through
//! [`Classify`], what the code should do about it: retry a throttle or a transient
//! fault, never retry a permanent refusal or a missing permission. [`RetryPolicy`]
//! retries only the retryable kinds, with capped exponential backoff and jitter
//! (`backon`).
#![deny(missing_docs)]

#[cfg(feature = "aws")]
pub mod aws;

use std::error::Error;
use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder, Retryable};

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
    pub fn delays(&self) -> ExponentialBackoff {
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

    /// Runs `operation` until it succeeds, fails with a kind that is not retryable,
    /// or the attempts are used up; returns its last result.
    pub async fn retry<T, E, Op, Fut>(&self, operation: Op) -> Result<T, E>
    where
        E: Classify,
        Op: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let builder = *self;
        operation
            .retry(PolicyBuilder(builder))
            .when(|error: &E| error.kind().is_retryable())
            .await
    }
}

/// Adapts a [`RetryPolicy`] to backon's builder trait.
#[derive(Clone, Copy, Debug)]
struct PolicyBuilder(RetryPolicy);

impl BackoffBuilder for PolicyBuilder {
    type Backoff = ExponentialBackoff;

    fn build(self) -> Self::Backoff {
        self.0.delays()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Debug)]
    struct Failure(ErrorKind);

    impl Classify for Failure {
        fn kind(&self) -> ErrorKind {
            self.0
        }
    }

    fn fast(max_attempts: usize) -> RetryPolicy {
        RetryPolicy {
            max_attempts: Some(max_attempts),
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    async fn attempts_until_done(kind: ErrorKind, policy: RetryPolicy) -> usize {
        let attempts = AtomicUsize::new(0);
        let result: Result<(), Failure> = policy
            .retry(|| async {
                attempts.fetch_add(1, Ordering::Relaxed);
                Err(Failure(kind))
            })
            .await;
        assert!(result.is_err());
        attempts.into_inner()
    }

    #[tokio::test]
    async fn throttles_and_transient_faults_are_retried_up_to_the_limit() {
        assert_eq!(attempts_until_done(ErrorKind::Throttled, fast(4)).await, 4);
        assert_eq!(attempts_until_done(ErrorKind::Transient, fast(2)).await, 2);
    }

    #[tokio::test]
    async fn permanent_and_auth_failures_are_tried_once() {
        assert_eq!(attempts_until_done(ErrorKind::Permanent, fast(4)).await, 1);
        assert_eq!(
            attempts_until_done(ErrorKind::AuthOrConfig, fast(4)).await,
            1
        );
    }

    #[tokio::test]
    async fn a_call_that_recovers_returns_its_success() {
        let attempts = AtomicUsize::new(0);
        let result = fast(5)
            .retry(|| async {
                match attempts.fetch_add(1, Ordering::Relaxed) {
                    0 | 1 => Err(Failure(ErrorKind::Throttled)),
                    n => Ok(n),
                }
            })
            .await;
        assert_eq!(result.unwrap(), 2);
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
}
