//! Attempts per record: how often a record has failed, so that a record that keeps
//! failing (a plugin that fails on it every time, a store that keeps refusing it)
//! becomes a dead letter with its data after a bounded number of attempts, instead of
//! being retried until the stream gives up on it and skips it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use retry_policy::ClassifiedError;

/// Failed attempts per record id, kept across deliveries of the record.
#[async_trait]
pub trait AttemptLedger: Send + Sync {
    /// Counts one more failed attempt at `record_id`; returns the attempts so far.
    async fn failed(&self, record_id: &str) -> Result<u32, ClassifiedError>;
    /// Forgets `record_id` once it is handled for good (stored, filtered or
    /// dead-lettered). Ledgers whose entries expire by themselves may ignore it.
    async fn forget(&self, record_ids: &[&str]);
}

/// Most records an in-memory ledger follows; beyond that it starts over (a record then
/// gets a few more attempts, never fewer).
const IN_MEMORY_LIMIT: usize = 100_000;

/// A ledger in the process: for the embedded consumer, whose process sees every
/// redelivery of its records.
#[derive(Debug, Default)]
pub struct InMemoryAttempts {
    attempts: Mutex<HashMap<String, u32>>,
}

#[async_trait]
impl AttemptLedger for InMemoryAttempts {
    async fn failed(&self, record_id: &str) -> Result<u32, ClassifiedError> {
        let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        if attempts.len() >= IN_MEMORY_LIMIT && !attempts.contains_key(record_id) {
            attempts.clear();
        }
        let count = attempts.entry(record_id.to_owned()).or_default();
        *count += 1;
        Ok(*count)
    }

    async fn forget(&self, record_ids: &[&str]) {
        let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        if attempts.is_empty() {
            return;
        }
        for id in record_ids {
            attempts.remove(*id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn attempts_count_up_per_record_until_forgotten() {
        let ledger = InMemoryAttempts::default();
        assert_eq!(ledger.failed("a").await.unwrap(), 1);
        assert_eq!(ledger.failed("a").await.unwrap(), 2);
        assert_eq!(ledger.failed("b").await.unwrap(), 1);
        ledger.forget(&["a"]).await;
        assert_eq!(ledger.failed("a").await.unwrap(), 1);
    }
}
