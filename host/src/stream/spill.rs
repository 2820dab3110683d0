//! The spill file: records the producer gave up on after a client was told they were
//! accepted (`ACK=buffer`, or a client that stopped waiting). They are kept as JSON
//! lines under the data dir and put on the stream again when the host next starts.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::StreamEntry;

/// One spilled record, as a JSON line.
#[derive(Debug, Serialize, Deserialize)]
struct SpilledRecord {
    id: String,
    key: String,
    /// The record bytes, base64.
    data: String,
    /// Why the stream did not take it.
    reason: String,
}

/// An append-only JSON-lines file of records the stream did not take.
#[derive(Debug)]
pub struct SpillFile {
    path: PathBuf,
    writer: Mutex<Option<File>>,
}

impl SpillFile {
    /// The spill file at `path` (created on the first spilled record).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            writer: Mutex::new(None),
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry`, refused for `reason`, and syncs the file.
    pub fn append(&self, entry: &StreamEntry, reason: &str) -> std::io::Result<()> {
        let line = serde_json::to_string(&SpilledRecord {
            id: entry.id.clone(),
            key: entry.key.clone(),
            data: STANDARD.encode(&entry.data),
            reason: reason.to_owned(),
        })?;
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if writer.is_none() {
            *writer = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        let file = writer.as_mut().expect("opened above");
        writeln!(file, "{line}")?;
        file.sync_data()
    }

    /// Takes every spilled record out of the file (which is removed): the records to
    /// put on the stream again. Lines that cannot be read are kept in `PATH.unreadable`.
    pub fn take(&self) -> std::io::Result<Vec<StreamEntry>> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        *writer = None;
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut entries = Vec::new();
        let mut unreadable = Vec::new();
        for line in BufReader::new(file).lines() {
            let line = line?;
            match serde_json::from_str::<SpilledRecord>(&line)
                .ok()
                .and_then(|record| Some((STANDARD.decode(&record.data).ok()?, record)))
            {
                Some((data, record)) => entries.push(StreamEntry {
                    id: record.id,
                    key: record.key,
                    data,
                }),
                None if line.trim().is_empty() => {}
                None => unreadable.push(line),
            }
        }
        if !unreadable.is_empty() {
            let mut kept = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path.with_extension("unreadable"))?;
            for line in unreadable {
                writeln!(kept, "{line}")?;
            }
            kept.sync_data()?;
        }
        std::fs::remove_file(&self.path)?;
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> StreamEntry {
        StreamEntry {
            id: id.to_owned(),
            key: format!("key-{id}"),
            data: vec![0, 159, 146, 150],
        }
    }

    #[test]
    fn spilled_records_come_back_once_with_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let spill = SpillFile::new(dir.path().join("spill.jsonl"));
        assert!(spill.take().unwrap().is_empty());
        spill.append(&entry("a"), "throttled").unwrap();
        spill.append(&entry("b"), "throttled").unwrap();
        assert_eq!(spill.take().unwrap(), [entry("a"), entry("b")]);
        assert!(spill.take().unwrap().is_empty());
    }

    #[test]
    fn unreadable_lines_are_set_aside_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spill.jsonl");
        let spill = SpillFile::new(&path);
        spill.append(&entry("a"), "throttled").unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{not json\n")
            .unwrap();
        assert_eq!(spill.take().unwrap(), [entry("a")]);
        let kept = std::fs::read_to_string(path.with_extension("unreadable")).unwrap();
        assert_eq!(kept, "{not json\n");
    }
}
