//! A batch delivered four times (the first delivery and three redeliveries, as a
//! stream does after a timeout or a crash between writing and checkpointing): stored
//! once and counted once, on the AWS path and in embedded mode.

use std::sync::Arc;

use adtrack_consumer::dead_letter::LoggedDeadLetters;
use adtrack_consumer::init::load_chain;
use adtrack_consumer::store::EmbeddedStore;
use adtrack_consumer::{Consumer, StreamRecord};
use contract::TrackingEvent;
use contract::redis_names::EVENT_COUNT_FIELD;
use core_data::InProcessCoreData;
use embedded_log::EmbeddedLog;

use super::aws_world::AwsWorld;
use super::consumer::{catch_up, poller};
use super::embedded_world::sample_programs;
use super::load::{Load, PROGRAMS};
use super::reconcile::{Observed, Reconciliation};
use crate::common::*;

/// Deliveries of every record: the first and three redeliveries.
const DELIVERIES: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_redelivered_three_times_is_stored_and_counted_once() {
    let world = AwsWorld::start().await;
    let host = world.start_host().await;
    let report = Load::start(&host.url).finish().await;
    for _ in 0..DELIVERIES {
        // A poller without checkpoints reads every shard from its oldest record again.
        let mut poller = poller(&world).await;
        catch_up(&mut poller).await;
    }
    Reconciliation::new(
        "a batch redelivered three times",
        &report.acknowledged,
        &[],
        world.observe().await,
        report.failures(),
    )
    .print_and_check();
}

/// The embedded consumer (the host's, with the embedded store and in-process core
/// data) handles the embedded log's records four times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_redelivered_three_times_in_embedded_mode_is_counted_once() {
    let mut host = start_host(&[]).await;
    host.get("/cache/fill").await;
    let report = Load::start(&host.url).finish().await;
    host.kill();
    let log = EmbeddedLog::open(&host.stream_log()).expect("the host's stream log");
    let records: Vec<StreamRecord> = log
        .read_after(None, usize::MAX)
        .expect("read the log")
        .into_iter()
        .map(|record| StreamRecord {
            id: record.sequence.to_string(),
            partition_key: record.key,
            data: record.data,
        })
        .collect();

    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("events.redb")).expect("store"));
    let core_data = Arc::new(InProcessCoreData::new());
    for (program, fields) in sample_programs() {
        core_data.put_program(&program, fields);
    }
    let (chain, _) = load_chain(&repo_root().join("pipeline.toml"), None, core_data.clone())
        .await
        .expect("the consumer chain loads");
    let consumer = Consumer::new(
        Arc::new(chain),
        store.clone(),
        Arc::new(LoggedDeadLetters),
        core_data.clone(),
    );
    for _ in 0..DELIVERIES {
        consumer.handle(records.clone()).await;
    }

    let counted = PROGRAMS
        .iter()
        .filter_map(|program| core_data.program(program))
        .filter_map(|fields| fields.get(EVENT_COUNT_FIELD)?.parse::<u64>().ok())
        .sum();
    let observed = Observed {
        stream: records
            .iter()
            .map(|record| {
                TrackingEvent::from_bytes(&record.data)
                    .expect("a record the host wrote decodes")
                    .message_id
            })
            .collect(),
        stored: store
            .all()
            .expect("stored events")
            .into_iter()
            .map(|stored| stored.event.id)
            .collect(),
        counted,
        dead_letters: 0,
    };
    Reconciliation::new(
        "a batch redelivered three times (embedded)",
        &report.acknowledged,
        &[],
        observed,
        report.failures(),
    )
    .print_and_check();
}
