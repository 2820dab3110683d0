//! The read-only core-data view plugins get through the `lookup` import.

use std::collections::HashMap;

use async_trait::async_trait;

/// The fields of one core-data record (e.g. a program), in store order.
pub type CoreRecord = Vec<(String, String)>;

/// The core-data store could not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CoreDataError(pub String);

/// Where plugins' `lookup` calls are answered: the host's L1 cache then Redis,
/// or a fixed table in tests and the CLI.
#[async_trait]
pub trait CoreDataLookup: Send + Sync {
    /// The record stored under `key`, or `None` when there is none.
    async fn lookup(&self, key: &str) -> Result<Option<CoreRecord>, CoreDataError>;
}

/// A lookup that knows no records.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCoreData;

#[async_trait]
impl CoreDataLookup for NoCoreData {
    async fn lookup(&self, _key: &str) -> Result<Option<CoreRecord>, CoreDataError> {
        Ok(None)
    }
}

/// A fixed in-memory table of records, for the CLI and tests.
#[derive(Debug, Default, Clone)]
pub struct StaticCoreData {
    records: HashMap<String, CoreRecord>,
}

impl StaticCoreData {
    /// A table holding `records`.
    pub fn new(records: HashMap<String, CoreRecord>) -> Self {
        Self { records }
    }
}

#[async_trait]
impl CoreDataLookup for StaticCoreData {
    async fn lookup(&self, key: &str) -> Result<Option<CoreRecord>, CoreDataError> {
        Ok(self.records.get(key).cloned())
    }
}
