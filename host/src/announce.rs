//! Announcing a new current release to the fleet on Redis. Best effort: every task also
//! polls the registry, so a lost announcement only delays a swap.

use async_trait::async_trait;
use contract::redis_names::RELEASES_CHANNEL;
use core_data::RedisCoreData;
use releases::Announcer;

/// Announces releases on Redis for the release runtime (a canary it aborts).
pub struct RedisAnnouncer(pub RedisCoreData);

#[async_trait]
impl Announcer for RedisAnnouncer {
    async fn announce(&self, number: u64) {
        announce(Some(&self.0), number).await;
    }
}

/// Publishes release `number` on the releases channel, when Redis is configured.
pub async fn announce(redis: Option<&RedisCoreData>, number: u64) {
    let Some(redis) = redis else {
        return;
    };
    match redis.publish(RELEASES_CHANNEL, &number.to_string()).await {
        Ok(()) => tracing::info!(release = number, "release announced"),
        Err(error) => tracing::warn!(
            release = number,
            %error,
            "cannot announce the release; tasks find it when they poll"
        ),
    }
}
