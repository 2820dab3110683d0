//! The Redis core-data backend: `HGETALL program:{id}`, updates announced with
//! `PUBLISH core-data-updates {id}`, and a subscription that reconnects with backoff.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use plugin_engine::{CoreDataError, CoreRecord};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use super::{BackendStatus, CoreDataBackend};

/// Prefix of the Redis hash holding one program's core data.
pub const KEY_PREFIX: &str = "program:";
/// Channel on which core-data changes are announced; the message is the program id.
pub const UPDATES_CHANNEL: &str = "core-data-updates";

const OPERATION_TIMEOUT: Duration = Duration::from_millis(500);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// Core data in Redis (ElastiCache at scale).
pub struct RedisBackend {
    client: redis::Client,
    connection: ConnectionManager,
    health: Arc<Health>,
}

#[derive(Default)]
struct Health {
    connected: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Health {
    fn record<T>(&self, result: &Result<T, CoreDataError>) {
        let mut last_error = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(_) => {
                self.connected.store(true, Ordering::Relaxed);
                *last_error = None;
            }
            Err(error) => {
                self.connected.store(false, Ordering::Relaxed);
                *last_error = Some(error.to_string());
            }
        }
    }
}

impl RedisBackend {
    /// A backend for the server at `url` (`redis://` or `rediss://`), authenticating
    /// with `auth_token` when given. Connects lazily: the host starts even while Redis is down.
    pub fn new(url: &str, auth_token: Option<&str>) -> Result<Self, CoreDataError> {
        let url = with_auth_token(url, auth_token);
        let client = redis::Client::open(url.as_str())
            .map_err(|error| CoreDataError(format!("invalid REDIS_URL: {error}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OPERATION_TIMEOUT))
            .set_response_timeout(Some(OPERATION_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let connection =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(redis_error)?;
        Ok(Self {
            client,
            connection,
            health: Arc::default(),
        })
    }

    /// Starts following `core-data-updates`; the receiver yields changed program ids.
    /// The subscription reconnects with exponential backoff while Redis is away.
    pub fn subscribe(&self) -> mpsc::Receiver<String> {
        let (sender, receiver) = mpsc::channel(1024);
        let client = self.client.clone();
        let health = self.health.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                match follow(&client, &sender, &health).await {
                    Ok(()) => return, // the receiver is gone: the host is shutting down
                    Err(error) => {
                        health.record::<()>(&Err(error));
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
                    }
                }
                if sender.is_closed() {
                    return;
                }
            }
        });
        receiver
    }

    async fn run<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> Result<T, CoreDataError> {
        let mut connection = self.connection.clone();
        let result =
            match tokio::time::timeout(OPERATION_TIMEOUT * 2, command.query_async(&mut connection))
                .await
            {
                Ok(result) => result.map_err(redis_error),
                Err(_) => Err(CoreDataError("redis did not answer in time".into())),
            };
        self.health.record(&result);
        result
    }

    async fn announce(&self, id: &str) -> Result<(), CoreDataError> {
        self.run::<i64>(redis::cmd("PUBLISH").arg(UPDATES_CHANNEL).arg(id).clone())
            .await
            .map(drop)
    }
}

/// Subscribes and forwards announcements until the connection drops (`Err`) or the
/// receiver goes away (`Ok`). After a (re)connection every cached key may be stale,
/// so an empty key asks the cache to refresh everything.
async fn follow(
    client: &redis::Client,
    sender: &mpsc::Sender<String>,
    health: &Health,
) -> Result<(), CoreDataError> {
    let mut pubsub = tokio::time::timeout(OPERATION_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| CoreDataError("redis did not answer in time".into()))?
        .map_err(redis_error)?;
    pubsub
        .subscribe(UPDATES_CHANNEL)
        .await
        .map_err(redis_error)?;
    health.record::<()>(&Ok(()));
    tracing::info!(channel = UPDATES_CHANNEL, "subscribed to core-data updates");
    if sender.send(String::new()).await.is_err() {
        return Ok(());
    }
    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        let Ok(id) = message.get_payload::<String>() else {
            continue;
        };
        if sender.send(id).await.is_err() {
            return Ok(());
        }
    }
    Err(CoreDataError("redis subscription closed".into()))
}

#[async_trait]
impl CoreDataBackend for RedisBackend {
    async fn fetch(&self, key: &str) -> Result<Option<CoreRecord>, CoreDataError> {
        let fields: HashMap<String, String> = self
            .run(
                redis::cmd("HGETALL")
                    .arg(format!("{KEY_PREFIX}{key}"))
                    .clone(),
            )
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let mut record: CoreRecord = fields.into_iter().collect();
        record.sort();
        Ok(Some(record))
    }

    async fn store(&self, key: &str, record: &CoreRecord) -> Result<(), CoreDataError> {
        let mut command = redis::cmd("HSET");
        command.arg(format!("{KEY_PREFIX}{key}"));
        for (field, value) in record {
            command.arg(field).arg(value);
        }
        self.run::<i64>(command).await?;
        self.announce(key).await
    }

    async fn remove(&self, key: &str) -> Result<(), CoreDataError> {
        self.run::<i64>(redis::cmd("DEL").arg(format!("{KEY_PREFIX}{key}")).clone())
            .await?;
        self.announce(key).await
    }

    fn status(&self) -> BackendStatus {
        BackendStatus {
            backend: "redis",
            connected: self.health.connected.load(Ordering::Relaxed),
            last_error: self
                .health
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

fn redis_error(error: redis::RedisError) -> CoreDataError {
    CoreDataError(format!("redis: {error}"))
}

/// `url` with `token` as its password (ElastiCache AUTH), unless the URL has credentials.
fn with_auth_token(url: &str, token: Option<&str>) -> String {
    match (token, url.split_once("://")) {
        (Some(token), Some((scheme, rest))) if !rest.contains('@') => {
            let encoded: String = token
                .bytes()
                .map(|byte| match byte {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (byte as char).to_string()
                    }
                    other => format!("%{other:02X}"),
                })
                .collect();
            format!("{scheme}://:{encoded}@{rest}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_token_becomes_the_url_password() {
        assert_eq!(
            with_auth_token("rediss://cache:6379", Some("s3cret!")),
            "rediss://:s3cret%21@cache:6379"
        );
        assert_eq!(
            with_auth_token("redis://:given@cache:6379", Some("other")),
            "redis://:given@cache:6379"
        );
        assert_eq!(with_auth_token("redis://cache", None), "redis://cache");
    }
}
