//! Core data: the per-program records (name, customer, checksum, counters) that the
//! host serves from its L1 cache and the consumer updates as events are stored.
//!
//! Both sides use one pair of traits, so one backend serves both: [`CoreDataStore`]
//! (read, write, remove, follow changes; the host's cache stage) and
//! [`CoreDataUpdates`] (count stored events per program, idempotent per message id;
//! the consumer). [`RedisCoreData`] is ElastiCache at scale; [`InProcessCoreData`] is
//! the embedded default and the tests' stand-in. The Redis names are in
//! [`contract::redis_names`].
#![deny(missing_docs)]

mod config;
mod error;
mod in_process;
mod redis;

use async_trait::async_trait;
use plugin_engine::CoreRecord;
use serde::Serialize;
use tokio::sync::mpsc;

pub use config::RedisConfig;
pub use error::{CoreDataError, CoreDataUpdateError};
pub use in_process::InProcessCoreData;
pub use redis::RedisCoreData;

/// Change notifications buffered per subscriber before older ones are dropped (a
/// dropped notification only delays freshness until the L1 TTL).
pub const UPDATE_BUFFER: usize = 1024;

/// Where core data lives: the backend behind the host's L1 cache.
#[async_trait]
pub trait CoreDataStore: Send + Sync {
    /// The record stored under `key`, `None` if there is none.
    async fn fetch(&self, key: &str) -> Result<Option<CoreRecord>, CoreDataError>;
    /// Sets the fields of `record` under `key` (other fields stay, as Redis `HSET`)
    /// and notifies subscribers.
    async fn store(&self, key: &str, record: &CoreRecord) -> Result<(), CoreDataError>;
    /// Removes the record under `key` and notifies subscribers.
    async fn remove(&self, key: &str) -> Result<(), CoreDataError>;
    /// Follows changes: the receiver yields the key of every record that changed; an
    /// empty key means "anything may have changed" (sent after a reconnection).
    fn subscribe(&self) -> mpsc::Receiver<String>;
    /// Whether the backend is reachable, for `/health/check`.
    fn status(&self) -> BackendStatus;
}

/// Where program activity is recorded and announced. Updates are idempotent per message
/// id, so a redelivered record is not counted twice. Only programs that exist in core
/// data are updated; activity for unknown programs is ignored, so a consumer never
/// makes up a program the host would then serve.
#[async_trait]
pub trait CoreDataUpdates: Send + Sync {
    /// Adds `activity` to each program's core data and notifies subscribers of every
    /// program that changed.
    async fn record_activity(
        &self,
        activity: &[ProgramActivity],
    ) -> Result<(), CoreDataUpdateError>;
}

/// What one batch stored for one program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramActivity {
    /// The program.
    pub program_id: String,
    /// Ids of the stored events; an id already counted is not counted again.
    pub message_ids: Vec<String>,
    /// The newest event's timestamp, ms since the Unix epoch.
    pub last_seen_ms: u64,
}

/// A backend's health as `/health/check` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendStatus {
    /// `redis` or `in-process`.
    pub backend: &'static str,
    /// Whether the last operation reached the backend.
    pub connected: bool,
    /// The last error, while disconnected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// No core data to update (the consumer without Redis).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCoreDataUpdates;

#[async_trait]
impl CoreDataUpdates for NoCoreDataUpdates {
    async fn record_activity(
        &self,
        _activity: &[ProgramActivity],
    ) -> Result<(), CoreDataUpdateError> {
        Ok(())
    }
}
