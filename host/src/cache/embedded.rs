//! The embedded core-data backend: an in-process table with in-process notifications.

use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;
use plugin_engine::{CoreDataError, CoreRecord};
use tokio::sync::mpsc;

use super::{BackendStatus, CoreDataBackend};

/// Notifications buffered for the L1 refresher before older ones are dropped.
const UPDATE_BUFFER: usize = 1024;

/// Core data held in the process; every change is announced on a channel.
pub struct EmbeddedBackend {
    records: RwLock<HashMap<String, CoreRecord>>,
    updates: mpsc::Sender<String>,
}

impl EmbeddedBackend {
    /// An empty backend and the receiver of its change notifications.
    pub fn new() -> (Self, mpsc::Receiver<String>) {
        let (updates, receiver) = mpsc::channel(UPDATE_BUFFER);
        let backend = Self {
            records: RwLock::new(HashMap::new()),
            updates,
        };
        (backend, receiver)
    }

    fn announce(&self, key: &str) {
        // A full buffer only delays freshness until the TTL; never block a writer.
        let _ = self.updates.try_send(key.to_owned());
    }
}

#[async_trait]
impl CoreDataBackend for EmbeddedBackend {
    async fn fetch(&self, key: &str) -> Result<Option<CoreRecord>, CoreDataError> {
        let records = self
            .records
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        Ok(records.get(key).cloned())
    }

    async fn store(&self, key: &str, record: &CoreRecord) -> Result<(), CoreDataError> {
        {
            let mut records = self
                .records
                .write()
                .unwrap_or_else(|poison| poison.into_inner());
            let stored = records.entry(key.to_owned()).or_default();
            for (field, value) in record {
                match stored.iter_mut().find(|(name, _)| name == field) {
                    Some(slot) => slot.1 = value.clone(),
                    None => stored.push((field.clone(), value.clone())),
                }
            }
        }
        self.announce(key);
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<(), CoreDataError> {
        self.records
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(key);
        self.announce(key);
        Ok(())
    }

    fn status(&self) -> BackendStatus {
        BackendStatus {
            backend: "embedded",
            connected: true,
            last_error: None,
        }
    }
}
