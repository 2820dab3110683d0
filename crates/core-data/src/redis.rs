//! Core data in Redis (ElastiCache): `HGETALL program:{id}` reads, `HSET`/`DEL` writes
//! announced with `PUBLISH core-data-updates {id}`, one Lua script per program that
//! moves `eventCount` and `lastSeenMs` forward and publishes the program id, and
//! a subscription to the updates channel, pinged to find a half-open connection, that
//! reconnects with backoff.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use contract::redis_names;
use futures::StreamExt;
use plugin_engine::{CoreDataLookup, CoreRecord, LookupError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use retry_policy::RetryPolicy;
use settings::{CredentialUrl, Secret};
use tokio::sync::mpsc;

use crate::{
    BackendStatus, CoreDataError, CoreDataStore, CoreDataUpdateError, CoreDataUpdates,
    ProgramCount, RedisConfig, UPDATE_BUFFER,
};

/// Moves a program's count and last-seen time forward atomically, only if the program
/// exists, and announces the change. KEYS: program hash. ARGV: count field, count, last
/// seen field, last seen ms, channel, program id.
/// Returns 1 when the record changed, 0 when not, -1 when the program does not exist.
const PUBLISH_COUNT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local changed = 0
for i = 1, 3, 2 do
  local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0') or 0
  if tonumber(ARGV[i + 1]) > current then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    changed = 1
  end
end
if changed == 1 then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
return changed
";

/// Time between pings on a subscription, unless configured.
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(10);

/// Waits between attempts to (re)subscribe while Redis is away.
const RESUBSCRIBE: RetryPolicy = RetryPolicy {
    max_attempts: None,
    first_delay: Duration::from_millis(100),
    max_delay: Duration::from_secs(5),
};

/// Core data in Redis. Cheap to clone; connects lazily and reconnects on its own, so a
/// host starts (and serves what its L1 holds) while Redis is down.
#[derive(Clone)]
pub struct RedisCoreData {
    client: Client,
    connection: ConnectionManager,
    script: Script,
    timeout: Duration,
    keepalive: Duration,
    health: Arc<Health>,
}

#[derive(Default)]
struct Health {
    connected: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Health {
    fn record<T>(&self, result: &Result<T, CoreDataError>) {
        let mut last_error = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.connected.store(result.is_ok(), Ordering::Relaxed);
        *last_error = result.as_ref().err().map(ToString::to_string);
    }
}

impl RedisCoreData {
    /// A backend for the configured `REDIS_URL`, or `None` when it is unset.
    pub fn from_config(config: &RedisConfig) -> Result<Option<Self>, CoreDataError> {
        config
            .redis_url
            .as_ref()
            .map(|url| {
                Self::new(url, config.redis_auth_token.as_ref(), config.timeout())
                    .map(|redis| redis.with_keepalive(config.keepalive()))
            })
            .transpose()
    }

    /// A backend for the server at `url` (`redis://` or `rediss://`), authenticating
    /// with `auth_token` when given; every command and connection attempt times out
    /// after `timeout`. Does not connect yet: see [`RedisCoreData::ping`].
    pub fn new(
        url: &CredentialUrl,
        auth_token: Option<&Secret>,
        timeout: Duration,
    ) -> Result<Self, CoreDataError> {
        let mut info = redis::IntoConnectionInfo::into_connection_info(url.expose())
            .map_err(CoreDataError::InvalidUrl)?;
        if let Some(token) = auth_token {
            let redis_settings = info.redis_settings().clone().set_password(token.expose());
            info = info.set_redis_settings(redis_settings);
        }
        if url.scheme() == Some("rediss") {
            // The AWS SDK and redis both link rustls; name the process-wide provider once.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let client = Client::open(info).map_err(CoreDataError::InvalidUrl)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            client,
            connection,
            script: Script::new(PUBLISH_COUNT),
            timeout,
            keepalive: DEFAULT_KEEPALIVE,
            health: Arc::default(),
        })
    }

    /// The same backend pinging its subscriptions every `keepalive` (10 s unless set).
    pub fn with_keepalive(mut self, keepalive: Duration) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// A backend like [`RedisCoreData::new`] that has checked Redis answers (the
    /// consumer's cold start fails early when it does not).
    pub async fn connect(
        url: &CredentialUrl,
        auth_token: Option<&Secret>,
        timeout: Duration,
    ) -> Result<Self, CoreDataError> {
        let redis = Self::new(url, auth_token, timeout)?;
        redis.ping().await?;
        Ok(redis)
    }

    /// Checks that Redis answers.
    pub async fn ping(&self) -> Result<(), CoreDataError> {
        self.run::<String>(redis::cmd("PING")).await.map(drop)
    }

    /// Runs `command` with the timeout, recording the outcome for `/health/check`.
    async fn run<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> Result<T, CoreDataError> {
        let mut connection = self.connection.clone();
        self.bounded(command.query_async(&mut connection)).await
    }

    /// Awaits one Redis call under the timeout and records the outcome for `/health/check`.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, CoreDataError> {
        let limit = self.timeout * 2;
        let result = match tokio::time::timeout(limit, call).await {
            Ok(result) => result.map_err(CoreDataError::from),
            Err(_) => Err(CoreDataError::Timeout(limit)),
        };
        self.health.record(&result);
        result
    }

    async fn announce(&self, key: &str) -> Result<(), CoreDataError> {
        self.publish(redis_names::UPDATES_CHANNEL, key).await
    }

    /// Publishes `message` on `channel`.
    pub async fn publish(&self, channel: &str, message: &str) -> Result<(), CoreDataError> {
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(channel).arg(message);
        self.run::<i64>(publish).await.map(drop)
    }

    /// Follows `channel`: the receiver yields every message, and an empty one after each
    /// (re)subscription (anything may have been missed). Reconnects with backoff while
    /// Redis is away; stops when the receiver is dropped.
    pub fn follow_channel(&self, channel: &'static str) -> mpsc::Receiver<String> {
        let (sender, receiver) = mpsc::channel(UPDATE_BUFFER);
        let backend = self.clone();
        tokio::spawn(async move {
            loop {
                let mut delays = RESUBSCRIBE.delays();
                let ended = loop {
                    match backend.follow(channel, &sender).await {
                        Ok(ended) => break ended,
                        Err(error) => {
                            backend.health.record::<()>(&Err(error));
                            if sender.is_closed() {
                                return;
                            }
                            let delay = delays.next().unwrap_or(RESUBSCRIBE.max_delay);
                            tokio::time::sleep(delay).await;
                        }
                    }
                };
                match ended {
                    FollowEnd::ReceiverGone => return,
                    FollowEnd::Disconnected => {
                        tracing::warn!(channel, "redis subscription lost; resubscribing");
                    }
                }
            }
        });
        receiver
    }

    async fn publish_one(&self, count: &ProgramCount) -> Result<i64, CoreDataError> {
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(redis_names::program_key(&count.program_id))
            .arg(redis_names::EVENT_COUNT_FIELD)
            .arg(count.event_count)
            .arg(redis_names::LAST_SEEN_FIELD)
            .arg(count.last_seen_ms)
            .arg(redis_names::UPDATES_CHANNEL)
            .arg(&count.program_id);
        let mut connection = self.connection.clone();
        self.bounded(invocation.invoke_async(&mut connection)).await
    }
}

#[async_trait]
impl CoreDataStore for RedisCoreData {
    async fn fetch(&self, key: &str) -> Result<Option<CoreRecord>, CoreDataError> {
        let mut hgetall = redis::cmd("HGETALL");
        hgetall.arg(redis_names::program_key(key));
        let fields: HashMap<String, String> = self.run(hgetall).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let mut record: CoreRecord = fields.into_iter().collect();
        record.sort();
        Ok(Some(record))
    }

    async fn store(&self, key: &str, record: &CoreRecord) -> Result<(), CoreDataError> {
        let mut hset = redis::cmd("HSET");
        hset.arg(redis_names::program_key(key));
        for (field, value) in record {
            hset.arg(field).arg(value);
        }
        self.run::<i64>(hset).await?;
        self.announce(key).await
    }

    async fn remove(&self, key: &str) -> Result<(), CoreDataError> {
        let mut del = redis::cmd("DEL");
        del.arg(redis_names::program_key(key));
        self.run::<i64>(del).await?;
        self.announce(key).await
    }

    fn subscribe(&self) -> mpsc::Receiver<String> {
        self.follow_channel(redis_names::UPDATES_CHANNEL)
    }

    fn status(&self) -> BackendStatus {
        BackendStatus {
            backend: "redis",
            connected: self.health.connected.load(Ordering::Relaxed),
            last_error: self
                .health
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// How a subscription that was established ended.
enum FollowEnd {
    /// The receiver is gone: the process is shutting down.
    ReceiverGone,
    /// The connection dropped after it had been subscribed.
    Disconnected,
}

impl RedisCoreData {
    /// Subscribes to `channel` and forwards its messages until the connection drops,
    /// stops answering pings, or the receiver goes away. After a (re)connection anything
    /// may have been missed, so an empty message asks the subscriber to catch up.
    async fn follow(
        &self,
        channel: &'static str,
        sender: &mpsc::Sender<String>,
    ) -> Result<FollowEnd, CoreDataError> {
        let mut pubsub = tokio::time::timeout(self.timeout, self.client.get_async_pubsub())
            .await
            .map_err(|_| CoreDataError::Timeout(self.timeout))??;
        pubsub.subscribe(channel).await?;
        self.health.record::<()>(&Ok(()));
        tracing::info!(channel, "subscribed");
        if sender.send(String::new()).await.is_err() {
            return Ok(FollowEnd::ReceiverGone);
        }
        let (mut control, mut messages) = pubsub.split();
        let mut keepalive =
            tokio::time::interval_at(tokio::time::Instant::now() + self.keepalive, self.keepalive);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { break };
                    let Ok(id) = message.get_payload::<String>() else {
                        continue;
                    };
                    if sender.send(id).await.is_err() {
                        return Ok(FollowEnd::ReceiverGone);
                    }
                }
                _ = keepalive.tick() => {
                    let ping = tokio::time::timeout(self.timeout, control.ping::<redis::Value>());
                    if !matches!(ping.await, Ok(Ok(_))) {
                        tracing::warn!(channel, "redis subscription does not answer pings");
                        break;
                    }
                }
            }
        }
        self.health
            .record::<()>(&Err(CoreDataError::SubscriptionClosed));
        Ok(FollowEnd::Disconnected)
    }
}

#[async_trait]
impl CoreDataUpdates for RedisCoreData {
    async fn publish_counts(&self, counts: &[ProgramCount]) -> Result<(), CoreDataUpdateError> {
        for count in counts {
            match self.publish_one(count).await {
                Ok(-1) => tracing::warn!(
                    program = %count.program_id,
                    "count for a program without core data ignored"
                ),
                Ok(changed) => {
                    tracing::debug!(program = %count.program_id, count = count.event_count, changed, "core data updated")
                }
                Err(source) => {
                    return Err(CoreDataUpdateError {
                        program_id: count.program_id.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl CoreDataLookup for RedisCoreData {
    async fn lookup(&self, key: &str) -> Result<Option<CoreRecord>, LookupError> {
        self.fetch(key).await.map_err(LookupError::new)
    }
}
