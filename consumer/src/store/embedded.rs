//! The embedded event store: accepted events in a `redb` file, keyed by message id, for
//! the host's embedded mode. Each event is kept as its protobuf stream record; a second
//! table counts the events stored per program, updated in the same transaction.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use contract::TrackingEvent;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use retry_policy::{ClassifiedError, Classify, ErrorKind};

use super::{EventStore, StoredEvent, WriteReport, program_of};

/// Message id → protobuf `TrackingEvent` (with the plugins that processed it).
const EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("events");
/// Program id → events stored for it.
const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("program_counts");

/// An event to write: its id, its program and its encoded record.
struct Encoded {
    id: String,
    program: Option<String>,
    bytes: Vec<u8>,
}

/// Accepted events in an embedded database file; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: Arc<PathBuf>,
}

/// The embedded store file could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedStoreError {
    /// The file could not be created or opened.
    #[error("cannot open the event store {path}: {source}")]
    Open {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error, kept as the source.
        source: redb::DatabaseError,
    },
    /// A transaction failed.
    #[error("event store {path}: {source}")]
    Store {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error, kept as the source.
        source: Box<redb::Error>,
    },
    /// A stored value is not a stream record.
    #[error("event store {path}: event {id} is corrupt: {reason}")]
    Corrupt {
        /// The file at fault.
        path: PathBuf,
        /// The event id.
        id: String,
        /// The decoding error.
        reason: String,
    },
}

impl EmbeddedStore {
    /// Opens the store at `path`, creating the file if needed.
    pub fn open(path: &Path) -> Result<Self, EmbeddedStoreError> {
        let db = Database::create(path).map_err(|source| EmbeddedStoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        let store = Self {
            db: Arc::new(db),
            path: Arc::new(path.to_owned()),
        };
        store.write_all(&[])?;
        Ok(store)
    }

    /// Events stored for `program_id`.
    pub fn count(&self, program_id: &str) -> Result<u64, EmbeddedStoreError> {
        self.read(|txn| {
            let table = txn.open_table(COUNTS)?;
            Ok(table
                .get(program_id)?
                .map(|count| count.value())
                .unwrap_or(0))
        })
    }

    /// The stored event with message id `id`.
    pub fn get(&self, id: &str) -> Result<Option<StoredEvent>, EmbeddedStoreError> {
        let bytes = self.read(|txn| {
            let table = txn.open_table(EVENTS)?;
            Ok(table.get(id)?.map(|value| value.value().to_vec()))
        })?;
        bytes.map(|bytes| self.decode(id, &bytes)).transpose()
    }

    /// Every stored event, in message id order.
    pub fn all(&self) -> Result<Vec<StoredEvent>, EmbeddedStoreError> {
        let entries = self.read(|txn| {
            let table = txn.open_table(EVENTS)?;
            let mut entries = Vec::new();
            for entry in table.iter()? {
                let (id, value) = entry?;
                entries.push((id.value().to_owned(), value.value().to_vec()));
            }
            Ok(entries)
        })?;
        entries
            .into_iter()
            .map(|(id, bytes)| self.decode(&id, &bytes))
            .collect()
    }

    /// How many events the store holds.
    pub fn len(&self) -> Result<u64, EmbeddedStoreError> {
        self.read(|txn| Ok(txn.open_table(EVENTS)?.len()?))
    }

    /// Whether the store holds no events.
    pub fn is_empty(&self) -> Result<bool, EmbeddedStoreError> {
        Ok(self.len()? == 0)
    }

    /// Writes the events not stored yet and counts them per program, in one committed
    /// transaction (blocking); reports the rest as duplicates. Each program's count is
    /// read and written once per batch, however many of its events the batch holds.
    fn write_all(&self, events: &[Encoded]) -> Result<WriteReport, EmbeddedStoreError> {
        let run = || -> Result<WriteReport, redb::Error> {
            let mut report = WriteReport::default();
            let txn = self.db.begin_write()?;
            {
                let mut table = txn.open_table(EVENTS)?;
                let mut added: BTreeMap<&str, u64> = BTreeMap::new();
                for event in events {
                    let new = table.get(event.id.as_str())?.is_none();
                    if new {
                        table.insert(event.id.as_str(), event.bytes.as_slice())?;
                        report.stored.push(event.id.clone());
                    } else {
                        report.duplicates.push(event.id.clone());
                    }
                    if let Some(program) = &event.program {
                        *added.entry(program.as_str()).or_default() += u64::from(new);
                    }
                }
                let mut counts = txn.open_table(COUNTS)?;
                for (program, added) in added {
                    let count = counts.get(program)?.map(|c| c.value()).unwrap_or(0) + added;
                    if added > 0 {
                        counts.insert(program, count)?;
                    }
                    report.counts.insert(program.to_owned(), count);
                }
            }
            txn.commit()?;
            Ok(report)
        };
        run().map_err(|source| self.store_error(source))
    }

    fn read<T>(
        &self,
        body: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, EmbeddedStoreError> {
        let run = || -> Result<T, redb::Error> { body(&self.db.begin_read()?) };
        run().map_err(|source| self.store_error(source))
    }

    fn decode(&self, id: &str, bytes: &[u8]) -> Result<StoredEvent, EmbeddedStoreError> {
        TrackingEvent::from_bytes(bytes)
            .map(StoredEvent::from_record)
            .map_err(|error| EmbeddedStoreError::Corrupt {
                path: self.path.as_ref().clone(),
                id: id.to_owned(),
                reason: error.to_string(),
            })
    }

    fn store_error(&self, source: redb::Error) -> EmbeddedStoreError {
        EmbeddedStoreError::Store {
            path: self.path.as_ref().clone(),
            source: Box::new(source),
        }
    }
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn put(&self, events: &[StoredEvent]) -> WriteReport {
        let encoded: Vec<Encoded> = events
            .iter()
            .map(|event| Encoded {
                id: event.event.id.clone(),
                program: program_of(event).map(str::to_owned),
                bytes: event.to_record().to_bytes(),
            })
            .collect();
        let store = self.clone();
        let written = tokio::task::spawn_blocking(move || store.write_all(&encoded)).await;
        let error = match written {
            Ok(Ok(report)) => return report,
            Ok(Err(error)) => {
                ClassifiedError::caused_by(ErrorKind::Transient, error.to_string(), error)
            }
            Err(join) => ClassifiedError::caused_by(
                ErrorKind::Transient,
                "the embedded store's write task failed",
                join,
            ),
        };
        WriteReport {
            failed: events
                .iter()
                .map(|event| {
                    let copy = ClassifiedError::new(error.kind(), error.to_string());
                    (event.event.id.clone(), copy)
                })
                .collect(),
            counts: BTreeMap::new(),
            ..WriteReport::default()
        }
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::PluginStamp;
    use plugin_engine::Event;

    fn stored(id: &str) -> StoredEvent {
        StoredEvent {
            event: Event {
                id: id.into(),
                key: id.into(),
                timestamp_ms: 42,
                content_type: "application/json".into(),
                payload: b"{}".to_vec(),
                attributes: vec![("programId".into(), "212313".into())],
            },
            processed_by: vec![PluginStamp {
                name: "validate-tracking".into(),
                version: "00".repeat(32),
            }],
            host_release: 3,
            consumer_release: 4,
        }
    }

    #[tokio::test]
    async fn writing_the_same_event_twice_keeps_one_copy_and_counts_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("events.redb")).unwrap();
        let first = store.put(&[stored("a"), stored("b")]).await;
        assert_eq!(first.stored, ["a", "b"]);
        assert_eq!(first.counts["212313"], 2);
        let again = store.put(&[stored("a")]).await;
        assert!(again.stored.is_empty());
        assert_eq!(again.duplicates, ["a"]);
        assert_eq!(again.counts["212313"], 2);
        assert_eq!(store.len().unwrap(), 2);
        assert_eq!(store.count("212313").unwrap(), 2);
        assert_eq!(store.get("a").unwrap(), Some(stored("a")));
        assert_eq!(store.get("missing").unwrap(), None);
        let ids: Vec<_> = store
            .all()
            .unwrap()
            .into_iter()
            .map(|event| event.event.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[tokio::test]
    async fn a_batch_counts_each_program_once_with_repeats_and_redeliveries_not_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("events.redb")).unwrap();
        let of_program = |id: &str, program: &str| {
            let mut event = stored(id);
            event.event.attributes = vec![("programId".into(), program.into())];
            event
        };
        store.put(&[of_program("old", "7")]).await;
        let report = store
            .put(&[
                of_program("a", "7"),
                of_program("b", "8"),
                of_program("old", "7"),
                of_program("c", "7"),
                of_program("a", "7"),
                of_program("d", ""),
            ])
            .await;
        assert_eq!(report.stored, ["a", "b", "c", "d"]);
        assert_eq!(report.duplicates, ["old", "a"]);
        assert_eq!(
            report.counts,
            BTreeMap::from([("7".to_owned(), 3), ("8".to_owned(), 1)])
        );
        assert_eq!(store.count("7").unwrap(), 3);
        assert_eq!(store.count("8").unwrap(), 1);
        let redelivered = store.put(&[of_program("b", "8")]).await;
        assert_eq!(redelivered.counts, BTreeMap::from([("8".to_owned(), 1)]));
        assert_eq!(store.count("8").unwrap(), 1);
    }

    #[tokio::test]
    async fn a_stored_event_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("events.redb")).unwrap();
        store.put(&[stored("a")]).await;
        let mut forged = stored("a");
        forged.event.payload = b"overwritten".to_vec();
        let report = store.put(&[forged]).await;
        assert_eq!(report.duplicates, ["a"]);
        assert_eq!(store.get("a").unwrap(), Some(stored("a")));
    }
}
