//! Kinesis Data Streams through `PutRecords`.

use async_trait::async_trait;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use retry_policy::ErrorKind;
use retry_policy::aws::{failure, kind_of_code};

use super::{SinkError, StreamEntry, StreamSink};

/// A Kinesis stream.
pub struct KinesisSink {
    client: Client,
    stream_name: String,
}

impl KinesisSink {
    /// Puts records on `stream_name` with `client`.
    pub fn new(client: Client, stream_name: String) -> Self {
        Self {
            client,
            stream_name,
        }
    }
}

#[async_trait]
impl StreamSink for KinesisSink {
    async fn put(&self, entries: &[StreamEntry]) -> Result<Vec<Result<(), SinkError>>, SinkError> {
        let records = entries
            .iter()
            .map(|entry| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(entry.data.clone()))
                    .partition_key(&entry.key)
                    .build()
                    .map_err(|error| {
                        SinkError::caused_by(ErrorKind::Permanent, error.to_string(), error)
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .put_records()
            .stream_name(&self.stream_name)
            .set_records(Some(records))
            .send()
            .await
            .map_err(|error| failure(&format!("PutRecords on {}", self.stream_name), error))?;
        Ok(output
            .records()
            .iter()
            .map(|record| match record.error_code() {
                None => Ok(()),
                Some(code) => Err(SinkError::new(
                    kind_of_code(code),
                    format!("{code}: {}", record.error_message().unwrap_or_default()),
                )),
            })
            .collect())
    }

    fn name(&self) -> &'static str {
        "kinesis"
    }
}
