//! Embedded mode end to end: records appended to the durable local log (as the host
//! appends them) are consumed by the in-process loop into the embedded store, read back;
//! a restarted loop resumes after its checkpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use adtrack_consumer::Consumer;
use adtrack_consumer::dead_letter::JsonLinesDeadLetters;
use adtrack_consumer::drivers::embedded::{DEFAULT_READER, run_embedded};
use adtrack_consumer::init::load_chain;
use adtrack_consumer::store::EmbeddedStore;
use contract::redis_names as names;
use core_data::{CoreDataStore, InProcessCoreData};
use embedded_log::EmbeddedLog;
use tokio::sync::oneshot;

struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(log: &EmbeddedLog, consumer: Arc<Consumer>) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run_embedded(log.clone(), consumer, async {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

async fn wait_for_checkpoint(log: &EmbeddedLog, sequence: u64) {
    let started = Instant::now();
    while log.checkpoint(DEFAULT_READER).unwrap() != Some(sequence) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the embedded consumer did not reach sequence {sequence} (at {:?})",
            log.checkpoint(DEFAULT_READER).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_events_reach_the_embedded_store_and_a_restart_resumes_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(&dir.path().join("stream-log")).unwrap();
    let store = EmbeddedStore::open(&dir.path().join("events.redb")).unwrap();
    let dead_letter_file = dir.path().join("dead-letters.jsonl");
    let core_data = InProcessCoreData::new();
    core_data.put_program(
        "212313",
        program_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let mut updates = core_data.subscribe();
    let (chain, _) = load_chain(
        &pipeline_file(),
        Some(artifact_cache_dir()),
        Arc::new(core_data.clone()),
    )
    .await
    .unwrap();
    let consumer = Arc::new(Consumer::new(
        Arc::new(chain),
        Arc::new(store.clone()),
        Arc::new(JsonLinesDeadLetters::open(&dead_letter_file).unwrap()),
        Arc::new(core_data.clone()),
    ));

    // The host's side: append what it accepted.
    let sequences = log
        .append(&[
            ("msg-1".into(), good_record("msg-1", "212313")),
            ("msg-2".into(), bot_record("msg-2", "212313")),
            ("garbage".into(), undecodable_record()),
            ("msg-4".into(), rejected_record("msg-4", "212313")),
            ("msg-5".into(), good_record("msg-5", "212313")),
        ])
        .unwrap();
    assert_eq!(sequences, [1, 2, 3, 4, 5]);

    let running = start(&log, consumer.clone()).await;
    wait_for_checkpoint(&log, 5).await;
    running.stop.send(()).unwrap();
    running.task.await.unwrap();

    let stored: Vec<_> = store.all().unwrap();
    let ids: Vec<_> = stored.iter().map(|event| event.event.id.as_str()).collect();
    assert_eq!(ids, ["msg-1", "msg-5"]);
    assert_eq!(stored[0].event.attribute("valid"), Some("true"));
    assert_eq!(
        stored[0].event.attribute("programName"),
        Some("Summer Video Preroll")
    );
    let dead_letters = std::fs::read_to_string(&dead_letter_file).unwrap();
    assert_eq!(dead_letters.lines().count(), 2, "{dead_letters}");
    assert!(dead_letters.contains("missing checksum"));
    assert_eq!(
        core_data.program("212313").unwrap()[names::EVENT_COUNT_FIELD],
        "2"
    );
    assert_eq!(updates.recv().await.unwrap(), "212313");

    // The host appends more while the consumer is down; a new loop picks up only those.
    log.append(&[("msg-6".into(), good_record("msg-6", "212313"))])
        .unwrap();
    let running = start(&log, consumer).await;
    wait_for_checkpoint(&log, 6).await;
    running.stop.send(()).unwrap();
    running.task.await.unwrap();

    assert_eq!(store.len().unwrap(), 3);
    assert!(store.get("msg-6").unwrap().is_some());
    assert_eq!(
        std::fs::read_to_string(&dead_letter_file)
            .unwrap()
            .lines()
            .count(),
        2,
        "records before the checkpoint are not handled again"
    );
    assert_eq!(
        core_data.program("212313").unwrap()[names::EVENT_COUNT_FIELD],
        "3"
    );
}

/// A record that fails on every attempt (a consumer plugin traps on it) becomes a dead
/// letter with its data at the consumer's attempt limit; the records behind it are
/// stored and the log moves on instead of stalling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_is_dead_lettered_and_the_log_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(&dir.path().join("stream-log")).unwrap();
    let store = EmbeddedStore::open(&dir.path().join("events.redb")).unwrap();
    let dead_letter_file = dir.path().join("dead-letters.jsonl");
    // The half-trap plugin traps on events whose id ends in an even digit.
    let pipeline = test_support::write_pipeline(
        dir.path(),
        r#"
[plugins.half-trap]
path = "{plugins}/hostile-half-trap.wasm"

[pipeline]
host = []
consumer = ["half-trap"]
"#,
    );
    let (chain, _) = load_chain(
        &pipeline,
        Some(artifact_cache_dir()),
        Arc::new(plugin_engine::NoCoreData),
    )
    .await
    .unwrap();
    let consumer = Arc::new(Consumer::new(
        Arc::new(chain),
        Arc::new(store.clone()),
        Arc::new(JsonLinesDeadLetters::open(&dead_letter_file).unwrap()),
        Arc::new(InProcessCoreData::new()),
    ));
    log.append(&[
        ("msg-1".into(), good_record("msg-1", "212313")),
        ("msg-2".into(), good_record("msg-2", "212313")),
        ("msg-3".into(), good_record("msg-3", "212313")),
    ])
    .unwrap();

    let running = start(&log, consumer).await;
    wait_for_checkpoint(&log, 3).await;
    running.stop.send(()).unwrap();
    running.task.await.unwrap();

    let ids: Vec<_> = store
        .all()
        .unwrap()
        .into_iter()
        .map(|event| event.event.id)
        .collect();
    assert_eq!(ids, ["msg-1", "msg-3"]);
    let letters = std::fs::read_to_string(&dead_letter_file).unwrap();
    let letter: serde_json::Value =
        serde_json::from_str(letters.lines().next().expect("a dead letter")).unwrap();
    assert_eq!(letters.lines().count(), 1, "{letters}");
    assert_eq!(letter["kind"], "exhausted");
    assert_eq!(letter["recordId"], "2");
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .starts_with("failed 3 times"),
        "{letter}"
    );
    assert!(!letter["dataBase64"].as_str().unwrap().is_empty());
}
