//! The cache stage: core data (programs) in an in-process L1 in front of a backend
//! (Redis at scale, an in-process table by default), kept fresh by update notifications.

mod activity;
mod embedded;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;
use plugin_engine::{CoreDataError, CoreDataLookup, CoreRecord};
use serde::Serialize;

pub use self::embedded::EmbeddedBackend;
pub use self::redis::RedisBackend;

/// Where core data lives behind the L1 cache.
#[async_trait]
pub trait CoreDataBackend: Send + Sync {
    /// The record stored under `key`, `None` if there is none.
    async fn fetch(&self, key: &str) -> Result<Option<CoreRecord>, CoreDataError>;
    /// Sets the fields of `record` under `key` (other fields stay, as Redis `HSET`)
    /// and notifies subscribers.
    async fn store(&self, key: &str, record: &CoreRecord) -> Result<(), CoreDataError>;
    /// Removes the record under `key` and notifies subscribers.
    async fn remove(&self, key: &str) -> Result<(), CoreDataError>;
    /// Whether the backend is reachable, for `/health/check`.
    fn status(&self) -> BackendStatus;
}

/// The backend's health as reported by `/health/check`.
#[derive(Clone, Debug, Serialize)]
pub struct BackendStatus {
    /// `redis` or `embedded`.
    pub backend: &'static str,
    /// Whether the last operation reached the backend.
    pub connected: bool,
    /// The last error, while disconnected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// L1 cache sizing.
#[derive(Clone, Copy, Debug)]
pub struct CacheSettings {
    /// Most records held in L1.
    pub capacity: u64,
    /// How long a record stays in L1 without being refreshed.
    pub ttl: Duration,
}

/// The core-data view of the host: L1 first, then the backend.
#[derive(Clone)]
pub struct CoreDataCache {
    l1: Cache<String, Arc<CoreRecord>>,
    backend: Arc<dyn CoreDataBackend>,
}

impl CoreDataCache {
    /// A cache in front of `backend`.
    pub fn new(backend: Arc<dyn CoreDataBackend>, settings: CacheSettings) -> Self {
        Self {
            l1: Cache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(settings.ttl)
                .build(),
            backend,
        }
    }

    /// The record under `key`: from L1, else from the backend (then cached).
    pub async fn get(&self, key: &str) -> Result<Option<Arc<CoreRecord>>, CoreDataError> {
        if let Some(record) = self.l1.get(key).await {
            metrics::counter!("core_data_cache_hits_total").increment(1);
            return Ok(Some(record));
        }
        metrics::counter!("core_data_cache_misses_total").increment(1);
        let Some(record) = self.backend.fetch(key).await? else {
            return Ok(None);
        };
        let record = Arc::new(record);
        self.l1.insert(key.to_owned(), record.clone()).await;
        Ok(Some(record))
    }

    /// Stores `record` in the backend and L1.
    pub async fn put(&self, key: &str, record: CoreRecord) -> Result<(), CoreDataError> {
        self.backend.store(key, &record).await?;
        self.l1.insert(key.to_owned(), Arc::new(record)).await;
        Ok(())
    }

    /// Sets only `fields` of the record under `key` in the backend (its other fields
    /// stay as the backend has them) and reloads the record into L1.
    pub async fn update_fields(&self, key: &str, fields: CoreRecord) -> Result<(), CoreDataError> {
        self.backend.store(key, &fields).await?;
        self.refresh(key).await;
        Ok(())
    }

    /// The record under `key` as the backend has it now, bypassing L1.
    pub async fn fetch_fresh(&self, key: &str) -> Result<Option<CoreRecord>, CoreDataError> {
        self.backend.fetch(key).await
    }

    /// Removes `key` from the backend and L1.
    pub async fn remove(&self, key: &str) -> Result<(), CoreDataError> {
        self.l1.invalidate(key).await;
        self.backend.remove(key).await
    }

    /// Reloads `key` from the backend after an update notification; if the backend
    /// cannot answer, drops the L1 entry so the next read goes to the backend.
    pub async fn refresh(&self, key: &str) {
        match self.backend.fetch(key).await {
            Ok(Some(record)) => self.l1.insert(key.to_owned(), Arc::new(record)).await,
            Ok(None) => self.l1.invalidate(key).await,
            Err(error) => {
                tracing::warn!(key, %error, "cannot refresh core data; dropping the cached copy");
                self.l1.invalidate(key).await;
            }
        }
    }

    /// Empties L1 (the backend keeps its data).
    pub fn clear_l1(&self) {
        self.l1.invalidate_all();
    }

    /// The backend's health.
    pub fn status(&self) -> BackendStatus {
        self.backend.status()
    }

    /// Records currently in L1.
    pub fn l1_len(&self) -> u64 {
        self.l1.entry_count()
    }
}

#[async_trait]
impl CoreDataLookup for CoreDataCache {
    async fn lookup(&self, key: &str) -> Result<Option<CoreRecord>, CoreDataError> {
        Ok(self.get(key).await?.map(|record| (*record).clone()))
    }
}

/// Refreshes L1 for every key announced on `updates` until the channel closes;
/// an empty key (sent after a reconnection) refreshes every cached key.
pub async fn follow_updates(
    cache: CoreDataCache,
    mut updates: tokio::sync::mpsc::Receiver<String>,
) {
    while let Some(key) = updates.recv().await {
        if key.is_empty() {
            let keys: Vec<Arc<String>> = cache.l1.iter().map(|(key, _)| key).collect();
            for key in keys {
                cache.refresh(&key).await;
            }
        } else {
            tracing::debug!(key, "core data changed; refreshing L1");
            cache.refresh(&key).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> CoreRecord {
        vec![("programName".to_owned(), name.to_owned())]
    }

    #[tokio::test]
    async fn reads_through_to_the_backend_and_caches() {
        let (backend, _updates) = EmbeddedBackend::new();
        let backend = Arc::new(backend);
        let cache = CoreDataCache::new(
            backend.clone(),
            CacheSettings {
                capacity: 10,
                ttl: Duration::from_secs(60),
            },
        );
        assert!(cache.get("1").await.unwrap().is_none());
        backend.store("1", &record("a")).await.unwrap();
        assert_eq!(*cache.get("1").await.unwrap().unwrap(), record("a"));
        // A backend change without refresh is not seen: L1 answers.
        backend.store("1", &record("b")).await.unwrap();
        assert_eq!(*cache.get("1").await.unwrap().unwrap(), record("a"));
        cache.refresh("1").await;
        assert_eq!(*cache.get("1").await.unwrap().unwrap(), record("b"));
    }
}
