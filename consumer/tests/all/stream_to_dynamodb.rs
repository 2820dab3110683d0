//! Kinesis (kinesalite) → consumer → DynamoDB (DynamoDB Local) and Redis: every event
//! ends up in the table exactly once, even when the stream delivers a batch twice.

use std::sync::Arc;

use crate::common::*;
use adtrack_consumer::Consumer;
use adtrack_consumer::aws::DynamoDbStore;
use adtrack_consumer::aws::dynamodb::{counter_id, item};
use adtrack_consumer::aws::kinesis_poller::KinesisPoller;
use adtrack_consumer::dead_letter::JsonLinesDeadLetters;
use adtrack_consumer::init::load_chain;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use contract::redis_names as names;
use core_data::RedisCoreData;
use redis::AsyncCommands;

async fn put_records(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[(String, Vec<u8>)],
) {
    let entries = records
        .iter()
        .map(|(key, data)| {
            PutRecordsRequestEntry::builder()
                .partition_key(key)
                .data(Blob::new(data.clone()))
                .build()
                .unwrap()
        })
        .collect();
    let output = client
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .expect("put records");
    assert_eq!(output.failed_record_count(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_put_on_the_stream_are_stored_exactly_once_even_when_delivered_twice() {
    let emulators = emulators();
    let kinesis = aws_sdk_kinesis::Client::new(&sdk_config(&emulators.kinesis).await);
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config(&emulators.dynamodb).await);
    let stream = unique("events");
    let table = unique("tracking-events");
    create_stream(&kinesis, &stream, 2).await;
    create_event_table(&dynamodb, &table).await;

    let redis = RedisCoreData::connect(
        &emulators.redis_url.as_str().into(),
        None,
        std::time::Duration::from_secs(2),
    )
    .await
    .expect("connect to redis-server");
    let program_id = unique_program_id();
    let mut admin = redis::Client::open(emulators.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = admin
        .hset_multiple(names::program_key(&program_id), &program_fields())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let dead_letters = JsonLinesDeadLetters::open(&dir.path().join("dead.jsonl")).unwrap();
    let (chain, _) = load_chain(
        &pipeline_file(),
        Some(artifact_cache_dir()),
        Arc::new(redis.clone()),
    )
    .await
    .unwrap();
    let consumer = Arc::new(Consumer::new(
        Arc::new(chain),
        Arc::new(DynamoDbStore::new(dynamodb.clone(), &table)),
        Arc::new(dead_letters),
        Arc::new(redis.clone()),
    ));

    // 60 good events (more than two BatchWriteItem chunks), one undecodable, one rejected.
    let mut records: Vec<(String, Vec<u8>)> = (0..60)
        .map(|n| {
            let id = format!("{stream}-msg-{n}");
            let data = good_record(&id, &program_id);
            (id, data)
        })
        .collect();
    records.push(("garbage".into(), undecodable_record()));
    let rejected = format!("{stream}-rejected");
    records.push((rejected.clone(), rejected_record(&rejected, &program_id)));
    put_records(&kinesis, &stream, &records).await;

    let mut first =
        KinesisPoller::new(kinesis.clone(), &stream, consumer.clone()).with_batch_size(25);
    let report = first.poll_once().await.expect("first delivery");
    assert_eq!(report.records, 62);
    assert_eq!(report.stored_events, 60);
    assert_eq!(report.dead_lettered, 2);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(first.checkpoints().len(), 2, "one checkpoint per shard");

    // The poller resumes after its checkpoints: nothing new.
    assert_eq!(first.poll_once().await.unwrap().records, 0);

    // A second consumer without checkpoints: every batch is delivered again.
    let mut again = KinesisPoller::new(kinesis.clone(), &stream, consumer.clone());
    let report = again.poll_once().await.expect("second delivery");
    assert_eq!(report.records, 62);
    assert!(report.failures.is_empty(), "{:?}", report.failures);

    let mut expected: Vec<String> = (0..60).map(|n| format!("{stream}-msg-{n}")).collect();
    expected.sort();
    assert_eq!(scan_ids(&dynamodb, &table).await, expected);

    let item = dynamodb
        .get_item()
        .table_name(&table)
        .key("id", AttributeValue::S(format!("{stream}-msg-7")))
        .send()
        .await
        .unwrap();
    let item = item.item().expect("the item is stored");
    assert_eq!(item["customer_id"], AttributeValue::N("4712".into()));
    assert_eq!(item["program_id"], AttributeValue::S(program_id.clone()));
    assert_eq!(item["valid"], AttributeValue::Bool(true));

    let count: u64 = admin
        .hget(names::program_key(&program_id), names::EVENT_COUNT_FIELD)
        .await
        .unwrap();
    assert_eq!(count, 60, "a redelivered event is counted once");
    let counter = dynamodb
        .get_item()
        .table_name(&table)
        .key("id", AttributeValue::S(counter_id(&program_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        counter.item().expect("the program's counter")[item::EVENT_COUNT],
        AttributeValue::N("60".into()),
        "the store counts each event once"
    );
    let last_seen: u64 = admin
        .hget(names::program_key(&program_id), names::LAST_SEEN_FIELD)
        .await
        .unwrap();
    assert_eq!(last_seen, 1_700_000_000_000);
}
