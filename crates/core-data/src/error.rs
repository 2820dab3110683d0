//! Why core data could not be read or written, and whether retrying can help.

use std::time::Duration;

use retry_policy::{Classify, ErrorKind};

/// The core-data backend could not answer.
#[derive(Debug, thiserror::Error)]
pub enum CoreDataError {
    /// `REDIS_URL` (with its token) is not a usable Redis address.
    #[error("invalid REDIS_URL: {0}")]
    InvalidUrl(#[source] ::redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// The pub/sub connection closed.
    #[error("the redis subscription closed")]
    SubscriptionClosed,
}

impl Classify for CoreDataError {
    fn kind(&self) -> ErrorKind {
        match self {
            CoreDataError::InvalidUrl(_) => ErrorKind::AuthOrConfig,
            CoreDataError::Timeout(_) | CoreDataError::SubscriptionClosed => ErrorKind::Transient,
            CoreDataError::Redis(error) => redis_kind(error),
        }
    }
}

fn redis_kind(error: &::redis::RedisError) -> ErrorKind {
    use ::redis::ErrorKind as Redis;
    if error.kind() == Redis::AuthenticationFailed {
        ErrorKind::AuthOrConfig
    } else if error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_io_error()
    {
        ErrorKind::Transient
    } else {
        match error.retry_method() {
            ::redis::RetryMethod::NoRetry => ErrorKind::Permanent,
            _ => ErrorKind::Transient,
        }
    }
}

/// A program's core data could not be updated.
#[derive(Debug, thiserror::Error)]
#[error("cannot update core data of program {program_id}: {source}")]
pub struct CoreDataUpdateError {
    /// The program whose update failed.
    pub program_id: String,
    /// The underlying error, kept as the source.
    #[source]
    pub source: CoreDataError,
}

impl Classify for CoreDataUpdateError {
    fn kind(&self) -> ErrorKind {
        self.source.kind()
    }
}
