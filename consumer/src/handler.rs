//! The handler: one batch of stream records in, a report of what became of each out.
//!
//! For every record: decode the protobuf `TrackingEvent`, run the consumer chain, and
//! then, by outcome,
//! - accepted: write the output events to the event store and count them in core data;
//! - filtered (no output): done;
//! - undecodable or rejected by a plugin: send to the dead-letter sink with the reason
//!   and plugin version, never blocking the shard;
//! - a plugin's `retry`, a failed plugin, or a backend that could not be written:
//!   report the record as a retryable failure, so the stream redelivers it.
//!
//! Redelivery is safe: the store is idempotent by event id and core-data counters
//! count each message id once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use contract::{PluginStamp, TrackingEvent, attribute};
use core_data::{CoreDataUpdates, ProgramActivity};
use plugin_engine::{Event, Outcome, PluginChain, PluginRef};
use releases::ReleaseChain;

use crate::dead_letter::{DeadLetter, DeadLetterSink};
use crate::store::{EventStore, StoredEvent};

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

/// The consumer: where its chain comes from and the backends it writes to. Cheap to
/// share behind an `Arc`; batches may be handled concurrently.
#[derive(Clone)]
pub struct Consumer {
    chains: Arc<dyn ChainSource>,
    store: Arc<dyn EventStore>,
    dead_letters: Arc<dyn DeadLetterSink>,
    core_data: Arc<dyn CoreDataUpdates>,
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
        }
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
        self.send_dead_letters(&mut dispositions, &mut report).await;
        self.store_accepted(&mut dispositions, &mut report).await;
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
                Disposition::Done | Disposition::DeadLetter(_) => {}
            }
        }
        for failure in &report.failures {
            tracing::warn!(record = %failure.id, reason = %failure.reason, "record will be redelivered");
        }
        tracing::info!(
            records = report.records,
            stored_events = report.stored_events,
            filtered = report.filtered,
            dead_lettered = report.dead_lettered,
            failed = report.failures.len(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "batch handled"
        );
        report
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
            host_stamps.push((record.host_stamps, record.host_release));
            events.push(record.event);
        }
        let batch = self.chains.next_batch().await;
        let outcomes = batch.chain.process(events).await;
        for ((position, (stamps, host_release)), outcome) in
            positions.into_iter().zip(host_stamps).zip(outcomes)
        {
            let record = &records[position];
            dispositions[position] = match outcome.outcome {
                Outcome::Accepted(events) if events.is_empty() => {
                    filtered += 1;
                    Disposition::Done
                }
                Outcome::Accepted(events) => {
                    let mut processed_by = stamps;
                    processed_by.extend(outcome.processed_by.iter().map(stamp));
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

    /// Writes every accepted event, then records the stored ones in core data.
    async fn store_accepted(&self, dispositions: &mut [Disposition], report: &mut BatchReport) {
        let mut owners: Vec<usize> = Vec::new();
        let mut events: Vec<StoredEvent> = Vec::new();
        let mut seen_ids: HashMap<String, usize> = HashMap::new();
        for (position, disposition) in dispositions.iter_mut().enumerate() {
            if let Disposition::Accepted(accepted) = disposition {
                for event in std::mem::take(accepted) {
                    // The same message delivered twice in one batch is written once.
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
        let unwritten: HashMap<String, String> = match self.store.put(&events).await {
            Ok(()) => HashMap::new(),
            Err(failure) => {
                let reason = failure.error.to_string();
                let ids = failure
                    .unwritten
                    .unwrap_or_else(|| events.iter().map(|event| event.event.id.clone()).collect());
                ids.into_iter().map(|id| (id, reason.clone())).collect()
            }
        };
        let mut failed_positions: BTreeMap<usize, String> = BTreeMap::new();
        for (event, position) in events.iter().zip(&owners) {
            if let Some(reason) = unwritten.get(&event.event.id) {
                failed_positions
                    .entry(*position)
                    .or_insert_with(|| format!("event store: {reason}"));
            }
        }
        let stored: Vec<(&StoredEvent, usize)> = events
            .iter()
            .zip(owners.iter().copied())
            .filter(|(_, position)| !failed_positions.contains_key(position))
            .collect();
        report.stored_events += stored.len();
        let activity = activity(&stored);
        // Generic events without a program have nothing to count.
        if !activity.is_empty()
            && let Err(error) = self.core_data.record_activity(&activity).await
        {
            for (_, position) in &stored {
                failed_positions
                    .entry(*position)
                    .or_insert_with(|| format!("core data: {error}"));
            }
            report.stored_events -= stored.len();
        }
        for (position, reason) in failed_positions {
            dispositions[position] = Disposition::Failed(reason);
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

/// Stored events grouped by program: message ids and the latest timestamp.
fn activity(stored: &[(&StoredEvent, usize)]) -> Vec<ProgramActivity> {
    let mut programs: BTreeMap<&str, ProgramActivity> = BTreeMap::new();
    for (stored, _) in stored {
        let Some(program_id) = stored.event.attribute(attribute::PROGRAM_ID) else {
            continue;
        };
        if program_id.is_empty() {
            continue;
        }
        let entry = programs
            .entry(program_id)
            .or_insert_with(|| ProgramActivity {
                program_id: program_id.to_owned(),
                message_ids: Vec::new(),
                last_seen_ms: 0,
            });
        entry.message_ids.push(stored.event.id.clone());
        entry.last_seen_ms = entry.last_seen_ms.max(stored.event.timestamp_ms);
    }
    programs.into_values().collect()
}

fn stamp(plugin: &PluginRef) -> PluginStamp {
    PluginStamp {
        name: plugin.name.to_string(),
        version: plugin.version.to_string(),
    }
}
