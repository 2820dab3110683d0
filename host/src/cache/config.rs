//! Settings of the cache stage: the Redis backend (unset: in-process) and the L1 size.

use std::time::Duration;

use core_data::RedisConfig;
use settings::{InvalidSetting, ensure};

/// Where core data lives and how much of it L1 keeps.
#[derive(Clone, Debug, clap::Args)]
pub struct CacheConfig {
    /// The Redis backend; without `REDIS_URL` core data stays in the process.
    #[command(flatten)]
    pub redis: RedisConfig,
    /// Most programs kept in the L1 cache.
    #[arg(long, env = "CACHE_CAPACITY", default_value_t = 100_000)]
    pub cache_capacity: u64,
    /// Seconds a program stays in L1 without a refresh.
    #[arg(long, env = "CACHE_TTL_SECS", default_value_t = 3_600)]
    pub cache_ttl_secs: u64,
    /// Seconds an unknown program is remembered as unknown before the backend is asked
    /// again.
    #[arg(long, env = "CACHE_NEGATIVE_TTL_SECS", default_value_t = 5)]
    pub cache_negative_ttl_secs: u64,
}

impl CacheConfig {
    /// Checks the Redis settings and that L1 can hold something for some time.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.redis.validate()?;
        ensure(
            self.cache_capacity > 0,
            "CACHE_CAPACITY",
            "must be positive",
        )?;
        ensure(
            self.cache_ttl_secs > 0,
            "CACHE_TTL_SECS",
            "must be positive",
        )?;
        ensure(
            self.cache_negative_ttl_secs > 0,
            "CACHE_NEGATIVE_TTL_SECS",
            "must be positive",
        )
    }

    /// How long a program stays in L1 without a refresh.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs)
    }

    /// How long L1 remembers that a program does not exist.
    pub fn negative_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_negative_ttl_secs)
    }
}
