//! The embedded driver: the host's in-process consumer loop over the durable local
//! log ([`EmbeddedLog`]). It reads after its checkpoint, hands each batch to the
//! consumer and moves the checkpoint past what was handled, so a restart resumes where
//! it stopped; records that failed retryably are read again after a backoff.
//!
//! ```ignore
//! let consumer = Arc::new(Consumer::new(chain, store, dead_letters, core_data));
//! tokio::spawn(run_embedded(log.clone(), consumer, shutdown_signal()));
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use embedded_log::{EmbeddedLog, LogError, LogRecord};
use retry_policy::RetryPolicy;

use crate::handler::{BatchReport, Consumer, StreamRecord};

/// The checkpoint name the embedded consumer uses in the log.
pub const DEFAULT_READER: &str = "consumer";

/// How the embedded loop reads the log.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Checkpoint name in the log.
    pub reader: String,
    /// Most records per batch.
    pub batch_size: usize,
    /// Wait before looking again when the log had less than a full batch.
    pub idle_wait: Duration,
    /// Waits before reading failed records again (as the stream would redeliver them;
    /// the wait grows per failed batch). A record that keeps failing becomes a dead
    /// letter at the consumer's attempt limit, so it never stalls the log.
    pub retry: RetryPolicy,
    /// Handled records kept in the log for replay; older handled ones are removed.
    pub keep_handled: u64,
}

/// Batches handled between two trims of the log.
const BATCHES_PER_TRIM: u32 = 50;

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            reader: DEFAULT_READER.to_owned(),
            batch_size: 100,
            idle_wait: Duration::from_millis(20),
            retry: RetryPolicy::forever(Duration::from_millis(100), Duration::from_secs(5)),
            keep_handled: 100_000,
        }
    }
}

/// The log could not be read or the checkpoint not written.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedDriverError {
    /// A log operation failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The blocking log task did not finish.
    #[error("the event log task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Runs the embedded consumer with default options until `shutdown` completes; the
/// batch in progress is finished first. Meant to be spawned by the host.
pub async fn run_embedded(
    log: EmbeddedLog,
    consumer: Arc<Consumer>,
    shutdown: impl Future<Output = ()>,
) {
    run_embedded_with(log, consumer, EmbeddedOptions::default(), shutdown).await;
}

/// Runs the embedded consumer with `options` until `shutdown` completes.
pub async fn run_embedded_with(
    log: EmbeddedLog,
    consumer: Arc<Consumer>,
    options: EmbeddedOptions,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut delays = options.retry.delays();
    let mut batches_since_trim = 0;
    tracing::info!(log = %log.path().display(), reader = %options.reader, "embedded consumer started");
    loop {
        let result = consume_batch(&log, &consumer, &options).await;
        let idle = matches!(&result, Ok(report) if report.records == 0);
        if !idle {
            batches_since_trim += 1;
        }
        if batches_since_trim >= BATCHES_PER_TRIM || (idle && batches_since_trim > 0) {
            batches_since_trim = 0;
            trim(&log, options.keep_handled).await;
        }
        let wait = match result {
            Ok(report) if report.failures.is_empty() => {
                delays = options.retry.delays();
                // A full batch means more is waiting; a partial one that the log is
                // drained, and reading again at once would commit a few records at a
                // time (two fsyncs each) instead of letting the next batch fill up.
                if report.records >= options.batch_size {
                    Duration::ZERO
                } else {
                    options.idle_wait
                }
            }
            Ok(_) => delays.next().unwrap_or(options.retry.max_delay),
            Err(error) => {
                tracing::error!(%error, "embedded consumer cannot read the log; retrying");
                delays.next().unwrap_or(options.retry.max_delay)
            }
        };
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!(reader = %options.reader, "embedded consumer stopped");
}

/// Reads one batch after the checkpoint, handles it, and moves the checkpoint to the
/// last record before the first failure (or the end of the batch).
pub async fn consume_batch(
    log: &EmbeddedLog,
    consumer: &Consumer,
    options: &EmbeddedOptions,
) -> Result<BatchReport, EmbeddedDriverError> {
    let reader = options.reader.clone();
    let batch_size = options.batch_size.max(1);
    let records = blocking(log, move |log| {
        let checkpoint = log.checkpoint(&reader)?;
        log.read_after(checkpoint, batch_size)
    })
    .await?;
    if records.is_empty() {
        return Ok(BatchReport::default());
    }
    let sequences: Vec<u64> = records.iter().map(|record| record.sequence).collect();
    let report = consumer
        .handle(records.into_iter().map(stream_record).collect())
        .await;
    let first_failure = report
        .failed_ids()
        .filter_map(|id| id.parse::<u64>().ok())
        .min();
    let handled_up_to = sequences
        .iter()
        .copied()
        .take_while(|sequence| first_failure.is_none_or(|failed| *sequence < failed))
        .last();
    if let Some(sequence) = handled_up_to {
        let reader = options.reader.clone();
        blocking(log, move |log| log.set_checkpoint(&reader, sequence)).await?;
    }
    Ok(report)
}

/// Removes handled records beyond the `keep` most recent from the log.
async fn trim(log: &EmbeddedLog, keep: u64) {
    match blocking(log, move |log| log.trim_consumed(keep)).await {
        Ok(0) => {}
        Ok(removed) => tracing::debug!(removed, "handled records trimmed from the log"),
        Err(error) => tracing::warn!(%error, "cannot trim the embedded log"),
    }
}

fn stream_record(record: LogRecord) -> StreamRecord {
    StreamRecord {
        id: record.sequence.to_string(),
        partition_key: record.key,
        data: record.data,
    }
}

/// Runs a log operation on a blocking thread (appends and checkpoints fsync).
async fn blocking<T: Send + 'static>(
    log: &EmbeddedLog,
    operation: impl FnOnce(&EmbeddedLog) -> Result<T, LogError> + Send + 'static,
) -> Result<T, EmbeddedDriverError> {
    let log = log.clone();
    tokio::task::spawn_blocking(move || operation(&log))
        .await?
        .map_err(EmbeddedDriverError::from)
}
