//! Core data in Redis (ElastiCache): a connection manager with timeouts, one Lua script
//! per program that counts new message ids, moves `lastSeenMs` forward and publishes
//! the program id, and `HGETALL` lookups for plugins.

use std::time::Duration;

use async_trait::async_trait;
use plugin_engine::{CoreDataError, CoreDataLookup, CoreRecord};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, Script};

use super::{CoreDataUpdateError, CoreDataUpdates, ProgramActivity, names};

/// Counts a program's new message ids atomically, only if the program exists.
/// KEYS: program hash, counted-ids set. ARGV: last seen ms, set TTL, channel, program id,
/// field names (count, last seen), then the message ids.
/// Returns the number of ids newly counted, or -1 when the program does not exist.
const RECORD_ACTIVITY: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local added = 0
for i = 7, #ARGV do
  added = added + redis.call('SADD', KEYS[2], ARGV[i])
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
local changed = false
if added > 0 then
  redis.call('HINCRBY', KEYS[1], ARGV[5], added)
  changed = true
end
local last = tonumber(redis.call('HGET', KEYS[1], ARGV[6]) or '0') or 0
if tonumber(ARGV[1]) > last then
  redis.call('HSET', KEYS[1], ARGV[6], ARGV[1])
  changed = true
end
if changed then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return added
";

/// Core data in Redis: updates for the consumer and lookups for its plugins. Cheap to
/// clone; reconnects on its own.
#[derive(Clone)]
pub struct RedisCoreData {
    connection: ConnectionManager,
    script: Script,
}

/// Redis could not be reached at start.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to Redis at {url}: {reason}")]
pub struct RedisConnectError {
    /// The host part of the URL, without credentials.
    pub url: String,
    /// Why.
    pub reason: String,
}

impl RedisCoreData {
    /// Connects to `url`, authenticating with `auth_token` when given; every command and
    /// the connection itself time out after `timeout`.
    pub async fn connect(
        url: &str,
        auth_token: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, RedisConnectError> {
        let error = |reason: String| RedisConnectError {
            url: host_of(url),
            reason,
        };
        let mut info: redis::ConnectionInfo = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(|e| error(e.to_string()))?;
        if let Some(token) = auth_token {
            let redis_settings = info.redis_settings().clone().set_password(token);
            info = info.set_redis_settings(redis_settings);
        }
        if url.starts_with("rediss://") {
            // The AWS SDK and redis both link rustls; name the process-wide provider once.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let client = Client::open(info).map_err(|e| error(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2));
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| error(e.to_string()))?;
        Ok(Self {
            connection,
            script: Script::new(RECORD_ACTIVITY),
        })
    }

    async fn record_one(&self, activity: &ProgramActivity) -> redis::RedisResult<i64> {
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(names::program_key(&activity.program_id))
            .key(names::counted_set_key(&activity.program_id))
            .arg(activity.last_seen_ms)
            .arg(names::COUNTED_SET_TTL_SECS)
            .arg(names::UPDATES_CHANNEL)
            .arg(&activity.program_id)
            .arg(names::EVENT_COUNT_FIELD)
            .arg(names::LAST_SEEN_FIELD);
        for id in &activity.message_ids {
            invocation.arg(id);
        }
        let mut connection = self.connection.clone();
        invocation.invoke_async(&mut connection).await
    }
}

#[async_trait]
impl CoreDataUpdates for RedisCoreData {
    async fn record_activity(
        &self,
        activity: &[ProgramActivity],
    ) -> Result<(), CoreDataUpdateError> {
        for program in activity {
            match self.record_one(program).await {
                Ok(-1) => {
                    tracing::warn!(program = %program.program_id, "activity for a program without core data ignored")
                }
                Ok(added) => {
                    tracing::debug!(program = %program.program_id, added, "core data updated")
                }
                Err(error) => {
                    return Err(CoreDataUpdateError {
                        program_id: program.program_id.clone(),
                        reason: error.to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl CoreDataLookup for RedisCoreData {
    async fn lookup(&self, key: &str) -> Result<Option<CoreRecord>, CoreDataError> {
        let mut connection = self.connection.clone();
        let fields: Vec<(String, String)> = connection
            .hgetall(names::program_key(key))
            .await
            .map_err(|error| CoreDataError(format!("Redis HGETALL failed: {error}")))?;
        Ok((!fields.is_empty()).then_some(fields))
    }
}

/// The host part of a Redis URL, without credentials, for error messages.
fn host_of(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((_, host)) => host.to_owned(),
        None => url.to_owned(),
    }
}
