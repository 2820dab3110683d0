//! Dead letters appended to a JSON-lines file, for the embedded mode: one letter per
//! line, synced to disk before the record counts as handled.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use retry_policy::{ClassifiedError, ErrorKind};

use super::{DeadLetter, DeadLetterError, DeadLetterSink};

/// Dead letters in an append-only JSON-lines file; cheap to clone.
#[derive(Clone, Debug)]
pub struct JsonLinesDeadLetters {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl JsonLinesDeadLetters {
    /// Opens (or creates) the file at `path` for appending.
    pub fn open(path: &Path) -> Result<Self, DeadLetterError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|error| DeadLetterError {
                destination: path.display().to_string(),
                source: ClassifiedError::caused_by(
                    ErrorKind::AuthOrConfig,
                    error.to_string(),
                    error,
                ),
            })?;
        Ok(Self {
            path: path.to_owned(),
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// The file letters are appended to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&self, line: String) -> std::io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(line.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_data()
    }
}

#[async_trait]
impl DeadLetterSink for JsonLinesDeadLetters {
    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let sink = self.clone();
        let line = letter.to_json();
        let written = tokio::task::spawn_blocking(move || sink.append(line)).await;
        let source = match written {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => {
                ClassifiedError::caused_by(ErrorKind::Transient, error.to_string(), error)
            }
            Err(join) => {
                ClassifiedError::caused_by(ErrorKind::Transient, "the write task failed", join)
            }
        };
        Err(DeadLetterError {
            destination: self.path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::StreamRecord;

    #[tokio::test]
    async fn each_letter_is_one_json_line_with_reason_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead-letters.jsonl");
        let sink = JsonLinesDeadLetters::open(&path).unwrap();
        let record = StreamRecord {
            id: "7".into(),
            partition_key: "msg-7".into(),
            data: vec![0xff, 0x00],
        };
        sink.send(&DeadLetter::undecodable(&record, "bad bytes".into()))
            .await
            .unwrap();
        sink.send(&DeadLetter::undecodable(&record, "again".into()))
            .await
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["recordId"], "7");
        assert_eq!(lines[0]["kind"], "undecodable");
        assert_eq!(lines[0]["reason"], "bad bytes");
        assert_eq!(lines[0]["dataBase64"], "/wA=");
        assert_eq!(lines[0]["plugin"], serde_json::Value::Null);
    }
}
