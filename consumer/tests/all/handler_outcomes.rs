//! What the handler does with each kind of record, with the real example plugins and
//! in-memory backends (no emulators needed).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::common::*;
use adtrack_consumer::dead_letter::{DeadLetter, DeadLetterError, DeadLetterKind, DeadLetterSink};
use adtrack_consumer::init::load_chain;
use adtrack_consumer::store::{EventStore, StoredEvent, WriteReport, program_of};
use adtrack_consumer::{Consumer, StreamRecord};
use async_trait::async_trait;
use contract::redis_names as names;
use core_data::{CoreDataUpdates, InProcessCoreData};
use retry_policy::{ClassifiedError, ErrorKind};

/// Keeps what it is given, each id once, counting per program as a real store does;
/// refuses the ids in `refuse` with their kind of failure, or everything when `down`.
#[derive(Default)]
struct MemoryStore {
    events: Mutex<Vec<StoredEvent>>,
    counts: Mutex<BTreeMap<String, u64>>,
    refuse: HashMap<String, ErrorKind>,
    down: bool,
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn put(&self, events: &[StoredEvent]) -> WriteReport {
        let mut report = WriteReport::default();
        let mut stored = self.events.lock().unwrap();
        let mut counts = self.counts.lock().unwrap();
        for event in events {
            let id = event.event.id.clone();
            let refusal = match self.refuse.get(&id) {
                _ if self.down => Some(ErrorKind::Transient),
                refusal => refusal.copied(),
            };
            if let Some(kind) = refusal {
                report
                    .failed
                    .push((id, ClassifiedError::new(kind, "store is down")));
                continue;
            }
            let new = !stored.iter().any(|known| known.event.id == id);
            let program = program_of(event).map(str::to_owned);
            if new {
                stored.push(event.clone());
                report.stored.push(id);
            } else {
                report.duplicates.push(id);
            }
            if let Some(program) = program {
                let count = counts.entry(program.clone()).or_default();
                *count += u64::from(new);
                report.counts.insert(program, *count);
            }
        }
        report
    }
}

#[derive(Default)]
struct MemoryDeadLetters {
    letters: Mutex<Vec<DeadLetter>>,
    down: bool,
}

#[async_trait]
impl DeadLetterSink for MemoryDeadLetters {
    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        if self.down {
            return Err(DeadLetterError {
                destination: "memory".into(),
                source: ClassifiedError::new(ErrorKind::Transient, "queue is down"),
            });
        }
        self.letters.lock().unwrap().push(letter.clone());
        Ok(())
    }
}

fn record(id: &str, data: Vec<u8>) -> StreamRecord {
    StreamRecord {
        id: id.into(),
        partition_key: format!("key-{id}"),
        data,
    }
}

async fn consumer(
    store: Arc<MemoryStore>,
    dead_letters: Arc<MemoryDeadLetters>,
    core_data: Arc<dyn CoreDataUpdates>,
) -> Consumer {
    let (chain, _) = load_chain(
        &pipeline_file(),
        Some(artifact_cache_dir()),
        Arc::new(plugin_engine::NoCoreData),
    )
    .await
    .expect("load the consumer chain");
    Consumer::new(Arc::new(chain), store, dead_letters, core_data)
}

#[tokio::test]
async fn good_records_are_stored_bad_ones_dead_lettered_and_none_reported_failed() {
    let store = Arc::new(MemoryStore::default());
    let dead_letters = Arc::new(MemoryDeadLetters::default());
    let core_data = InProcessCoreData::new();
    core_data.put_program(
        "212313",
        program_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let consumer = consumer(
        store.clone(),
        dead_letters.clone(),
        Arc::new(core_data.clone()),
    )
    .await;

    let report = consumer
        .handle(vec![
            record("1", good_record("msg-1", "212313")),
            record("2", undecodable_record()),
            record("3", rejected_record("msg-3", "212313")),
            record("4", bot_record("msg-4", "212313")),
            record("5", good_record("msg-5", "212313")),
            record("6", Vec::new()), // decodes to an empty record: no message id
        ])
        .await;

    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.stored_events, 2);
    assert_eq!(report.filtered, 1);
    assert_eq!(report.dead_lettered, 3);
    let stored: Vec<_> = store
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.event.id.clone())
        .collect();
    assert_eq!(stored, ["msg-1", "msg-5"]);
    let first = &store.events.lock().unwrap()[0];
    assert_eq!(first.event.attribute("valid"), Some("true"));
    let chain: Vec<_> = first.processed_by.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(chain, ["filter", "validate-tracking"]);

    let letters = dead_letters.letters.lock().unwrap().clone();
    let kinds: Vec<_> = letters
        .iter()
        .map(|l| (l.record_id.as_str(), l.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("2", DeadLetterKind::Undecodable),
            ("3", DeadLetterKind::Rejected),
            ("6", DeadLetterKind::Undecodable)
        ]
    );
    let rejected = &letters[1];
    assert_eq!(rejected.plugin.as_deref(), Some("validate-tracking"));
    assert_eq!(rejected.reason, "missing checksum");
    assert_eq!(rejected.plugin_version.as_ref().map(String::len), Some(64));
    assert_eq!(letters[0].plugin, None);

    let program = core_data.program("212313").unwrap();
    assert_eq!(program[names::EVENT_COUNT_FIELD], "2");
}

#[tokio::test]
async fn only_the_records_whose_events_were_not_written_are_reported_failed() {
    let store = Arc::new(MemoryStore {
        refuse: HashMap::from([("msg-2".to_owned(), ErrorKind::Throttled)]),
        ..MemoryStore::default()
    });
    let consumer = consumer(
        store.clone(),
        Arc::new(MemoryDeadLetters::default()),
        Arc::new(InProcessCoreData::new()),
    )
    .await;
    let report = consumer
        .handle(vec![
            record("1", good_record("msg-1", "1")),
            record("2", good_record("msg-2", "1")),
            record("3", good_record("msg-3", "1")),
        ])
        .await;
    let failed: Vec<_> = report.failed_ids().collect();
    assert_eq!(failed, ["2"]);
    assert_eq!(report.stored_events, 2);
}

#[tokio::test]
async fn a_store_outage_fails_every_accepted_record_but_not_the_dead_letters() {
    let store = Arc::new(MemoryStore {
        down: true,
        ..MemoryStore::default()
    });
    let dead_letters = Arc::new(MemoryDeadLetters::default());
    let consumer = consumer(
        store,
        dead_letters.clone(),
        Arc::new(InProcessCoreData::new()),
    )
    .await;
    let report = consumer
        .handle(vec![
            record("1", good_record("msg-1", "1")),
            record("2", undecodable_record()),
            record("3", good_record("msg-3", "1")),
        ])
        .await;
    let failed: Vec<_> = report.failed_ids().collect();
    assert_eq!(failed, ["1", "3"]);
    assert!(report.failures[0].reason.contains("store is down"));
    assert_eq!(dead_letters.letters.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_dead_letter_that_cannot_be_sent_is_redelivered_instead_of_lost() {
    let dead_letters = Arc::new(MemoryDeadLetters {
        down: true,
        ..MemoryDeadLetters::default()
    });
    let consumer = consumer(
        Arc::new(MemoryStore::default()),
        dead_letters,
        Arc::new(InProcessCoreData::new()),
    )
    .await;
    let report = consumer
        .handle(vec![
            record("1", good_record("msg-1", "1")),
            record("2", rejected_record("msg-2", "1")),
        ])
        .await;
    let failed: Vec<_> = report.failed_ids().collect();
    assert_eq!(failed, ["2"]);
    assert!(report.failures[0].reason.contains("queue is down"));
}

#[tokio::test]
async fn the_same_message_twice_in_one_batch_is_written_once() {
    let store = Arc::new(MemoryStore::default());
    let consumer = consumer(
        store.clone(),
        Arc::new(MemoryDeadLetters::default()),
        Arc::new(InProcessCoreData::new()),
    )
    .await;
    let report = consumer
        .handle(vec![
            record("1", good_record("msg-1", "1")),
            record("2", good_record("msg-1", "1")),
        ])
        .await;
    assert!(report.failures.is_empty());
    assert_eq!(store.events.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_event_the_store_refuses_as_it_is_becomes_a_dead_letter_with_its_data() {
    let store = Arc::new(MemoryStore {
        refuse: HashMap::from([("msg-2".to_owned(), ErrorKind::Permanent)]),
        ..MemoryStore::default()
    });
    let dead_letters = Arc::new(MemoryDeadLetters::default());
    let consumer = consumer(
        store.clone(),
        dead_letters.clone(),
        Arc::new(InProcessCoreData::new()),
    )
    .await;
    let refused = record("2", good_record("msg-2", "1"));
    let report = consumer
        .handle(vec![
            record("1", good_record("msg-1", "1")),
            refused.clone(),
        ])
        .await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.stored_events, 1);
    let letters = dead_letters.letters.lock().unwrap().clone();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].kind, DeadLetterKind::Unstorable);
    assert_eq!(letters[0].record().unwrap(), refused);
}

#[tokio::test]
async fn a_record_failing_on_every_attempt_becomes_a_dead_letter_at_the_last_attempt() {
    let store = Arc::new(MemoryStore {
        refuse: HashMap::from([("msg-2".to_owned(), ErrorKind::Transient)]),
        ..MemoryStore::default()
    });
    let dead_letters = Arc::new(MemoryDeadLetters::default());
    let consumer = consumer(
        store.clone(),
        dead_letters.clone(),
        Arc::new(InProcessCoreData::new()),
    )
    .await;
    let failing = record("2", good_record("msg-2", "1"));
    for attempt in 1..=3 {
        let report = consumer.handle(vec![failing.clone()]).await;
        let failed: Vec<_> = report.failed_ids().collect();
        if attempt < 3 {
            assert_eq!(failed, ["2"], "attempt {attempt}");
        } else {
            assert!(failed.is_empty(), "attempt {attempt}: {failed:?}");
            assert_eq!(report.dead_lettered, 1);
        }
    }
    let letters = dead_letters.letters.lock().unwrap().clone();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].kind, DeadLetterKind::Exhausted);
    assert!(
        letters[0].reason.starts_with("failed 3 times"),
        "{}",
        letters[0].reason
    );
    assert_eq!(letters[0].record().unwrap(), failing);
}

#[tokio::test]
async fn a_batch_delivered_three_times_is_stored_and_counted_once() {
    let store = Arc::new(MemoryStore::default());
    let core_data = InProcessCoreData::new();
    core_data.put_program(
        "212313",
        program_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let consumer = consumer(
        store.clone(),
        Arc::new(MemoryDeadLetters::default()),
        Arc::new(core_data.clone()),
    )
    .await;
    let batch = vec![
        record("1", good_record("msg-1", "212313")),
        record("2", good_record("msg-2", "212313")),
    ];
    let mut duplicates = 0;
    for _ in 0..3 {
        let report = consumer.handle(batch.clone()).await;
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        duplicates += report.duplicate_events;
    }
    assert_eq!(store.events.lock().unwrap().len(), 2);
    assert_eq!(duplicates, 4);
    let program = core_data.program("212313").unwrap();
    assert_eq!(program[names::EVENT_COUNT_FIELD], "2");
}
