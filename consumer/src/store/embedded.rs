//! The embedded event store: accepted events in a `redb` file, keyed by message id, for
//! the host's embedded mode. Each event is kept as its protobuf stream record without its
//! plugin stamps; it points to its set of stamps instead, which is stored once for all the
//! events the same plugin versions processed. A table counts the events stored per
//! program, updated in the same transaction. A file written before stamp sets (each record
//! with its stamps inline) is converted when it is opened.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use contract::{PluginStamp, TrackingEvent};
use prost::Message;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
    WriteTransaction,
};
use retry_policy::{ClassifiedError, Classify, ErrorKind};

use super::{EventStore, StoredEvent, WriteReport, program_of};

/// Message id → (its stamp set, its protobuf `TrackingEvent` without `processed_by`).
const EVENTS: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("stamped_events");
/// Stamp set id → the encoded [`StampSet`].
const STAMP_SETS: TableDefinition<u64, &[u8]> = TableDefinition::new("stamp_sets");
/// Encoded [`StampSet`] → its id, so that each distinct set is stored once.
const STAMP_SET_IDS: TableDefinition<&[u8], u64> = TableDefinition::new("stamp_set_ids");
/// Program id → events stored for it.
const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("program_counts");
/// The first format: message id → protobuf `TrackingEvent` with its stamps inline.
const INLINE_EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("events");

/// The stamp set of events no plugin processed; never stored.
const NO_STAMPS: u64 = 0;

/// The plugins that processed an event, in order, as the store keeps them.
#[derive(Clone, PartialEq, Message)]
struct StampSet {
    #[prost(message, repeated, tag = "1")]
    stamps: Vec<PluginStamp>,
}

/// A batch to write: its distinct stamp sets, encoded (empty: no plugins), and its events.
struct Batch {
    stamp_sets: Vec<Vec<u8>>,
    events: Vec<Encoded>,
}

/// An event to write: its id, its program, its stamp set (an index into the batch's) and
/// its encoded record.
struct Encoded {
    id: String,
    program: Option<String>,
    stamp_set: usize,
    record: Vec<u8>,
}

impl Batch {
    fn encode(events: &[StoredEvent]) -> Self {
        let mut distinct: Vec<&[PluginStamp]> = Vec::new();
        let events = events
            .iter()
            .map(|event| {
                let stamps = event.processed_by.as_slice();
                let stamp_set = match distinct.iter().position(|set| *set == stamps) {
                    Some(index) => index,
                    None => {
                        distinct.push(stamps);
                        distinct.len() - 1
                    }
                };
                Encoded {
                    id: event.event.id.clone(),
                    program: program_of(event).map(str::to_owned),
                    stamp_set,
                    record: event.to_record_without_stamps().to_bytes(),
                }
            })
            .collect();
        let stamp_sets = distinct
            .into_iter()
            .map(|stamps| {
                StampSet {
                    stamps: stamps.to_vec(),
                }
                .encode_to_vec()
            })
            .collect();
        Self { stamp_sets, events }
    }
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
    /// A stored event cannot be read back: its record or its plugin stamps.
    #[error("event store {path}: event {id} is corrupt: {reason}")]
    Corrupt {
        /// The file at fault.
        path: PathBuf,
        /// The event id.
        id: String,
        /// What is wrong with it.
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
        store
            .convert_inline_events()
            .map_err(|source| store.store_error(source))?;
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
        let found = self.read(|txn| {
            let Some(row) = txn.open_table(EVENTS)?.get(id)? else {
                return Ok(None);
            };
            let (stamp_set, record) = row.value();
            let stamps = stored_stamps(txn, stamp_set)?;
            Ok(Some((record.to_vec(), stamps)))
        })?;
        found
            .map(|(record, stamps)| self.decode(id, &record, &stamps))
            .transpose()
    }

    /// Every stored event, in message id order.
    pub fn all(&self) -> Result<Vec<StoredEvent>, EmbeddedStoreError> {
        let (rows, stamp_sets) = self.read(|txn| {
            let mut rows = Vec::new();
            let mut stamp_sets = BTreeMap::new();
            for entry in txn.open_table(EVENTS)?.iter()? {
                let (id, row) = entry?;
                let (stamp_set, record) = row.value();
                if let Entry::Vacant(entry) = stamp_sets.entry(stamp_set) {
                    entry.insert(stored_stamps(txn, stamp_set)?);
                }
                rows.push((id.value().to_owned(), stamp_set, record.to_vec()));
            }
            Ok((rows, stamp_sets))
        })?;
        rows.into_iter()
            .map(|(id, stamp_set, record)| self.decode(&id, &record, &stamp_sets[&stamp_set]))
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
    fn write_all(&self, batch: &Batch) -> Result<WriteReport, EmbeddedStoreError> {
        let run = || -> Result<WriteReport, redb::Error> {
            let mut report = WriteReport::default();
            let txn = self.db.begin_write()?;
            {
                let stamp_set_ids = batch
                    .stamp_sets
                    .iter()
                    .map(|set| stamp_set_id(&txn, set))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut table = txn.open_table(EVENTS)?;
                let mut added: BTreeMap<&str, u64> = BTreeMap::new();
                for event in &batch.events {
                    let new = table.get(event.id.as_str())?.is_none();
                    if new {
                        let row = (stamp_set_ids[event.stamp_set], event.record.as_slice());
                        table.insert(event.id.as_str(), row)?;
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

    /// Creates the tables and moves the events of a file written before stamp sets into
    /// them, in one transaction. A record that does not decode is moved as it is (reading
    /// it still reports it corrupt).
    fn convert_inline_events(&self) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        let has_inline = txn
            .list_tables()?
            .any(|table| table.name() == INLINE_EVENTS.name());
        {
            let mut events = txn.open_table(EVENTS)?;
            txn.open_table(COUNTS)?;
            txn.open_table(STAMP_SETS)?;
            txn.open_table(STAMP_SET_IDS)?;
            if has_inline {
                for entry in txn.open_table(INLINE_EVENTS)?.iter()? {
                    let (id, bytes) = entry?;
                    let (stamp_set, record) = match TrackingEvent::from_bytes(bytes.value()) {
                        Ok(mut record) => {
                            let stamps = std::mem::take(&mut record.processed_by);
                            let set = StampSet { stamps }.encode_to_vec();
                            (stamp_set_id(&txn, &set)?, record.to_bytes())
                        }
                        Err(_) => (NO_STAMPS, bytes.value().to_vec()),
                    };
                    events.insert(id.value(), (stamp_set, record.as_slice()))?;
                }
            }
        }
        if has_inline {
            txn.delete_table(INLINE_EVENTS)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn read<T>(
        &self,
        body: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, EmbeddedStoreError> {
        let run = || -> Result<T, redb::Error> { body(&self.db.begin_read()?) };
        run().map_err(|source| self.store_error(source))
    }

    fn decode(
        &self,
        id: &str,
        record: &[u8],
        stamps: &StoredStamps,
    ) -> Result<StoredEvent, EmbeddedStoreError> {
        let corrupt = |reason: String| EmbeddedStoreError::Corrupt {
            path: self.path.as_ref().clone(),
            id: id.to_owned(),
            reason,
        };
        let mut record = TrackingEvent::from_bytes(record).map_err(|e| corrupt(e.to_string()))?;
        record.processed_by = match stamps {
            StoredStamps::None => Vec::new(),
            StoredStamps::Set(set) => {
                StampSet::decode(set.as_slice())
                    .map_err(|e| corrupt(format!("undecodable plugin stamps: {e}")))?
                    .stamps
            }
            StoredStamps::Missing(id) => {
                return Err(corrupt(format!("its plugin stamp set {id} is missing")));
            }
        };
        Ok(StoredEvent::from_record(record))
    }

    fn store_error(&self, source: redb::Error) -> EmbeddedStoreError {
        EmbeddedStoreError::Store {
            path: self.path.as_ref().clone(),
            source: Box::new(source),
        }
    }
}

/// The id of the encoded stamp set `set`, stored now if it is new.
fn stamp_set_id(txn: &WriteTransaction, set: &[u8]) -> Result<u64, redb::Error> {
    if set.is_empty() {
        return Ok(NO_STAMPS);
    }
    let mut ids = txn.open_table(STAMP_SET_IDS)?;
    if let Some(id) = ids.get(set)? {
        return Ok(id.value());
    }
    let mut sets = txn.open_table(STAMP_SETS)?;
    let id = sets.last()?.map_or(NO_STAMPS, |(id, _)| id.value()) + 1;
    sets.insert(id, set)?;
    ids.insert(set, id)?;
    Ok(id)
}

/// A stored event's stamp set, as read.
enum StoredStamps {
    /// No plugin processed the event.
    None,
    /// The encoded set.
    Set(Vec<u8>),
    /// The event points to a set the file does not hold.
    Missing(u64),
}

/// The stamp set with id `stamp_set`.
fn stored_stamps(txn: &redb::ReadTransaction, stamp_set: u64) -> Result<StoredStamps, redb::Error> {
    if stamp_set == NO_STAMPS {
        return Ok(StoredStamps::None);
    }
    let sets = txn.open_table(STAMP_SETS)?;
    Ok(match sets.get(stamp_set)? {
        Some(set) => StoredStamps::Set(set.value().to_vec()),
        None => StoredStamps::Missing(stamp_set),
    })
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn put(&self, events: &[StoredEvent]) -> WriteReport {
        let batch = Batch::encode(events);
        let store = self.clone();
        let written = tokio::task::spawn_blocking(move || store.write_all(&batch)).await;
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

    #[tokio::test]
    async fn events_the_same_plugins_processed_share_one_stored_stamp_set() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("events.redb")).unwrap();
        let mut other = stored("c");
        other.processed_by.push(PluginStamp {
            name: "enrich".into(),
            version: "11".repeat(32),
        });
        let mut unprocessed = stored("d");
        unprocessed.processed_by.clear();
        store
            .put(&[stored("a"), stored("b"), other.clone(), unprocessed.clone()])
            .await;
        store.put(&[stored("e")]).await;
        assert_eq!(store.get("a").unwrap(), Some(stored("a")));
        assert_eq!(store.get("c").unwrap(), Some(other));
        assert_eq!(store.get("d").unwrap(), Some(unprocessed));
        assert_eq!(store.get("e").unwrap(), Some(stored("e")));
        assert_eq!(store.all().unwrap().len(), 5);
        let txn = store.db.begin_read().unwrap();
        assert_eq!(txn.open_table(STAMP_SETS).unwrap().len().unwrap(), 2);
    }

    #[tokio::test]
    async fn a_file_with_stamps_inline_is_converted_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut inline = txn.open_table(INLINE_EVENTS).unwrap();
                let event = stored("a");
                let mut record = event.to_record_without_stamps();
                record.processed_by = event.processed_by;
                inline.insert("a", record.to_bytes().as_slice()).unwrap();
                inline.insert("bad", b"\xff\xff".as_slice()).unwrap();
                txn.open_table(COUNTS).unwrap().insert("212313", 1).unwrap();
            }
            txn.commit().unwrap();
        }
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(store.get("a").unwrap(), Some(stored("a")));
        assert!(matches!(
            store.get("bad"),
            Err(EmbeddedStoreError::Corrupt { id, .. }) if id == "bad"
        ));
        assert_eq!(store.count("212313").unwrap(), 1);
        let tables: Vec<String> = (store.db.begin_read().unwrap().list_tables().unwrap())
            .map(|table| table.name().to_owned())
            .collect();
        assert!(!tables.contains(&"events".to_owned()), "{tables:?}");
        drop(store);
        let reopened = EmbeddedStore::open(&path).unwrap();
        assert_eq!(reopened.put(&[stored("a")]).await.duplicates, ["a"]);
        assert_eq!(reopened.count("212313").unwrap(), 1);
    }

    #[tokio::test]
    async fn an_event_whose_stamp_set_is_missing_reads_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("events.redb")).unwrap();
        let txn = store.db.begin_write().unwrap();
        let record = stored("a").to_record_without_stamps().to_bytes();
        (txn.open_table(EVENTS).unwrap())
            .insert("a", (7, record.as_slice()))
            .unwrap();
        txn.commit().unwrap();
        let error = store.get("a").unwrap_err().to_string();
        assert!(error.contains("stamp set 7 is missing"), "{error}");
    }
}
