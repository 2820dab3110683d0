//! The cache stage: core data (programs) in an in-process L1 (moka) in front of a
//! [`CoreDataStore`] (Redis at scale, an in-process table by default), kept fresh by the
//! store's change notifications.

mod config;

use std::sync::Arc;

use async_trait::async_trait;
use core_data::{BackendStatus, CoreDataError, CoreDataStore};
use moka::future::Cache;
use plugin_engine::{CoreDataLookup, CoreRecord, LookupError};

pub use self::config::CacheConfig;

/// The core-data view of the host: L1 first, then the backend.
#[derive(Clone)]
pub struct CoreDataCache {
    l1: Cache<String, Arc<CoreRecord>>,
    backend: Arc<dyn CoreDataStore>,
}

impl CoreDataCache {
    /// A cache in front of `backend`, sized by `config`.
    pub fn new(backend: Arc<dyn CoreDataStore>, config: &CacheConfig) -> Self {
        Self {
            l1: Cache::builder()
                .max_capacity(config.cache_capacity)
                .time_to_live(config.ttl())
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
    async fn lookup(&self, key: &str) -> Result<Option<CoreRecord>, LookupError> {
        let record = self.get(key).await.map_err(LookupError::new)?;
        Ok(record.map(|record| (*record).clone()))
    }
}

/// Refreshes L1 for every key the store announces until the store's channel closes;
/// an empty key (sent after a reconnection) refreshes every cached key.
pub async fn follow_updates(cache: CoreDataCache) {
    let mut updates = cache.backend.subscribe();
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
    use core_data::InProcessCoreData;

    use super::*;

    fn record(name: &str) -> CoreRecord {
        vec![("programName".to_owned(), name.to_owned())]
    }

    fn config() -> CacheConfig {
        CacheConfig {
            redis: core_data::RedisConfig {
                redis_url: None,
                redis_auth_token: None,
                redis_timeout_ms: 1_000,
            },
            cache_capacity: 10,
            cache_ttl_secs: 60,
        }
    }

    #[tokio::test]
    async fn reads_through_to_the_backend_and_caches() {
        let backend = Arc::new(InProcessCoreData::new());
        let cache = CoreDataCache::new(backend.clone(), &config());
        assert!(cache.get("1").await.unwrap().is_none());
        backend.store("1", &record("a")).await.unwrap();
        assert_eq!(*cache.get("1").await.unwrap().unwrap(), record("a"));
        // A backend change without refresh is not seen: L1 answers.
        backend.store("1", &record("b")).await.unwrap();
        assert_eq!(*cache.get("1").await.unwrap().unwrap(), record("a"));
        cache.refresh("1").await;
        assert_eq!(*cache.get("1").await.unwrap().unwrap(), record("b"));
    }

    #[tokio::test]
    async fn announced_changes_refresh_l1() {
        let backend = Arc::new(InProcessCoreData::new());
        let cache = CoreDataCache::new(backend.clone(), &config());
        backend.store("1", &record("a")).await.unwrap();
        assert_eq!(*cache.get("1").await.unwrap().unwrap(), record("a"));
        tokio::spawn(follow_updates(cache.clone()));
        tokio::task::yield_now().await;
        backend.store("1", &record("b")).await.unwrap();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while *cache.get("1").await.unwrap().unwrap() != record("b") {
            assert!(tokio::time::Instant::now() < deadline, "L1 never refreshed");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
