//! Core data: the per-program records (name, customer, checksum, counters) that the
//! host serves from its L1 cache and the consumer updates as events are stored.
//!
//! Both sides use one pair of traits, so one backend serves both: [`CoreDataStore`]
//! (read, write, remove, follow changes; the host's cache stage) and
//! [`CoreDataUpdates`] (publish each program's count of stored events, which the event
//! store keeps exactly; the consumer). [`RedisCoreData`] is ElastiCache at scale; [`InProcessCoreData`] is
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

/// Where the counts of stored events are published for the hosts. The event store
/// counts each event once, in the same write that stores it; this side only holds the
/// absolute totals it reports, so a redelivered batch cannot count twice and memory
/// stays bounded. Counts and last-seen times only move forward (a late, smaller total
/// from another consumer is ignored). Only programs that exist in core data are
/// updated, so a consumer never makes up a program the host would then serve.
#[async_trait]
pub trait CoreDataUpdates: Send + Sync {
    /// Sets each program's count and last-seen time (when larger than what is there)
    /// and notifies subscribers of every program that changed.
    async fn publish_counts(&self, counts: &[ProgramCount]) -> Result<(), CoreDataUpdateError>;
}

/// One program's stored events, as the event store counts them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramCount {
    /// The program.
    pub program_id: String,
    /// Events stored for the program, in all.
    pub event_count: u64,
    /// The newest stored event's timestamp, ms since the Unix epoch (0: unknown).
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
    async fn publish_counts(&self, _counts: &[ProgramCount]) -> Result<(), CoreDataUpdateError> {
        Ok(())
    }
}
