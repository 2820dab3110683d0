//! A local Kinesis driver: `ListShards`, then `GetShardIterator`/`GetRecords` per shard,
//! with a checkpoint per shard. It plays the event source mapping where there is no
//! Lambda service: against emulators (kinesalite) in tests, and in local runs.
//!
//! Like the event source mapping, a batch with failures moves the checkpoint only to
//! the record before the first failure, so that record and the ones after it are read
//! again on the next poll.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::ShardIteratorType;
use retry_policy::aws::failure;
use retry_policy::{ClassifiedError, Classify, ErrorKind};

use crate::handler::{BatchReport, Consumer, StreamRecord};

/// Most records read per `GetRecords` call by default.
pub const DEFAULT_BATCH_SIZE: i32 = 100;

/// `GetRecords` calls per shard in one [`KinesisPoller::poll_once`], at most.
const MAX_READS_PER_POLL: usize = 100;

/// Reads a Kinesis stream shard by shard and hands each batch to the consumer.
pub struct KinesisPoller {
    client: Client,
    stream_name: String,
    consumer: Arc<Consumer>,
    batch_size: i32,
    checkpoints: HashMap<String, String>,
}

/// A Kinesis call failed.
#[derive(Debug, thiserror::Error)]
#[error("Kinesis poll of stream {stream}: {source}")]
pub struct PollError {
    /// The stream.
    pub stream: String,
    /// The failed call, classified.
    #[source]
    pub source: ClassifiedError,
}

impl Classify for PollError {
    fn kind(&self) -> ErrorKind {
        self.source.kind()
    }
}

impl KinesisPoller {
    /// A poller of `stream_name` starting at the oldest record of every shard.
    pub fn new(client: Client, stream_name: impl Into<String>, consumer: Arc<Consumer>) -> Self {
        Self {
            client,
            stream_name: stream_name.into(),
            consumer,
            batch_size: DEFAULT_BATCH_SIZE,
            checkpoints: HashMap::new(),
        }
    }

    /// Reads at most `batch_size` records per `GetRecords` call (and consumer batch).
    pub fn with_batch_size(mut self, batch_size: i32) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Resumes from `checkpoints` (shard id → last handled sequence number).
    pub fn with_checkpoints(mut self, checkpoints: HashMap<String, String>) -> Self {
        self.checkpoints = checkpoints;
        self
    }

    /// Shard id → sequence number of the last record handled on that shard.
    pub fn checkpoints(&self) -> &HashMap<String, String> {
        &self.checkpoints
    }

    /// Reads every shard up to its end (or its first failed record) once, and returns
    /// what became of the records read.
    pub async fn poll_once(&mut self) -> Result<BatchReport, PollError> {
        let mut report = BatchReport::default();
        for shard_id in self.shard_ids().await? {
            report.absorb(self.poll_shard(&shard_id).await?);
        }
        Ok(report)
    }

    /// Polls every `interval` until `shutdown` completes; Kinesis errors are logged and
    /// retried on the next poll.
    pub async fn run(&mut self, interval: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.poll_once().await {
                Ok(report) if report.records > 0 => {
                    tracing::debug!(
                        records = report.records,
                        failed = report.failures.len(),
                        "polled"
                    )
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "polling failed; retrying"),
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    async fn shard_ids(&self) -> Result<Vec<String>, PollError> {
        let mut shard_ids = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let request = match &next_token {
                // With a token, the stream name must not be repeated.
                Some(token) => self.client.list_shards().next_token(token),
                None => self.client.list_shards().stream_name(&self.stream_name),
            };
            let output = request
                .send()
                .await
                .map_err(|error| self.error("ListShards", error))?;
            shard_ids.extend(
                output
                    .shards()
                    .iter()
                    .map(|shard| shard.shard_id().to_owned()),
            );
            match output.next_token() {
                Some(token) => next_token = Some(token.to_owned()),
                None => return Ok(shard_ids),
            }
        }
    }

    async fn poll_shard(&mut self, shard_id: &str) -> Result<BatchReport, PollError> {
        let mut report = BatchReport::default();
        let mut iterator = self.iterator(shard_id).await?;
        for _ in 0..MAX_READS_PER_POLL {
            let Some(current) = iterator else { break };
            let output = self
                .client
                .get_records()
                .shard_iterator(current)
                .limit(self.batch_size)
                .send()
                .await
                .map_err(|error| self.error("GetRecords", error))?;
            iterator = output.next_shard_iterator().map(str::to_owned);
            if output.records().is_empty() {
                break;
            }
            let records: Vec<StreamRecord> = output
                .records()
                .iter()
                .map(|record| StreamRecord {
                    id: record.sequence_number().to_owned(),
                    partition_key: record.partition_key().unwrap_or_default().to_owned(),
                    data: record.data().as_ref().to_vec(),
                })
                .collect();
            let sequences: Vec<String> = records.iter().map(|record| record.id.clone()).collect();
            let batch = self.consumer.handle(records).await;
            let first_failure = batch
                .failed_ids()
                .filter_map(|id| sequences.iter().position(|sequence| sequence == id))
                .min();
            let handled_up_to = match first_failure {
                Some(0) => None,
                Some(failed) => sequences.get(failed - 1),
                None => sequences.last(),
            };
            if let Some(sequence) = handled_up_to {
                self.checkpoints
                    .insert(shard_id.to_owned(), sequence.clone());
            }
            let stop = first_failure.is_some();
            report.absorb(batch);
            if stop {
                break;
            }
        }
        Ok(report)
    }

    /// An iterator after the shard's checkpoint, or at its oldest record.
    async fn iterator(&self, shard_id: &str) -> Result<Option<String>, PollError> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream_name)
            .shard_id(shard_id);
        let request = match self.checkpoints.get(shard_id) {
            Some(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(sequence),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let output = request
            .send()
            .await
            .map_err(|error| self.error("GetShardIterator", error))?;
        Ok(output.shard_iterator().map(str::to_owned))
    }

    fn error<E>(&self, operation: &'static str, error: SdkError<E, HttpResponse>) -> PollError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        PollError {
            stream: self.stream_name.clone(),
            source: failure(operation, error),
        }
    }
}
