//! Kinesis Data Streams through `PutRecords`.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use retry_policy::ErrorKind;
use retry_policy::aws::{failure, kind_of_code};

use super::{SinkError, StreamEntry, StreamSink};

/// How long one Kinesis call may take, retries included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// A Kinesis client from the environment's AWS configuration, at `endpoint` when given
/// (emulators); every call times out after five seconds.
pub async fn kinesis_client(endpoint: Option<&str>) -> Client {
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .load()
        .await;
    let mut kinesis = aws_sdk_kinesis::config::Builder::from(&shared);
    if let Some(endpoint) = endpoint {
        kinesis = kinesis.endpoint_url(endpoint);
    }
    Client::from_conf(kinesis.build())
}

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
