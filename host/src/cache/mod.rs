//! The cache stage: core data (programs) in an in-process L1 (moka) in front of a
//! [`CoreDataStore`] (Redis at scale, an in-process table by default), kept fresh by the
//! store's change notifications.

mod config;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use core_data::{BackendStatus, CoreDataError, CoreDataStore};
use moka::Expiry;
use moka::future::Cache;
use moka::notification::RemovalCause;
use plugin_engine::{CoreDataLookup, CoreRecord, LookupError};

pub use self::config::CacheConfig;

/// What L1 holds for a program: its record, or `None` while it is known not to exist.
type Cached = Option<Arc<CoreRecord>>;

/// The core-data view of the host: L1 first, then the backend. Concurrent misses of one
/// key make one backend call; an unknown program is remembered briefly; an entry whose
/// refresh fails is served stale (and counted as such) until it expires.
#[derive(Clone)]
pub struct CoreDataCache {
    l1: Cache<String, Cached>,
    backend: Arc<dyn CoreDataStore>,
    /// Keys served from L1 although their last refresh failed.
    stale: Arc<Mutex<HashSet<String>>>,
}

impl CoreDataCache {
    /// A cache in front of `backend`, sized by `config`.
    pub fn new(backend: Arc<dyn CoreDataStore>, config: &CacheConfig) -> Self {
        let stale = Arc::<Mutex<HashSet<String>>>::default();
        let forget = stale.clone();
        let l1 = Cache::builder()
            .max_capacity(config.cache_capacity)
            .expire_after(Lifetimes {
                known: config.ttl(),
                unknown: config.negative_ttl(),
            })
            .eviction_listener(move |key: Arc<String>, _, cause| {
                if cause != RemovalCause::Replaced {
                    let mut stale = forget.lock().unwrap_or_else(PoisonError::into_inner);
                    stale.remove(key.as_str());
                    metrics::gauge!("core_data_stale_programs").set(stale.len() as f64);
                }
            })
            .build();
        Self { l1, backend, stale }
    }

    /// The record under `key`: from L1, else from the backend (then cached, as is
    /// its absence). Concurrent calls for one missing key wait for one backend call.
    pub async fn get(&self, key: &str) -> Result<Cached, Arc<CoreDataError>> {
        let load = async {
            let record = self.backend.fetch(key).await?;
            self.mark_stale(key, false);
            Ok::<_, CoreDataError>(record.map(Arc::new))
        };
        let entry = self.l1.entry_by_ref(key).or_try_insert_with(load).await?;
        let counter = if entry.is_fresh() {
            "core_data_cache_misses_total"
        } else {
            "core_data_cache_hits_total"
        };
        metrics::counter!(counter).increment(1);
        Ok(entry.into_value())
    }

    /// Stores `record` in the backend and L1.
    pub async fn put(&self, key: &str, record: CoreRecord) -> Result<(), CoreDataError> {
        self.backend.store(key, &record).await?;
        self.l1.insert(key.to_owned(), Some(Arc::new(record))).await;
        self.mark_stale(key, false);
        Ok(())
    }

    /// Removes `key` from the backend and L1.
    pub async fn remove(&self, key: &str) -> Result<(), CoreDataError> {
        self.l1.invalidate(key).await;
        self.backend.remove(key).await
    }

    /// Reloads `key` from the backend after an update notification. If the backend
    /// cannot answer, the cached copy keeps being served and is reported stale.
    pub async fn refresh(&self, key: &str) {
        match self.backend.fetch(key).await {
            Ok(record) => {
                self.l1.insert(key.to_owned(), record.map(Arc::new)).await;
                self.mark_stale(key, false);
            }
            Err(error) if self.l1.contains_key(key) => {
                tracing::warn!(key, %error, "cannot refresh core data; serving the cached copy");
                metrics::counter!("core_data_refresh_failures_total").increment(1);
                self.mark_stale(key, true);
            }
            Err(error) => tracing::debug!(key, %error, "cannot refresh core data not cached"),
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

    /// Records currently in L1 (known programs and programs known not to exist).
    pub fn l1_len(&self) -> u64 {
        self.l1.entry_count()
    }

    /// Programs served from L1 although their last refresh failed.
    pub fn stale_len(&self) -> usize {
        self.stale
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn mark_stale(&self, key: &str, stale: bool) {
        let mut keys = self.stale.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = if stale {
            keys.insert(key.to_owned())
        } else {
            keys.remove(key)
        };
        if changed {
            metrics::gauge!("core_data_stale_programs").set(keys.len() as f64);
        }
    }
}

/// How long L1 keeps an entry: a known program until its TTL, an unknown one briefly.
struct Lifetimes {
    known: Duration,
    unknown: Duration,
}

impl Lifetimes {
    fn of(&self, value: &Cached) -> Duration {
        if value.is_some() {
            self.known
        } else {
            self.unknown
        }
    }
}

impl Expiry<String, Cached> for Lifetimes {
    fn expire_after_create(&self, _key: &String, value: &Cached, _at: Instant) -> Option<Duration> {
        Some(self.of(value))
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Cached,
        _at: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.of(value))
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
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use core_data::InProcessCoreData;
    use tokio::sync::mpsc;

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
                redis_keepalive_secs: 10,
            },
            cache_capacity: 10,
            cache_ttl_secs: 60,
            cache_negative_ttl_secs: 60,
        }
    }

    /// An in-process store that counts reads, can be made to fail them, and answers
    /// each after `delay`.
    #[derive(Default)]
    struct CountingStore {
        inner: InProcessCoreData,
        fetches: AtomicUsize,
        failing: AtomicBool,
        delay: Duration,
    }

    #[async_trait]
    impl CoreDataStore for CountingStore {
        async fn fetch(&self, key: &str) -> Result<Option<CoreRecord>, CoreDataError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            if self.failing.load(Ordering::SeqCst) {
                return Err(CoreDataError::Timeout(self.delay));
            }
            self.inner.fetch(key).await
        }

        async fn store(&self, key: &str, record: &CoreRecord) -> Result<(), CoreDataError> {
            self.inner.store(key, record).await
        }

        async fn remove(&self, key: &str) -> Result<(), CoreDataError> {
            self.inner.remove(key).await
        }

        fn subscribe(&self) -> mpsc::Receiver<String> {
            self.inner.subscribe()
        }

        fn status(&self) -> BackendStatus {
            self.inner.status()
        }
    }

    #[tokio::test]
    async fn reads_through_to_the_backend_and_caches() {
        let backend = Arc::new(InProcessCoreData::new());
        let cache = CoreDataCache::new(backend.clone(), &config());
        backend.store("1", &record("a")).await.unwrap();
        assert_eq!(*cache.get("1").await.unwrap().unwrap(), record("a"));
        // A backend change without refresh is not seen: L1 answers.
        backend.store("1", &record("b")).await.unwrap();
        assert_eq!(*cache.get("1").await.unwrap().unwrap(), record("a"));
        cache.refresh("1").await;
        assert_eq!(*cache.get("1").await.unwrap().unwrap(), record("b"));
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_serving_the_cached_record_and_reports_it_stale() {
        let backend = Arc::new(CountingStore::default());
        let cache = CoreDataCache::new(backend.clone(), &config());
        backend.store("1", &record("a")).await.unwrap();
        assert_eq!(*cache.get("1").await.unwrap().unwrap(), record("a"));
        backend.failing.store(true, Ordering::SeqCst);
        cache.refresh("1").await;
        assert_eq!(*cache.get("1").await.unwrap().unwrap(), record("a"));
        assert_eq!(cache.stale_len(), 1);
        backend.failing.store(false, Ordering::SeqCst);
        backend.store("1", &record("b")).await.unwrap();
        cache.refresh("1").await;
        assert_eq!(*cache.get("1").await.unwrap().unwrap(), record("b"));
        assert_eq!(cache.stale_len(), 0);
    }

    #[tokio::test]
    async fn an_unknown_program_is_remembered_as_unknown() {
        let backend = Arc::new(CountingStore::default());
        let cache = CoreDataCache::new(backend.clone(), &config());
        assert!(cache.get("404").await.unwrap().is_none());
        assert!(cache.get("404").await.unwrap().is_none());
        assert_eq!(backend.fetches.load(Ordering::SeqCst), 1);
        // Creating it through the cache makes it known at once.
        cache.put("404", record("new")).await.unwrap();
        assert_eq!(*cache.get("404").await.unwrap().unwrap(), record("new"));
    }

    #[tokio::test]
    async fn concurrent_misses_of_one_program_make_one_backend_call() {
        let backend = Arc::new(CountingStore {
            delay: Duration::from_millis(50),
            ..CountingStore::default()
        });
        backend.store("1", &record("a")).await.unwrap();
        let cache = CoreDataCache::new(backend.clone(), &config());
        let mut reads = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let cache = cache.clone();
            reads.spawn(async move {
                cache
                    .get("1")
                    .await
                    .map(|found| found.map(|r| (*r).clone()))
            });
        }
        while let Some(read) = reads.join_next().await {
            assert_eq!(read.unwrap().unwrap(), Some(record("a")));
        }
        assert_eq!(backend.fetches.load(Ordering::SeqCst), 1);
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
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while *cache.get("1").await.unwrap().unwrap() != record("b") {
            assert!(tokio::time::Instant::now() < deadline, "L1 never refreshed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
