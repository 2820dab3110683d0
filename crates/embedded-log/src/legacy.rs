//! The log's earlier format, a `redb` file: its records a reader has not handled are
//! moved into a segment log once, when a host that wrote it is upgraded.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, TableDefinition};

use crate::{EmbeddedLog, LogError};

/// Sequence number → (partition key, record bytes).
const RECORDS: TableDefinition<u64, (&str, &[u8])> = TableDefinition::new("records");
/// Reader name → last sequence number the reader has handled.
const CHECKPOINTS: TableDefinition<&str, u64> = TableDefinition::new("checkpoints");

/// Records moved per append.
const IMPORT_CHUNK: usize = 1_000;

impl EmbeddedLog {
    /// Appends the records of the `redb` log at `legacy` that `reader` has not handled,
    /// in order, then renames the file to `<name>.imported` so they are moved once;
    /// returns how many there were. They get new sequence numbers. Should the rename
    /// fail after the append, the next import appends them again, and the consumer's
    /// store keeps each event id once.
    pub fn import_redb_log(&self, legacy: &Path, reader: &str) -> Result<u64, LogError> {
        let legacy_error = |error: redb::Error| LogError::Io {
            path: legacy.to_owned(),
            source: std::io::Error::other(error),
        };
        let db = Database::open(legacy).map_err(|error| legacy_error(error.into()))?;
        let txn = db
            .begin_read()
            .map_err(|error| legacy_error(error.into()))?;
        let handled = match txn.open_table(CHECKPOINTS) {
            Ok(table) => table
                .get(reader)
                .map_err(|error| legacy_error(error.into()))?
                .map(|sequence| sequence.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(error) => return Err(legacy_error(error.into())),
        };
        let mut imported = 0;
        match txn.open_table(RECORDS) {
            Ok(table) => {
                let from = handled.map_or(0, |sequence| sequence.saturating_add(1));
                let mut chunk = Vec::with_capacity(IMPORT_CHUNK);
                for entry in table
                    .range(from..)
                    .map_err(|error| legacy_error(error.into()))?
                {
                    let (_, value) = entry.map_err(|error| legacy_error(error.into()))?;
                    let (key, data) = value.value();
                    chunk.push((key.to_owned(), data.to_vec()));
                    if chunk.len() == IMPORT_CHUNK {
                        imported += self.append(&chunk)?.len() as u64;
                        chunk.clear();
                    }
                }
                imported += self.append(&chunk)?.len() as u64;
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(error) => return Err(legacy_error(error.into())),
        }
        drop(txn);
        drop(db);
        std::fs::rename(legacy, imported_name(legacy)).map_err(|source| LogError::Io {
            path: legacy.to_owned(),
            source,
        })?;
        Ok(imported)
    }
}

/// Where an imported `redb` log is kept: `<name>.imported` beside it.
fn imported_name(legacy: &Path) -> PathBuf {
    let mut name = legacy.as_os_str().to_owned();
    name.push(".imported");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `redb` log as the earlier host wrote it: `records` numbered from 1, and the
    /// `consumer` reader at `handled`.
    fn legacy_log(path: &Path, records: &[(&str, &str)], handled: Option<u64>) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(RECORDS).unwrap();
            for (sequence, (key, data)) in (1..).zip(records) {
                table.insert(sequence, (*key, data.as_bytes())).unwrap();
            }
            let mut checkpoints = txn.open_table(CHECKPOINTS).unwrap();
            if let Some(handled) = handled {
                checkpoints.insert("consumer", handled).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    #[test]
    fn the_unhandled_records_of_a_redb_log_move_once() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = dir.path().join("stream.redb");
        legacy_log(&legacy, &[("a", "1"), ("b", "2"), ("c", "3")], Some(1));
        let log = EmbeddedLog::open(&dir.path().join("stream-log")).unwrap();
        log.append(&[("new".to_owned(), b"0".to_vec())]).unwrap();

        assert_eq!(log.import_redb_log(&legacy, "consumer").unwrap(), 2);
        let keys: Vec<String> = log
            .read_after(None, 10)
            .unwrap()
            .into_iter()
            .map(|record| format!("{}={}", record.key, String::from_utf8_lossy(&record.data)))
            .collect();
        assert_eq!(keys, ["new=0", "b=2", "c=3"]);
        assert!(!legacy.exists(), "moved aside once imported");
        assert!(dir.path().join("stream.redb.imported").exists());
    }

    #[test]
    fn a_redb_log_no_reader_started_moves_whole() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = dir.path().join("stream.redb");
        legacy_log(&legacy, &[("a", "1"), ("b", "2")], None);
        let log = EmbeddedLog::open(&dir.path().join("stream-log")).unwrap();
        assert_eq!(log.import_redb_log(&legacy, "consumer").unwrap(), 2);
        assert_eq!(log.len().unwrap(), 2);
    }
}
