//! Settings of the Redis core-data backend, shared by the host and the consumer.

use std::time::Duration;

use settings::{CredentialUrl, InvalidSetting, Secret, ensure};

/// Where core data lives in Redis; unset `REDIS_URL` means the in-process table (host)
/// or no core data (consumer).
#[derive(Clone, Debug, clap::Args)]
pub struct RedisConfig {
    /// Redis for core data, e.g. `redis://127.0.0.1:6379` or `rediss://host:6379`
    /// (ElastiCache with TLS).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<CredentialUrl>,
    /// Redis AUTH token (ElastiCache), unless the URL carries a password.
    #[arg(long, env = "REDIS_AUTH_TOKEN", hide_env_values = true)]
    pub redis_auth_token: Option<Secret>,
    /// Timeout of one Redis command and of connecting, in milliseconds.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 1_000)]
    pub redis_timeout_ms: u64,
    /// Seconds between pings on the update subscription: a connection that does not
    /// answer within `REDIS_TIMEOUT_MS` is replaced, so a half-open one cannot
    /// silently stop the updates.
    #[arg(long, env = "REDIS_KEEPALIVE_SECS", default_value_t = 10)]
    pub redis_keepalive_secs: u64,
}

impl RedisConfig {
    /// Checks what clap cannot: the URL scheme and a positive timeout.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if let Some(url) = &self.redis_url {
            ensure(
                matches!(url.scheme(), Some("redis" | "rediss")),
                "REDIS_URL",
                "must start with redis:// or rediss://",
            )?;
        }
        ensure(
            self.redis_timeout_ms > 0,
            "REDIS_TIMEOUT_MS",
            "must be positive",
        )?;
        ensure(
            self.redis_keepalive_secs > 0,
            "REDIS_KEEPALIVE_SECS",
            "must be positive",
        )
    }

    /// Timeout of one Redis command.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    /// Time between pings on the update subscription.
    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.redis_keepalive_secs)
    }
}
