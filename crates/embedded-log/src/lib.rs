//! The durable local event stream of the embedded mode: an append-only log of
//! stream records in a `redb` file, with named reader checkpoints.
//!
//! The host appends the records it would put on Kinesis; the in-process consumer reads
//! them after its checkpoint and moves the checkpoint once a batch is handled, so a
//! restart resumes where it stopped. Every append and every checkpoint is one committed
//! (fsynced) write transaction: what `append` returned survives a crash.
//!
//! Retention: [`EmbeddedLog::trim_consumed`] removes records every reader has handled,
//! beyond the most recent ones kept for replay; records a reader has not handled are
//! never removed. Opening the log compacts the file, returning the space of removed
//! records to the file system (redb reuses it in between).
//!
//! All calls block on disk I/O; async callers run them on a blocking thread
//! (`tokio::task::spawn_blocking`).
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

/// Sequence number → (partition key, record bytes).
const RECORDS: TableDefinition<u64, (&str, &[u8])> = TableDefinition::new("records");
/// Reader name → last sequence number the reader has handled.
const CHECKPOINTS: TableDefinition<&str, u64> = TableDefinition::new("checkpoints");

/// A durable, append-only log of stream records; cheap to clone (the database is
/// shared behind an `Arc`), and safe to use from several threads.
#[derive(Clone)]
pub struct EmbeddedLog {
    db: Arc<Database>,
    path: Arc<PathBuf>,
}

/// One record of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Position in the log: assigned on append, increasing, starting at 1.
    pub sequence: u64,
    /// Partition key (the message id for tracking events).
    pub key: String,
    /// The record bytes (a protobuf `TrackingEvent`).
    pub data: Vec<u8>,
}

/// The log file could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file could not be created or opened as a log.
    #[error("cannot open the event log {path}: {source}")]
    Open {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error, kept as the source.
        source: redb::DatabaseError,
    },
    /// A read or write transaction on the log failed.
    #[error("event log {path}: {source}")]
    Store {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error, kept as the source.
        source: Box<redb::Error>,
    },
}

impl EmbeddedLog {
    /// Opens the log at `path`, creating the file (and its tables) if it does not exist.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let mut db = Database::create(path).map_err(|source| LogError::Open {
            path: path.to_owned(),
            source,
        })?;
        db.compact().map_err(|source| LogError::Store {
            path: path.to_owned(),
            source: Box::new(source.into()),
        })?;
        let log = Self {
            db: Arc::new(db),
            path: Arc::new(path.to_owned()),
        };
        log.write(|txn| {
            txn.open_table(RECORDS)?;
            txn.open_table(CHECKPOINTS)?;
            Ok(())
        })?;
        Ok(log)
    }

    /// The file the log lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `records` (partition key, bytes) in one committed transaction and
    /// returns their sequence numbers, in order.
    pub fn append(&self, records: &[(String, Vec<u8>)]) -> Result<Vec<u64>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|txn| {
            let mut table = txn.open_table(RECORDS)?;
            let last = match table.last()? {
                Some((sequence, _)) => sequence.value(),
                None => 0,
            };
            let mut sequences = Vec::with_capacity(records.len());
            for (offset, (key, data)) in (1..).zip(records) {
                let sequence = last + offset;
                table.insert(sequence, (key.as_str(), data.as_slice()))?;
                sequences.push(sequence);
            }
            Ok(sequences)
        })
    }

    /// Up to `limit` records after sequence `after` (from the start when `None`), in order.
    pub fn read_after(&self, after: Option<u64>, limit: usize) -> Result<Vec<LogRecord>, LogError> {
        let first = match after {
            Some(sequence) => match sequence.checked_add(1) {
                Some(next) => next,
                None => return Ok(Vec::new()),
            },
            None => 0,
        };
        self.read(|txn| {
            let table = txn.open_table(RECORDS)?;
            let mut records = Vec::new();
            for entry in table.range(first..)?.take(limit) {
                let (sequence, value) = entry?;
                let (key, data) = value.value();
                records.push(LogRecord {
                    sequence: sequence.value(),
                    key: key.to_owned(),
                    data: data.to_vec(),
                });
            }
            Ok(records)
        })
    }

    /// The last sequence number `reader` has handled, or `None` if it has not started.
    pub fn checkpoint(&self, reader: &str) -> Result<Option<u64>, LogError> {
        self.read(|txn| {
            let table = txn.open_table(CHECKPOINTS)?;
            Ok(table.get(reader)?.map(|sequence| sequence.value()))
        })
    }

    /// Records that `reader` has handled every record up to and including `sequence`.
    pub fn set_checkpoint(&self, reader: &str, sequence: u64) -> Result<(), LogError> {
        self.write(|txn| {
            txn.open_table(CHECKPOINTS)?.insert(reader, sequence)?;
            Ok(())
        })
    }

    /// Removes the records that every reader has handled, except the `keep` most recent
    /// of them (kept for replay) and the log's last record (which carries its sequence
    /// numbering); returns how many were removed. Without readers nothing is removed.
    pub fn trim_consumed(&self, keep: u64) -> Result<u64, LogError> {
        self.write(|txn| {
            let handled = {
                let checkpoints = txn.open_table(CHECKPOINTS)?;
                let mut lowest: Option<u64> = None;
                for entry in checkpoints.iter()? {
                    let sequence = entry?.1.value();
                    lowest = Some(lowest.map_or(sequence, |low| low.min(sequence)));
                }
                lowest
            };
            let mut records = txn.open_table(RECORDS)?;
            let Some(last) = records.last()?.map(|(sequence, _)| sequence.value()) else {
                return Ok(0);
            };
            let Some(up_to) = handled
                .map(|handled| handled.min(last - 1))
                .and_then(|handled| handled.checked_sub(keep))
            else {
                return Ok(0);
            };
            let mut removed = 0;
            for entry in records.extract_from_if(..=up_to, |_, _| true)? {
                entry?;
                removed += 1;
            }
            Ok(removed)
        })
    }

    /// How many records the log holds.
    pub fn len(&self) -> Result<u64, LogError> {
        self.read(|txn| Ok(txn.open_table(RECORDS)?.len()?))
    }

    /// Whether the log holds no records.
    pub fn is_empty(&self) -> Result<bool, LogError> {
        Ok(self.len()? == 0)
    }

    fn write<T>(
        &self,
        body: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, LogError> {
        let run = || -> Result<T, redb::Error> {
            let txn = self.db.begin_write()?;
            let value = body(&txn)?;
            txn.commit()?;
            Ok(value)
        };
        run().map_err(|source| self.store_error(source))
    }

    fn read<T>(
        &self,
        body: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, LogError> {
        let run = || -> Result<T, redb::Error> { body(&self.db.begin_read()?) };
        run().map_err(|source| self.store_error(source))
    }

    fn store_error(&self, source: redb::Error) -> LogError {
        LogError::Store {
            path: self.path.as_ref().clone(),
            source: Box::new(source),
        }
    }
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(keys: &[&str]) -> Vec<(String, Vec<u8>)> {
        keys.iter()
            .map(|key| (key.to_string(), format!("data-{key}").into_bytes()))
            .collect()
    }

    #[test]
    fn appends_get_increasing_sequence_numbers_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(&dir.path().join("events.redb")).unwrap();
        assert!(log.is_empty().unwrap());
        assert_eq!(log.append(&records(&["a", "b"])).unwrap(), vec![1, 2]);
        assert_eq!(log.append(&records(&["c"])).unwrap(), vec![3]);
        assert_eq!(log.append(&[]).unwrap(), Vec::<u64>::new());
        assert_eq!(log.len().unwrap(), 3);

        let all = log.read_after(None, 10).unwrap();
        let keys: Vec<_> = all.iter().map(|record| record.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(all[1].data, b"data-b");
        assert_eq!(all[2].sequence, 3);

        let tail = log.read_after(Some(1), 1).unwrap();
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].key, "b");
        assert!(log.read_after(Some(3), 10).unwrap().is_empty());
        assert!(log.read_after(Some(u64::MAX), 10).unwrap().is_empty());
    }

    #[test]
    fn records_and_checkpoints_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.redb");
        {
            let log = EmbeddedLog::open(&path).unwrap();
            log.append(&records(&["a", "b", "c"])).unwrap();
            log.set_checkpoint("consumer", 2).unwrap();
        }
        let log = EmbeddedLog::open(&path).unwrap();
        assert_eq!(log.len().unwrap(), 3);
        assert_eq!(log.checkpoint("consumer").unwrap(), Some(2));
        assert_eq!(log.append(&records(&["d"])).unwrap(), vec![4]);
    }

    #[test]
    fn a_reader_resumes_after_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(&dir.path().join("events.redb")).unwrap();
        log.append(&records(&["a", "b", "c", "d"])).unwrap();
        assert_eq!(log.checkpoint("consumer").unwrap(), None);

        let first = log
            .read_after(log.checkpoint("consumer").unwrap(), 2)
            .unwrap();
        log.set_checkpoint("consumer", first[1].sequence).unwrap();
        let rest = log
            .read_after(log.checkpoint("consumer").unwrap(), 10)
            .unwrap();
        let keys: Vec<_> = rest.iter().map(|record| record.key.as_str()).collect();
        assert_eq!(keys, ["c", "d"]);
        // Readers are independent.
        assert_eq!(log.checkpoint("audit").unwrap(), None);
    }

    #[test]
    fn clones_share_one_log_across_threads() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(&dir.path().join("events.redb")).unwrap();
        let writers: Vec<_> = (0..4)
            .map(|thread| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for n in 0..5 {
                        log.append(&records(&[&format!("{thread}-{n}")])).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let all = log.read_after(None, 100).unwrap();
        assert_eq!(all.len(), 20);
        let sequences: Vec<_> = all.iter().map(|record| record.sequence).collect();
        assert_eq!(sequences, (1..=20).collect::<Vec<_>>());
    }

    #[test]
    fn trimming_keeps_unhandled_records_the_most_recent_handled_ones_and_the_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(&dir.path().join("log.redb")).unwrap();
        log.append(&records(&["a", "b", "c", "d", "e", "f"]))
            .unwrap();
        assert_eq!(log.trim_consumed(0).unwrap(), 0, "no reader yet");
        log.set_checkpoint("fast", 6).unwrap();
        log.set_checkpoint("slow", 4).unwrap();
        assert_eq!(log.trim_consumed(1).unwrap(), 3);
        let left: Vec<u64> = log
            .read_after(None, 10)
            .unwrap()
            .iter()
            .map(|record| record.sequence)
            .collect();
        assert_eq!(left, [4, 5, 6]);
        log.set_checkpoint("slow", 6).unwrap();
        assert_eq!(log.trim_consumed(0).unwrap(), 2);
        assert_eq!(log.append(&records(&["g"])).unwrap(), [7]);
    }

    #[test]
    fn reopening_compacts_a_trimmed_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        let log = EmbeddedLog::open(&path).unwrap();
        let big: Vec<(String, Vec<u8>)> = (0..200)
            .map(|i| (format!("k{i}"), vec![7u8; 16 * 1024]))
            .collect();
        log.append(&big).unwrap();
        log.set_checkpoint("consumer", 200).unwrap();
        log.trim_consumed(0).unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        drop(log);
        EmbeddedLog::open(&path).unwrap();
        let after = std::fs::metadata(&path).unwrap().len();
        assert!(after < before / 2, "{before} -> {after} bytes");
    }

    #[test]
    fn a_file_that_is_not_a_log_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.redb");
        std::fs::write(&path, b"this is not a redb file at all").unwrap();
        let error = EmbeddedLog::open(&path).unwrap_err();
        assert!(matches!(error, LogError::Open { .. }), "{error}");
    }
}
