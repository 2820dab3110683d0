//! Core data kept in the process: the embedded default of the host and the tests'
//! stand-in for Redis, with the same semantics (fields set like `HSET`, counts that only
//! move forward, changes announced to subscribers).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use contract::redis_names;
use plugin_engine::{CoreDataLookup, CoreRecord, LookupError};
use tokio::sync::mpsc;

use crate::{
    BackendStatus, CoreDataError, CoreDataStore, CoreDataUpdateError, CoreDataUpdates,
    ProgramCount, UPDATE_BUFFER,
};

/// Programs' core data in memory; cheap to clone (clones share the table).
#[derive(Clone, Default)]
pub struct InProcessCoreData {
    programs: Arc<Mutex<HashMap<String, ProgramEntry>>>,
    subscribers: Arc<Mutex<Vec<mpsc::Sender<String>>>>,
}

#[derive(Default)]
struct ProgramEntry {
    fields: BTreeMap<String, String>,
}

impl InProcessCoreData {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores (replaces) the core-data fields of `program_id`.
    pub fn put_program(
        &self,
        program_id: &str,
        fields: impl IntoIterator<Item = (String, String)>,
    ) {
        self.programs()
            .entry(program_id.to_owned())
            .or_default()
            .fields = fields.into_iter().collect();
        self.announce(program_id);
    }

    /// The fields of `program_id`, including the consumer's counters.
    pub fn program(&self, program_id: &str) -> Option<BTreeMap<String, String>> {
        self.programs()
            .get(program_id)
            .map(|entry| entry.fields.clone())
    }

    fn programs(&self) -> MutexGuard<'_, HashMap<String, ProgramEntry>> {
        self.programs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells every subscriber that `key` changed; a full subscriber misses it (its L1
    /// entry then refreshes at the TTL), a closed one is forgotten.
    fn announce(&self, key: &str) {
        let mut subscribers = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        subscribers.retain(|subscriber| !subscriber.is_closed());
        for subscriber in subscribers.iter() {
            let _ = subscriber.try_send(key.to_owned());
        }
    }

    /// Moves one program's count and last-seen time forward; returns whether its
    /// record changed.
    fn publish_one(entry: &mut ProgramEntry, count: &ProgramCount) -> bool {
        let mut changed = false;
        for (field, value) in [
            (redis_names::EVENT_COUNT_FIELD, count.event_count),
            (redis_names::LAST_SEEN_FIELD, count.last_seen_ms),
        ] {
            if value > numeric_field(&entry.fields, field) {
                entry.fields.insert(field.into(), value.to_string());
                changed = true;
            }
        }
        changed
    }
}

fn numeric_field(fields: &BTreeMap<String, String>, name: &str) -> u64 {
    fields
        .get(name)
        .and_then(|value| value.parse().ok())
        .unwrap_or_default()
}

#[async_trait]
impl CoreDataStore for InProcessCoreData {
    async fn fetch(&self, key: &str) -> Result<Option<CoreRecord>, CoreDataError> {
        Ok(self.program(key).map(|fields| fields.into_iter().collect()))
    }

    async fn store(&self, key: &str, record: &CoreRecord) -> Result<(), CoreDataError> {
        {
            let mut programs = self.programs();
            let entry = programs.entry(key.to_owned()).or_default();
            entry.fields.extend(record.iter().cloned());
        }
        self.announce(key);
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<(), CoreDataError> {
        self.programs().remove(key);
        self.announce(key);
        Ok(())
    }

    fn subscribe(&self) -> mpsc::Receiver<String> {
        let (sender, receiver) = mpsc::channel(UPDATE_BUFFER);
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sender);
        receiver
    }

    fn status(&self) -> BackendStatus {
        BackendStatus {
            backend: "in-process",
            connected: true,
            last_error: None,
        }
    }
}

#[async_trait]
impl CoreDataUpdates for InProcessCoreData {
    async fn publish_counts(&self, counts: &[ProgramCount]) -> Result<(), CoreDataUpdateError> {
        let changed: Vec<&str> = {
            let mut programs = self.programs();
            counts
                .iter()
                .filter(|count| {
                    programs
                        .get_mut(&count.program_id)
                        .is_some_and(|entry| Self::publish_one(entry, count))
                })
                .map(|count| count.program_id.as_str())
                .collect()
        };
        for program_id in changed {
            self.announce(program_id);
        }
        Ok(())
    }
}

#[async_trait]
impl CoreDataLookup for InProcessCoreData {
    async fn lookup(&self, key: &str) -> Result<Option<CoreRecord>, LookupError> {
        self.fetch(key).await.map_err(LookupError::new)
    }
}
