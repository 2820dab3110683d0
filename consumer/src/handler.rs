//! The handler: one batch of stream records in, a report of what became of each out.
//!
//! For every record: decode the protobuf `TrackingEvent`, run the consumer chain, and
//! then, by outcome,
//! - accepted: write the output events to the event store (each only if its id is not
//!   stored yet, counted for its program in the same write) and publish the programs'
//!   counts to core data;
//! - filtered (no output): done;
//! - undecodable, rejected by a plugin, or refused by the store as it is: send to the
//!   dead-letter sink with its data, the reason and plugin version, never blocking the
//!   shard;
//! - a plugin's `retry`, a failed plugin, or a backend that could not be written:
//!   report the record as a retryable failure, so the stream redelivers it; after
//!   `max_attempts` failures ([`AttemptLedger`]) it becomes a dead letter instead.
//!
//! Redelivery is safe: the store writes an event id once and counts it once, and core
//! data only holds the store's totals.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use contract::identity::assign_output_ids;
use contract::{PluginStamp, TrackingEvent};
use core_data::{CoreDataUpdates, ProgramCount};
use plugin_engine::{Event, Outcome, PluginChain, PluginRef};
use releases::ReleaseChain;
use retry_policy::{Classify, ErrorKind};

use crate::attempts::{AttemptLedger, InMemoryAttempts};
use crate::dead_letter::{DeadLetter, DeadLetterSink};
use crate::store::{EventStore, StoredEvent, program_of};

/// One record as a driver hands it over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRecord {
    /// The identifier reported back when the record fails: the Kinesis sequence number,
    /// or the embedded log's sequence number.
    pub id: String,
    /// The stream partition key (the message id).
    pub partition_key: String,
    /// The record bytes: a protobuf `TrackingEvent`.
    pub data: Vec<u8>,
}

/// A record that must be redelivered, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordFailure {
    /// [`StreamRecord::id`] of the record.
    pub id: String,
    /// What went wrong, for the log.
    pub reason: String,
}

/// What became of one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Records in the batch.
    pub records: usize,
    /// Events written to the store (a fanned-out record writes several).
    pub stored_events: usize,
    /// Events already in the store (a redelivery): neither written nor counted again.
    pub duplicate_events: usize,
    /// Records the chain filtered out (no output event).
    pub filtered: usize,
    /// Records sent to the dead-letter sink.
    pub dead_lettered: usize,
    /// Records to redeliver, in input order.
    pub failures: Vec<RecordFailure>,
}

impl BatchReport {
    /// Ids of the records to redeliver, in input order.
    pub fn failed_ids(&self) -> impl Iterator<Item = &str> {
        self.failures.iter().map(|failure| failure.id.as_str())
    }

    /// Adds `other` (a later batch) to this report.
    pub fn absorb(&mut self, other: BatchReport) {
        self.records += other.records;
        self.stored_events += other.stored_events;
        self.duplicate_events += other.duplicate_events;
        self.filtered += other.filtered;
        self.dead_lettered += other.dead_lettered;
        self.failures.extend(other.failures);
    }
}

/// The chain one batch runs and the plugin release it belongs to.
#[derive(Clone)]
pub struct BatchChain {
    /// The consumer chain (with a canary or shadow candidate, when the release tries one).
    pub chain: ReleaseChain,
    /// Its release in the plugin registry (0: a fixed chain, not from the registry).
    pub release: u64,
}

/// Where the consumer gets the chain for each batch: a fixed chain, or the current
/// release of the plugin registry (`crate::releases::RegistryChains`).
#[async_trait]
pub trait ChainSource: Send + Sync {
    /// The chain the next batch runs.
    async fn next_batch(&self) -> BatchChain;
}

/// A fixed chain (tests, and a consumer without a registry).
#[async_trait]
impl ChainSource for PluginChain {
    async fn next_batch(&self) -> BatchChain {
        BatchChain {
            chain: ReleaseChain::fixed(self.clone()),
            release: 0,
        }
    }
}

/// Attempts at a record before it becomes a dead letter, by default: below the event
/// source mapping's `MaximumRetryAttempts` (5 in the template), so a failing record is
/// dead-lettered with its data before Lambda gives up on it and skips it.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// The consumer: where its chain comes from and the backends it writes to. Cheap to
/// share behind an `Arc`; batches may be handled concurrently.
#[derive(Clone)]
pub struct Consumer {
    chains: Arc<dyn ChainSource>,
    store: Arc<dyn EventStore>,
    dead_letters: Arc<dyn DeadLetterSink>,
    core_data: Arc<dyn CoreDataUpdates>,
    attempts: Arc<dyn AttemptLedger>,
    max_attempts: u32,
}

/// A decoded record: its position in the batch, its event, the host's plugin stamps
/// and release.
struct DecodedRecord {
    position: usize,
    event: Event,
    host_stamps: Vec<PluginStamp>,
    host_release: u64,
}

/// Where one record stands while its batch is handled.
enum Disposition {
    /// Decoded; waiting for the chain.
    Decoded,
    /// Accepted; these events wait to be stored.
    Accepted(Vec<StoredEvent>),
    /// Nothing to do any more (filtered, stored, dead-lettered).
    Done,
    /// Bound for the dead-letter sink.
    DeadLetter(DeadLetter),
    /// To be redelivered.
    Failed(String),
}

impl Consumer {
    /// A consumer running the chains of `chains` and writing to the given backends.
    pub fn new(
        chains: Arc<dyn ChainSource>,
        store: Arc<dyn EventStore>,
        dead_letters: Arc<dyn DeadLetterSink>,
        core_data: Arc<dyn CoreDataUpdates>,
    ) -> Self {
        Self {
            chains,
            store,
            dead_letters,
            core_data,
            attempts: Arc::new(InMemoryAttempts::default()),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    /// Counts failed attempts per record in `ledger` and dead-letters a record at its
    /// `max_attempts`-th failure (at least 1).
    pub fn with_attempts(mut self, ledger: Arc<dyn AttemptLedger>, max_attempts: u32) -> Self {
        self.attempts = ledger;
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Handles one batch; never fails as a whole: every record is accounted for in the
    /// report, and the ones in [`BatchReport::failures`] must be redelivered.
    pub async fn handle(&self, records: Vec<StreamRecord>) -> BatchReport {
        let started = Instant::now();
        let mut report = BatchReport {
            records: records.len(),
            ..BatchReport::default()
        };
        let (mut dispositions, decoded) = decode_all(&records);
        report.filtered = self.run_chain(&records, &mut dispositions, decoded).await;
        self.store_accepted(&records, &mut dispositions, &mut report)
            .await;
        self.give_up_on_exhausted(&records, &mut dispositions).await;
        self.send_dead_letters(&mut dispositions, &mut report).await;
        let mut handled = Vec::new();
        for (record, disposition) in records.iter().zip(dispositions) {
            match disposition {
                Disposition::Failed(reason) => report.failures.push(RecordFailure {
                    id: record.id.clone(),
                    reason,
                }),
                Disposition::Decoded | Disposition::Accepted(_) => {
                    report.failures.push(RecordFailure {
                        id: record.id.clone(),
                        reason: "not handled".into(),
                    })
                }
                Disposition::Done | Disposition::DeadLetter(_) => handled.push(record.id.as_str()),
            }
        }
        self.attempts.forget(&handled).await;
        for failure in &report.failures {
            tracing::warn!(record = %failure.id, reason = %failure.reason, "record will be redelivered");
        }
        tracing::info!(
            records = report.records,
            stored_events = report.stored_events,
            duplicate_events = report.duplicate_events,
            filtered = report.filtered,
            dead_lettered = report.dead_lettered,
            failed = report.failures.len(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "batch handled"
        );
        report
    }

    /// Counts a failed attempt at every failed record; the ones at their last attempt
    /// become dead letters with their data.
    async fn give_up_on_exhausted(
        &self,
        records: &[StreamRecord],
        dispositions: &mut [Disposition],
    ) {
        for (record, disposition) in records.iter().zip(dispositions.iter_mut()) {
            let Disposition::Failed(reason) = disposition else {
                continue;
            };
            match self.attempts.failed(&record.id).await {
                Ok(attempts) if attempts >= self.max_attempts => {
                    let reason = std::mem::take(reason);
                    *disposition =
                        Disposition::DeadLetter(DeadLetter::exhausted(record, attempts, reason));
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(record = %record.id, %error, "cannot count the failed attempt");
                }
            }
        }
    }

    /// Runs the decoded events through the chain as one batch and records each outcome;
    /// returns how many records were filtered out.
    async fn run_chain(
        &self,
        records: &[StreamRecord],
        dispositions: &mut [Disposition],
        decoded: Vec<DecodedRecord>,
    ) -> usize {
        let mut filtered = 0;
        let mut positions = Vec::with_capacity(decoded.len());
        let mut host_stamps = Vec::with_capacity(decoded.len());
        let mut events = Vec::with_capacity(decoded.len());
        for record in decoded {
            positions.push(record.position);
            host_stamps.push((
                record.host_stamps,
                record.host_release,
                record.event.id.clone(),
            ));
            events.push(record.event);
        }
        let batch = self.chains.next_batch().await;
        let outcomes = batch.chain.process(events).await;
        let mut plugin_stamps = Stamps::default();
        for ((position, (stamps, host_release, message_id)), outcome) in
            positions.into_iter().zip(host_stamps).zip(outcomes)
        {
            let record = &records[position];
            dispositions[position] = match outcome.outcome {
                Outcome::Accepted(events) if events.is_empty() => {
                    filtered += 1;
                    Disposition::Done
                }
                Outcome::Accepted(mut events) => {
                    assign_output_ids(&message_id, &mut events);
                    let mut processed_by = stamps;
                    processed_by.extend(outcome.processed_by.iter().map(|by| plugin_stamps.of(by)));
                    Disposition::Accepted(
                        events
                            .into_iter()
                            .map(|event| StoredEvent {
                                event,
                                processed_by: processed_by.clone(),
                                host_release,
                                consumer_release: batch.release,
                            })
                            .collect(),
                    )
                }
                Outcome::Rejected { by, reason } => {
                    Disposition::DeadLetter(DeadLetter::rejected(record, &by, reason))
                }
                Outcome::Retry { by, reason } => Disposition::Failed(format!(
                    "plugin {} ({}) asked for a retry: {reason}",
                    by.name,
                    by.version.short()
                )),
                Outcome::Failed { by, failure } => Disposition::Failed(format!(
                    "plugin {} ({}) failed: {failure}",
                    by.name,
                    by.version.short()
                )),
            };
        }
        filtered
    }

    /// Sends every dead letter; a letter that cannot be sent makes its record a failure.
    async fn send_dead_letters(&self, dispositions: &mut [Disposition], report: &mut BatchReport) {
        for disposition in dispositions.iter_mut() {
            let Disposition::DeadLetter(letter) = disposition else {
                continue;
            };
            tracing::info!(record = %letter.record_id, reason = %letter.reason, plugin = ?letter.plugin, "dead-lettering record");
            *disposition = match self.dead_letters.send(letter).await {
                Ok(()) => {
                    report.dead_lettered += 1;
                    Disposition::Done
                }
                Err(error) => Disposition::Failed(format!("cannot dead-letter: {error}")),
            };
        }
    }

    /// Writes every accepted event, then publishes the counts of their programs. An
    /// event the store refuses as it is makes its record a dead letter; one it could
    /// not write, or counts that could not be published, make it a failure.
    async fn store_accepted(
        &self,
        records: &[StreamRecord],
        dispositions: &mut [Disposition],
        report: &mut BatchReport,
    ) {
        let mut owners: Vec<usize> = Vec::new();
        let mut events: Vec<StoredEvent> = Vec::new();
        let mut seen_ids: HashMap<String, usize> = HashMap::new();
        for (position, disposition) in dispositions.iter_mut().enumerate() {
            if let Disposition::Accepted(accepted) = disposition {
                for event in std::mem::take(accepted) {
                    // The same record delivered twice in one batch is written once.
                    if seen_ids.insert(event.event.id.clone(), position).is_none() {
                        owners.push(position);
                        events.push(event);
                    }
                }
            }
        }
        if events.is_empty() {
            mark_accepted_done(dispositions);
            return;
        }
        let written = self.store.put(&events).await;
        report.stored_events += written.stored.len();
        report.duplicate_events += written.duplicates.len();
        let failed: HashMap<&str, _> = written
            .failed
            .iter()
            .map(|(id, error)| (id.as_str(), error))
            .collect();
        for (event, &position) in events.iter().zip(&owners) {
            let Some(error) = failed.get(event.event.id.as_str()) else {
                continue;
            };
            let reason = format!("event store: {error}");
            match &dispositions[position] {
                Disposition::DeadLetter(_) => {}
                _ if error.kind() == ErrorKind::Permanent => {
                    dispositions[position] =
                        Disposition::DeadLetter(DeadLetter::unstorable(&records[position], reason));
                }
                Disposition::Failed(_) => {}
                _ => dispositions[position] = Disposition::Failed(reason),
            }
        }
        let counts = program_counts(&events, &written.counts);
        if !counts.is_empty()
            && let Err(error) = self.core_data.publish_counts(&counts).await
        {
            // Stored and counted in the store: redelivered, they are duplicates whose
            // counts are published again.
            for (event, &position) in events.iter().zip(&owners) {
                if program_of(event).is_some()
                    && matches!(dispositions[position], Disposition::Accepted(_))
                {
                    dispositions[position] = Disposition::Failed(format!("core data: {error}"));
                }
            }
        }
        mark_accepted_done(dispositions);
    }
}

/// Decodes every record: returns a disposition per record and the decoded events
/// (with their position and the host's plugin stamps).
fn decode_all(records: &[StreamRecord]) -> (Vec<Disposition>, Vec<DecodedRecord>) {
    let mut dispositions = Vec::with_capacity(records.len());
    let mut decoded = Vec::with_capacity(records.len());
    for (position, record) in records.iter().enumerate() {
        match TrackingEvent::from_bytes(&record.data) {
            Ok(tracking) if tracking.message_id.is_empty() => {
                dispositions.push(Disposition::DeadLetter(DeadLetter::undecodable(
                    record,
                    "the record has no message id".into(),
                )));
            }
            Ok(mut tracking) => {
                let host_stamps = std::mem::take(&mut tracking.processed_by);
                let host_release = tracking.host_release;
                decoded.push(DecodedRecord {
                    position,
                    event: tracking.into_event(),
                    host_stamps,
                    host_release,
                });
                dispositions.push(Disposition::Decoded);
            }
            Err(error) => {
                dispositions.push(Disposition::DeadLetter(DeadLetter::undecodable(
                    record,
                    error.to_string(),
                )));
            }
        }
    }
    (dispositions, decoded)
}

/// Records left `Accepted` after storing (i.e. stored) are done.
fn mark_accepted_done(dispositions: &mut [Disposition]) {
    for disposition in dispositions {
        if matches!(disposition, Disposition::Accepted(_)) {
            *disposition = Disposition::Done;
        }
    }
}

/// The counts to publish: the store's total per program and the newest timestamp of
/// the batch's events for it.
fn program_counts(events: &[StoredEvent], totals: &BTreeMap<String, u64>) -> Vec<ProgramCount> {
    let mut newest: BTreeMap<&str, u64> = BTreeMap::new();
    for event in events {
        if let Some(program) = program_of(event) {
            let seen = newest.entry(program).or_default();
            *seen = (*seen).max(event.event.timestamp_ms);
        }
    }
    totals
        .iter()
        .map(|(program_id, &event_count)| ProgramCount {
            program_id: program_id.clone(),
            event_count,
            last_seen_ms: newest.get(program_id.as_str()).copied().unwrap_or(0),
        })
        .collect()
}

/// The stamps of the plugins that ran in one batch, each made once: the same few
/// plugin versions stamp every record of the batch.
#[derive(Default)]
struct Stamps(Vec<(PluginRef, PluginStamp)>);

impl Stamps {
    /// The stamp of `plugin`.
    fn of(&mut self, plugin: &PluginRef) -> PluginStamp {
        if let Some((_, stamp)) = self.0.iter().find(|(seen, _)| seen == plugin) {
            return stamp.clone();
        }
        let stamp = PluginStamp {
            name: plugin.name.to_string(),
            version: plugin.version.to_string(),
        };
        self.0.push((plugin.clone(), stamp.clone()));
        stamp
    }
}
