//! Redis core data (real `redis-server`): stored events update the program's hash and a
//! subscriber of `core-data-updates` sees the program id; unknown programs are left alone.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use adtrack_consumer::aws::DynamoDbStore;
use adtrack_consumer::dead_letter::LoggedDeadLetters;
use adtrack_consumer::init::load_chain;
use adtrack_consumer::{Consumer, StreamRecord};
use contract::redis_names as names;
use core_data::{CoreDataUpdates, ProgramCount, RedisCoreData};
use futures::StreamExt;
use plugin_engine::CoreDataLookup;
use redis::AsyncCommands;

async fn admin(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis-server")
}

#[tokio::test]
async fn stored_events_update_the_program_and_a_subscriber_sees_the_notification() {
    let emulators = emulators();
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config(&emulators.dynamodb).await);
    let table = unique("core-data");
    create_event_table(&dynamodb, &table).await;
    let program_id = unique_program_id();
    let mut admin = admin(&emulators.redis_url).await;
    let _: () = admin
        .hset_multiple(names::program_key(&program_id), &program_fields())
        .await
        .unwrap();

    let mut subscriber = redis::Client::open(emulators.redis_url.as_str())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    subscriber.subscribe(names::UPDATES_CHANNEL).await.unwrap();

    let redis = RedisCoreData::connect(
        &emulators.redis_url.as_str().into(),
        None,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let (chain, _) = load_chain(
        &pipeline_file(),
        Some(artifact_cache_dir()),
        Arc::new(redis.clone()),
    )
    .await
    .unwrap();
    let consumer = Consumer::new(
        Arc::new(chain),
        Arc::new(DynamoDbStore::new(dynamodb, &table)),
        Arc::new(LoggedDeadLetters),
        Arc::new(redis.clone()),
    );
    let records = (0..3)
        .map(|n| StreamRecord {
            id: n.to_string(),
            partition_key: format!("{table}-{n}"),
            data: good_record(&format!("{table}-{n}"), &program_id),
        })
        .collect();
    let report = consumer.handle(records).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);

    let mut messages = subscriber.on_message();
    let published = loop {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("a notification within 5 s")
            .expect("the subscription is open");
        let payload: String = message.get_payload().unwrap();
        // Other tests publish their own programs on the same channel.
        if payload == program_id {
            break payload;
        }
    };
    assert_eq!(published, program_id);

    let fields: std::collections::HashMap<String, String> = admin
        .hgetall(names::program_key(&program_id))
        .await
        .unwrap();
    assert_eq!(fields[names::EVENT_COUNT_FIELD], "3");
    assert_eq!(fields[names::LAST_SEEN_FIELD], "1700000000000");
    assert_eq!(
        fields["programName"], "Summer Video Preroll",
        "core data is kept"
    );

    // The consumer's plugins read the same core data.
    let looked_up = redis
        .lookup(&program_id)
        .await
        .unwrap()
        .expect("the program");
    assert!(
        looked_up
            .iter()
            .any(|(k, v)| k == "customerId" && v == "4712")
    );
}

#[tokio::test]
async fn a_count_for_an_unknown_program_does_not_create_it() {
    let emulators = emulators();
    let redis = RedisCoreData::connect(
        &emulators.redis_url.as_str().into(),
        None,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let program_id = unique_program_id();
    redis
        .publish_counts(&[ProgramCount {
            program_id: program_id.clone(),
            event_count: 1,
            last_seen_ms: 5,
        }])
        .await
        .unwrap();
    let mut admin = admin(&emulators.redis_url).await;
    let exists: bool = admin.exists(names::program_key(&program_id)).await.unwrap();
    assert!(!exists, "the host would serve a made-up program");
    assert_eq!(redis.lookup(&program_id).await.unwrap(), None);
}

#[tokio::test]
async fn an_unreachable_redis_is_a_connect_error_not_a_hang() {
    // Nothing listens on port 1.
    let started = std::time::Instant::now();
    let result = RedisCoreData::connect(
        &"redis://127.0.0.1:1".into(),
        None,
        Duration::from_millis(500),
    )
    .await;
    assert!(result.is_err());
    assert!(started.elapsed() < Duration::from_secs(30));
}
