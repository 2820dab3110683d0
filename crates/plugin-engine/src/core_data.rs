//! The read-only core-data view plugins get through the `lookup` import.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

/// The fields of one core-data record (e.g. a program), in store order.
pub type CoreRecord = Vec<(String, String)>;

/// The core-data store could not answer a lookup; keeps the store's own error as its
/// source. A plugin sees its message as the `lookup` error.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct LookupError(Arc<dyn std::error::Error + Send + Sync>);

impl LookupError {
    /// A lookup failure caused by `source`.
    pub fn new(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(source))
    }

    /// A lookup failure known only by its message (a store without a typed error).
    pub fn from_message(message: impl Into<String>) -> Self {
        Self::new(std::io::Error::other(message.into()))
    }
}

/// Where plugins' `lookup` calls are answered: the host's L1 cache then Redis,
/// or a fixed table in tests and the CLI.
#[async_trait]
pub trait CoreDataLookup: Send + Sync {
    /// The record stored under `key`, or `None` when there is none.
    async fn lookup(&self, key: &str) -> Result<Option<CoreRecord>, LookupError>;
}

/// A lookup that knows no records.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCoreData;

#[async_trait]
impl CoreDataLookup for NoCoreData {
    async fn lookup(&self, _key: &str) -> Result<Option<CoreRecord>, LookupError> {
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
    async fn lookup(&self, key: &str) -> Result<Option<CoreRecord>, LookupError> {
        Ok(self.records.get(key).cloned())
    }
}
