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
        )
    }

    /// Timeout of one Redis command.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }
}
