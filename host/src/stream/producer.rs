//! Batching producer: a bounded buffer in front of a [`StreamSink`], batches of at most
//! 500 records and 5 MiB, several batches in flight, retries of only the failed records
//! and only while their failure is retryable (a throttle or a transient fault), with
//! exponential backoff.
//!
//! One record never holds the others: records Kinesis would refuse are refused before
//! they are queued, a batch the stream refuses as a whole for a permanent reason is
//! split until the bad record is alone, and a batch being retried holds only its own
//! slot. Records given up on after their client was told they were accepted
//! (`ACK=buffer`) go to the [`SpillFile`], are counted and logged with their ids.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use retry_policy::{Classify, ErrorKind, RetryPolicy};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::{SpillFile, StreamEntry, StreamSink, partition_key_problem};

/// Producer limits and retry policy.
#[derive(Clone, Debug)]
pub struct ProducerSettings {
    /// Records buffered before callers get [`StreamError::Backpressure`].
    pub buffer_records: usize,
    /// Most records per put (Kinesis: 500).
    pub max_batch_records: usize,
    /// Most bytes per put (Kinesis: 5 MiB).
    pub max_batch_bytes: usize,
    /// Largest single record (Kinesis: 1 MiB).
    pub max_record_bytes: usize,
    /// Batches being put (or retried) at once.
    pub max_in_flight_batches: usize,
    /// How long a batch waits for more records before it is sent (zero: it takes
    /// the records waiting when a delivery slot frees up, and goes).
    pub linger: Duration,
    /// Attempts per record and the waits between them, for retryable failures.
    pub retry: RetryPolicy,
    /// Where records go that were given up on while nobody waited for them; `None`
    /// logs them only.
    pub spill: Option<Arc<SpillFile>>,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        Self {
            buffer_records: 10_000,
            max_batch_records: 500,
            max_batch_bytes: 5 << 20,
            max_record_bytes: 1 << 20,
            max_in_flight_batches: 4,
            linger: Duration::ZERO,
            retry: RetryPolicy::default(),
            spill: None,
        }
    }
}

/// Why records were not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The buffer is full; the caller should retry later.
    #[error("the stream buffer is full")]
    Backpressure,
    /// A record is larger than the stream accepts.
    #[error("a record of {0} bytes exceeds the stream's record limit")]
    TooLarge(usize),
    /// The stream would refuse a record as it is (its partition key).
    #[error("{0}")]
    InvalidRecord(String),
    /// The stream refused the record: permanently, or on every attempt. Its message is
    /// one sentence for clients; `reason` (the stream's own words) is for the log.
    #[error("the stream did not take the records ({kind}, {attempts} attempts)")]
    Failed {
        /// Attempts made.
        attempts: usize,
        /// What kind of failure the last refusal was.
        kind: ErrorKind,
        /// The last refusal, for the log.
        reason: String,
    },
    /// The producer is shut down.
    #[error("the stream producer is shut down")]
    Closed,
}

struct Pending {
    entry: StreamEntry,
    ack: oneshot::Sender<Result<(), StreamError>>,
}

/// Accepts records from request handlers and delivers them in batches.
#[derive(Clone)]
pub struct StreamProducer {
    inner: Arc<Inner>,
}

struct Inner {
    sender: RwLock<Option<mpsc::Sender<Pending>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    buffered: Arc<AtomicUsize>,
    max_record_bytes: usize,
    sink_name: &'static str,
    spill: Option<Arc<SpillFile>>,
}

impl StreamProducer {
    /// Starts the delivery task for `sink`.
    pub fn start(sink: Arc<dyn StreamSink>, settings: ProducerSettings) -> Self {
        let (sender, receiver) = mpsc::channel(settings.buffer_records.max(1));
        let buffered = Arc::new(AtomicUsize::new(0));
        let sink_name = sink.name();
        let max_record_bytes = settings.max_record_bytes;
        let spill = settings.spill.clone();
        let worker = tokio::spawn(deliver_batches(sink, receiver, settings, buffered.clone()));
        Self {
            inner: Arc::new(Inner {
                sender: RwLock::new(Some(sender)),
                worker: Mutex::new(Some(worker)),
                buffered,
                max_record_bytes,
                sink_name,
                spill,
            }),
        }
    }

    /// Queues `entries`. With `wait_for_stream` it returns once every record is stored
    /// on the stream; otherwise once they are buffered (delivered before shutdown ends).
    /// A record the stream would refuse refuses the whole call before anything is
    /// queued, and so does a full buffer ([`StreamError::Backpressure`]).
    pub async fn send(
        &self,
        entries: Vec<StreamEntry>,
        wait_for_stream: bool,
    ) -> Result<(), StreamError> {
        for entry in &entries {
            if entry.size() > self.inner.max_record_bytes {
                return Err(StreamError::TooLarge(entry.size()));
            }
            if let Some(problem) = partition_key_problem(&entry.key) {
                return Err(StreamError::InvalidRecord(format!(
                    "event {}: {problem}",
                    entry.id
                )));
            }
        }
        if entries.is_empty() {
            return Ok(());
        }
        let sender = self
            .inner
            .sender
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(StreamError::Closed)?;
        let permits = sender
            .try_reserve_many(entries.len())
            .map_err(|_| StreamError::Backpressure)?;
        // Counted before they are sent: once sent, a delivery may finish and subtract them.
        let count = entries.len();
        let depth = self.inner.buffered.fetch_add(count, Ordering::Relaxed) + count;
        metrics::gauge!("stream_buffered_records").set(depth as f64);
        let mut acks = Vec::with_capacity(count);
        for (permit, entry) in permits.zip(entries) {
            let (ack, acked) = oneshot::channel();
            permit.send(Pending { entry, ack });
            acks.push(acked);
        }
        if !wait_for_stream {
            return Ok(());
        }
        for acked in acks {
            acked.await.map_err(|_| StreamError::Closed)??;
        }
        Ok(())
    }

    /// Queues the records a previous run spilled (without waiting for them); returns
    /// how many there were. Records the stream refuses again are spilled again.
    pub async fn resend_spilled(&self) -> std::io::Result<usize> {
        let Some(spill) = &self.inner.spill else {
            return Ok(0);
        };
        let entries = spill.take()?;
        let count = entries.len();
        if count > 0 {
            tracing::info!(records = count, file = %spill.path().display(), "putting spilled records on the stream again");
        }
        for chunk in entries.chunks(500) {
            if let Err(error) = self.send(chunk.to_vec(), false).await {
                for entry in chunk {
                    spill_record(Some(spill), entry, &error.to_string());
                }
            }
        }
        Ok(count)
    }

    /// Records waiting for delivery.
    pub fn buffered(&self) -> usize {
        self.inner.buffered.load(Ordering::Relaxed)
    }

    /// `kinesis` or `embedded`.
    pub fn sink_name(&self) -> &'static str {
        self.inner.sink_name
    }

    /// Stops accepting records and waits until every buffered record is delivered.
    pub async fn close(&self) {
        self.inner
            .sender
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let worker = self
            .inner
            .worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(worker) = worker
            && let Err(error) = worker.await
        {
            tracing::error!(%error, "stream delivery task failed");
        }
    }

    /// Whether the delivery task runs: it stops at shutdown, or when it fails.
    pub fn is_worker_alive(&self) -> bool {
        self.inner
            .worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|worker| !worker.is_finished())
    }

    /// Whether the buffer is full, so records are refused with backpressure.
    pub fn is_full(&self) -> bool {
        self.inner
            .sender
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|sender| sender.capacity() == 0)
    }
}

/// Collects batches from `receiver` and delivers up to `max_in_flight_batches` of
/// them at once, until the channel closes and every batch is delivered.
///
/// A batch starts as soon as a delivery slot is free and takes every record waiting
/// then (group commit): under load, records gather while the slots are busy, so a
/// batch grows with the load instead of waiting for a timer; `linger` adds a wait
/// for sinks that charge per call.
async fn deliver_batches(
    sink: Arc<dyn StreamSink>,
    mut receiver: mpsc::Receiver<Pending>,
    settings: ProducerSettings,
    buffered: Arc<AtomicUsize>,
) {
    let settings = Arc::new(settings);
    let in_flight = Arc::new(Semaphore::new(settings.max_in_flight_batches.max(1)));
    let mut deliveries = JoinSet::new();
    let mut carried: Option<Pending> = None;
    loop {
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let first = match carried.take() {
            Some(pending) => pending,
            None => match receiver.recv().await {
                Some(pending) => pending,
                None => break,
            },
        };
        let (batch, left_over) = gather(first, &mut receiver, &settings).await;
        carried = left_over;
        let (sink, settings, buffered) = (sink.clone(), settings.clone(), buffered.clone());
        deliveries.spawn(async move {
            let delivered = batch.len();
            deliver(sink.as_ref(), batch, &settings).await;
            let depth = buffered.fetch_sub(delivered, Ordering::Relaxed) - delivered;
            metrics::gauge!("stream_buffered_records").set(depth as f64);
            drop(permit);
        });
        while deliveries.try_join_next().is_some() {}
    }
    while deliveries.join_next().await.is_some() {}
}

/// A batch starting with `first`: the records already waiting, then those arriving
/// within `linger`, up to the record and byte limits; the record that would pass
/// the byte limit is handed back for the next batch.
async fn gather(
    first: Pending,
    receiver: &mut mpsc::Receiver<Pending>,
    settings: &ProducerSettings,
) -> (Vec<Pending>, Option<Pending>) {
    let mut bytes = first.entry.size();
    let mut batch = vec![first];
    let deadline = Instant::now() + settings.linger;
    while batch.len() < settings.max_batch_records {
        let next = match receiver.try_recv() {
            Ok(pending) => Some(pending),
            Err(_) if settings.linger.is_zero() => None,
            Err(_) => tokio::time::timeout_at(deadline, receiver.recv())
                .await
                .ok()
                .flatten(),
        };
        let Some(pending) = next else { break };
        if bytes + pending.entry.size() > settings.max_batch_bytes {
            return (batch, Some(pending));
        }
        bytes += pending.entry.size();
        batch.push(pending);
    }
    (batch, None)
}

/// Puts one batch, retrying only the records the sink refused retryably, then
/// acknowledges each. A batch refused as a whole for a permanent reason is split in
/// two and each half delivered on its own, so one bad record fails alone.
async fn deliver(sink: &dyn StreamSink, batch: Vec<Pending>, settings: &ProducerSettings) {
    let mut delays = settings.retry.delays();
    let mut pending = batch;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let entries: Vec<StreamEntry> = pending.iter().map(|p| p.entry.clone()).collect();
        let result = sink.put(&entries).await;
        if let Err(error) = &result
            && error.kind() == ErrorKind::Permanent
            && pending.len() > 1
        {
            tracing::warn!(records = pending.len(), %error, "the stream refused a whole batch; splitting it to find the record it refuses");
            let second = pending.split_off(pending.len() / 2);
            Box::pin(deliver(sink, pending, settings)).await;
            Box::pin(deliver(sink, second, settings)).await;
            return;
        }
        let refusals = refusals(result, entries.len());
        let mut retryable = Vec::new();
        let mut last_refusal = None;
        for (record, refusal) in pending.into_iter().zip(refusals) {
            match refusal {
                None => {
                    metrics::counter!("stream_records_put_total", "sink" => sink.name())
                        .increment(1);
                    let _ = record.ack.send(Ok(()));
                }
                Some((kind, reason)) if kind.is_retryable() => {
                    last_refusal = Some((kind, reason));
                    retryable.push(record);
                }
                Some((kind, reason)) => {
                    tracing::error!(id = %record.entry.id, key = %record.entry.key, %kind, %reason, "stream refused a record permanently");
                    give_up(record, attempts, kind, reason, settings);
                }
            }
        }
        let Some((kind, reason)) = last_refusal else {
            return;
        };
        let Some(delay) = delays.next() else {
            let ids: Vec<&str> = retryable.iter().map(|p| p.entry.id.as_str()).collect();
            tracing::error!(records = retryable.len(), ?ids, attempts, %kind, %reason, "stream refused records; giving up");
            for record in retryable {
                give_up(record, attempts, kind, reason.clone(), settings);
            }
            return;
        };
        tracing::warn!(records = retryable.len(), attempts, %kind, %reason, "stream refused records; retrying");
        metrics::counter!("stream_put_retries_total", "sink" => sink.name())
            .increment(retryable.len() as u64);
        tokio::time::sleep(delay).await;
        pending = retryable;
    }
}

/// Tells the waiting client the record was not taken; when nobody waits for it (it was
/// acknowledged from the buffer, or its client left), spills it instead.
fn give_up(
    record: Pending,
    attempts: usize,
    kind: ErrorKind,
    reason: String,
    settings: &ProducerSettings,
) {
    metrics::counter!("stream_records_failed_total", "kind" => kind.as_str()).increment(1);
    let error = StreamError::Failed {
        attempts,
        kind,
        reason: reason.clone(),
    };
    if record.ack.send(Err(error)).is_err() {
        spill_record(settings.spill.as_deref(), &record.entry, &reason);
    }
}

/// Keeps a record nobody will resend in the spill file (or, without one, in the log).
fn spill_record(spill: Option<&SpillFile>, entry: &StreamEntry, reason: &str) {
    metrics::counter!("stream_records_spilled_total").increment(1);
    match spill.map(|spill| (spill, spill.append(entry, reason))) {
        Some((spill, Ok(()))) => {
            tracing::error!(id = %entry.id, file = %spill.path().display(), %reason, "record spilled: the stream did not take it after it was acknowledged")
        }
        Some((_, Err(error))) => {
            tracing::error!(id = %entry.id, key = %entry.key, %reason, %error, "record LOST: the stream did not take it and the spill file cannot be written")
        }
        None => {
            tracing::error!(id = %entry.id, key = %entry.key, %reason, "record LOST: the stream did not take it and there is no spill file")
        }
    }
}

/// Per record: `None` when stored, else the kind of failure and its reason. A failed
/// call refuses every record with its error.
fn refusals(
    result: Result<Vec<Result<(), super::SinkError>>, super::SinkError>,
    records: usize,
) -> Vec<Option<(ErrorKind, String)>> {
    match result {
        Ok(results) if results.len() == records => results
            .into_iter()
            .map(|result| result.err().map(|error| (error.kind(), error.to_string())))
            .collect(),
        Ok(results) => {
            let reason = format!(
                "the stream answered {} results for {records} records",
                results.len()
            );
            vec![Some((ErrorKind::Transient, reason)); records]
        }
        Err(error) => vec![Some((error.kind(), error.to_string())); records],
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use async_trait::async_trait;

    use super::super::SinkError;
    use super::*;

    /// A sink that refuses each record's first `failures` attempts with `kind` (or the
    /// whole call, with `whole_call`) and records batches.
    struct FlakySink {
        failures: usize,
        kind: ErrorKind,
        whole_call: bool,
        attempts: StdMutex<std::collections::HashMap<String, usize>>,
        batches: StdMutex<Vec<usize>>,
    }

    #[async_trait]
    impl StreamSink for FlakySink {
        async fn put(
            &self,
            entries: &[StreamEntry],
        ) -> Result<Vec<Result<(), SinkError>>, SinkError> {
            self.batches.lock().unwrap().push(entries.len());
            let mut attempts = self.attempts.lock().unwrap();
            let mut refuse = false;
            let results = entries
                .iter()
                .map(|entry| {
                    let count = attempts.entry(entry.key.clone()).or_default();
                    *count += 1;
                    if *count <= self.failures {
                        refuse = true;
                        Err(SinkError::new(
                            self.kind,
                            format!("refused ({})", self.kind),
                        ))
                    } else {
                        Ok(())
                    }
                })
                .collect();
            if refuse && self.whole_call {
                return Err(SinkError::new(self.kind, "the whole call was refused"));
            }
            Ok(results)
        }

        fn name(&self) -> &'static str {
            "flaky"
        }
    }

    fn refusing(failures: usize, kind: ErrorKind, whole_call: bool) -> Arc<FlakySink> {
        Arc::new(FlakySink {
            failures,
            kind,
            whole_call,
            attempts: StdMutex::default(),
            batches: StdMutex::default(),
        })
    }

    /// Throttles each record's first `failures` attempts.
    fn flaky(failures: usize) -> Arc<FlakySink> {
        refusing(failures, ErrorKind::Throttled, false)
    }

    fn entries(count: usize, size: usize) -> Vec<StreamEntry> {
        (0..count)
            .map(|index| StreamEntry {
                id: format!("id-{index}"),
                key: format!("key-{index}"),
                data: vec![7; size],
            })
            .collect()
    }

    fn fast() -> ProducerSettings {
        fast_with_attempts(6)
    }

    fn fast_with_attempts(max_attempts: usize) -> ProducerSettings {
        ProducerSettings {
            retry: RetryPolicy {
                max_attempts: Some(max_attempts),
                first_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
            },
            ..ProducerSettings::default()
        }
    }

    #[tokio::test]
    async fn retries_only_refused_records_until_they_are_stored() {
        let sink = flaky(2);
        let producer = StreamProducer::start(sink.clone(), fast());
        producer.send(entries(3, 10), true).await.unwrap();
        let attempts = sink.attempts.lock().unwrap();
        assert!(attempts.values().all(|count| *count == 3), "{attempts:?}");
    }

    #[tokio::test]
    async fn gives_up_after_the_configured_attempts() {
        let producer = StreamProducer::start(flaky(usize::MAX), fast_with_attempts(3));
        let error = producer.send(entries(1, 10), true).await.unwrap_err();
        assert!(
            matches!(
                error,
                StreamError::Failed {
                    attempts: 3,
                    kind: ErrorKind::Throttled,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_throttled_record_is_retried_and_a_permanently_refused_one_is_not() {
        let throttled = refusing(usize::MAX, ErrorKind::Throttled, false);
        let producer = StreamProducer::start(throttled.clone(), fast_with_attempts(4));
        producer.send(entries(1, 10), true).await.unwrap_err();
        assert_eq!(throttled.attempts.lock().unwrap()["key-0"], 4);

        let refused = refusing(usize::MAX, ErrorKind::Permanent, false);
        let producer = StreamProducer::start(refused.clone(), fast_with_attempts(4));
        let error = producer.send(entries(1, 10), true).await.unwrap_err();
        assert_eq!(refused.attempts.lock().unwrap()["key-0"], 1);
        assert!(
            matches!(
                error,
                StreamError::Failed {
                    attempts: 1,
                    kind: ErrorKind::Permanent,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_whole_call_refused_for_access_is_not_retried() {
        let denied = refusing(usize::MAX, ErrorKind::AuthOrConfig, true);
        let producer = StreamProducer::start(denied.clone(), fast_with_attempts(6));
        let error = producer.send(entries(2, 10), true).await.unwrap_err();
        assert_eq!(*denied.batches.lock().unwrap(), [2]);
        assert!(
            matches!(
                error,
                StreamError::Failed {
                    kind: ErrorKind::AuthOrConfig,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn batches_respect_record_and_byte_limits() {
        let sink = flaky(0);
        let producer = StreamProducer::start(
            sink.clone(),
            ProducerSettings {
                max_batch_records: 4,
                max_batch_bytes: 3 * 110,
                linger: Duration::from_millis(50),
                ..fast()
            },
        );
        producer.send(entries(10, 100), true).await.unwrap();
        let batches = sink.batches.lock().unwrap();
        assert_eq!(batches.iter().sum::<usize>(), 10);
        assert!(batches.iter().all(|size| *size <= 3), "{batches:?}");
    }

    #[tokio::test]
    async fn a_full_buffer_refuses_with_backpressure_and_oversized_records_are_refused() {
        let producer = StreamProducer::start(
            flaky(0),
            ProducerSettings {
                buffer_records: 2,
                ..fast()
            },
        );
        assert_eq!(
            producer.send(entries(3, 1), true).await,
            Err(StreamError::Backpressure)
        );
        assert_eq!(
            producer.send(entries(1, 2 << 20), true).await,
            Err(StreamError::TooLarge((2 << 20) + 5))
        );
    }

    #[tokio::test]
    async fn a_record_kinesis_would_refuse_is_refused_before_anything_is_queued() {
        let sink = flaky(0);
        let producer = StreamProducer::start(sink.clone(), fast());
        let mut batch = entries(3, 10);
        batch[1].key = "k".repeat(257);
        let error = producer.send(batch, true).await.unwrap_err();
        assert!(
            matches!(&error, StreamError::InvalidRecord(message) if message.contains("id-1") && message.contains("257 characters")),
            "{error}"
        );
        batch = entries(1, 10);
        batch[0].key.clear();
        assert!(matches!(
            producer.send(batch, true).await,
            Err(StreamError::InvalidRecord(_))
        ));
        assert!(sink.batches.lock().unwrap().is_empty());
    }

    /// Refuses a whole call, permanently, when it holds the record keyed `poison`.
    struct PoisonSink {
        stored: StdMutex<Vec<String>>,
    }

    #[async_trait]
    impl StreamSink for PoisonSink {
        async fn put(
            &self,
            entries: &[StreamEntry],
        ) -> Result<Vec<Result<(), SinkError>>, SinkError> {
            if entries.iter().any(|entry| entry.key == "poison") {
                return Err(SinkError::new(
                    ErrorKind::Permanent,
                    "ValidationException: 1 validation error detected",
                ));
            }
            let mut stored = self.stored.lock().unwrap();
            stored.extend(entries.iter().map(|entry| entry.id.clone()));
            Ok(entries.iter().map(|_| Ok(())).collect())
        }

        fn name(&self) -> &'static str {
            "poison"
        }
    }

    #[tokio::test]
    async fn a_batch_refused_whole_for_one_record_still_delivers_the_others() {
        let sink = Arc::new(PoisonSink {
            stored: StdMutex::default(),
        });
        let producer = StreamProducer::start(
            sink.clone(),
            ProducerSettings {
                linger: Duration::from_millis(50),
                ..fast()
            },
        );
        let good = producer.clone();
        let good_records = tokio::spawn(async move { good.send(entries(20, 10), true).await });
        let poisoned = StreamEntry {
            id: "bad".into(),
            key: "poison".into(),
            data: vec![1],
        };
        let error = producer.send(vec![poisoned], true).await.unwrap_err();
        assert!(
            matches!(
                error,
                StreamError::Failed {
                    kind: ErrorKind::Permanent,
                    ..
                }
            ),
            "{error}"
        );
        good_records.await.unwrap().unwrap();
        let mut stored = sink.stored.lock().unwrap().clone();
        stored.sort();
        assert_eq!(stored.len(), 20, "{stored:?}");
        assert!(!stored.contains(&"bad".to_owned()));
    }

    /// Holds every call with a record keyed `held` until released.
    struct HoldingSink {
        release: tokio::sync::Notify,
    }

    #[async_trait]
    impl StreamSink for HoldingSink {
        async fn put(
            &self,
            entries: &[StreamEntry],
        ) -> Result<Vec<Result<(), SinkError>>, SinkError> {
            if entries.iter().any(|entry| entry.key == "held") {
                self.release.notified().await;
            }
            Ok(entries.iter().map(|_| Ok(())).collect())
        }

        fn name(&self) -> &'static str {
            "holding"
        }
    }

    #[tokio::test]
    async fn a_slow_batch_does_not_hold_the_records_behind_it() {
        let sink = Arc::new(HoldingSink {
            release: tokio::sync::Notify::new(),
        });
        let producer = StreamProducer::start(sink.clone(), fast());
        let held = producer.clone();
        let held = tokio::spawn(async move {
            let entry = StreamEntry {
                id: "held".into(),
                key: "held".into(),
                data: vec![1],
            };
            held.send(vec![entry], true).await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        tokio::time::timeout(Duration::from_secs(10), producer.send(entries(5, 10), true))
            .await
            .expect("records behind a held batch were not delivered")
            .unwrap();
        assert!(!held.is_finished());
        sink.release.notify_one();
        held.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn records_given_up_after_an_early_acknowledgement_are_spilled() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Arc::new(SpillFile::new(dir.path().join("spill.jsonl")));
        let producer = StreamProducer::start(
            flaky(usize::MAX),
            ProducerSettings {
                spill: Some(spill.clone()),
                ..fast_with_attempts(2)
            },
        );
        producer.send(entries(3, 10), false).await.unwrap();
        producer.close().await;
        let spilled: Vec<String> = spill
            .take()
            .unwrap()
            .into_iter()
            .map(|entry| entry.id)
            .collect();
        assert_eq!(spilled, ["id-0", "id-1", "id-2"]);
    }

    #[tokio::test]
    async fn spilled_records_are_put_on_the_stream_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Arc::new(SpillFile::new(dir.path().join("spill.jsonl")));
        for entry in entries(2, 10) {
            spill.append(&entry, "throttled").unwrap();
        }
        let sink = flaky(0);
        let producer = StreamProducer::start(
            sink.clone(),
            ProducerSettings {
                spill: Some(spill.clone()),
                ..fast()
            },
        );
        assert_eq!(producer.resend_spilled().await.unwrap(), 2);
        producer.close().await;
        assert_eq!(sink.attempts.lock().unwrap().len(), 2);
        assert!(spill.take().unwrap().is_empty());
    }

    #[tokio::test]
    async fn close_delivers_everything_buffered() {
        let sink = flaky(1);
        let producer = StreamProducer::start(sink.clone(), fast());
        producer.send(entries(50, 10), false).await.unwrap();
        producer.close().await;
        assert_eq!(sink.attempts.lock().unwrap().len(), 50);
        assert_eq!(producer.buffered(), 0);
        assert_eq!(
            producer.send(entries(1, 1), true).await,
            Err(StreamError::Closed)
        );
    }
}
