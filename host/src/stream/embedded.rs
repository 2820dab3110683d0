//! The embedded durable log (segment files) standing in for Kinesis on one machine.

use async_trait::async_trait;
use embedded_log::EmbeddedLog;
use retry_policy::ErrorKind;

use super::{SinkError, StreamEntry, StreamSink};

/// Appends batches to the embedded log; a batch is one write, on disk when it returns.
pub struct EmbeddedSink {
    log: EmbeddedLog,
}

impl EmbeddedSink {
    /// A sink appending to `log`.
    pub fn new(log: EmbeddedLog) -> Self {
        Self { log }
    }
}

#[async_trait]
impl StreamSink for EmbeddedSink {
    async fn put(&self, entries: &[StreamEntry]) -> Result<Vec<Result<(), SinkError>>, SinkError> {
        let log = self.log.clone();
        let records: Vec<(String, Vec<u8>)> = entries
            .iter()
            .map(|entry| (entry.key.clone(), entry.data.clone()))
            .collect();
        let appended = tokio::task::spawn_blocking(move || log.append(&records))
            .await
            .map_err(|error| {
                SinkError::caused_by(
                    ErrorKind::Transient,
                    "the embedded log writer stopped",
                    error,
                )
            })?
            .map_err(|error| {
                SinkError::caused_by(ErrorKind::Transient, error.to_string(), error)
            })?;
        Ok(appended.iter().map(|_| Ok(())).collect())
    }

    fn name(&self) -> &'static str {
        "embedded"
    }
}
