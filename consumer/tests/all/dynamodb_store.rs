//! The DynamoDB store against DynamoDB Local: conditional writes that never overwrite,
//! counts kept in the same transaction, and an item DynamoDB refuses as it is isolated
//! as a permanent failure without holding the others.

use std::collections::BTreeMap;

use crate::common::*;
use adtrack_consumer::aws::DynamoDbStore;
use adtrack_consumer::aws::dynamodb::{counter_id, item};
use adtrack_consumer::store::{EventStore, StoredEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use retry_policy::{Classify, ErrorKind};

fn stored(id: &str, program_id: &str, payload: Vec<u8>) -> StoredEvent {
    let mut event = tracking_event(id, program_id, "Mozilla/5.0");
    event.payload = payload;
    StoredEvent {
        event,
        ..StoredEvent::default()
    }
}

async fn store() -> (DynamoDbStore, aws_sdk_dynamodb::Client, String) {
    let emulators = emulators();
    let client = aws_sdk_dynamodb::Client::new(&sdk_config(&emulators.dynamodb).await);
    let table = unique("store");
    create_event_table(&client, &table).await;
    (DynamoDbStore::new(client.clone(), &table), client, table)
}

async fn item_of(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    id: &str,
) -> Option<std::collections::HashMap<String, AttributeValue>> {
    client
        .get_item()
        .table_name(table)
        .key(item::ID, AttributeValue::S(id.to_owned()))
        .send()
        .await
        .expect("GetItem")
        .item()
        .cloned()
}

#[tokio::test]
async fn an_event_is_written_once_and_counted_once_whoever_writes_it_again() {
    let (store, client, table) = store().await;
    let program = unique_program_id();
    let first = store
        .put(&[
            stored("a", &program, b"original".to_vec()),
            stored("b", &program, Vec::new()),
        ])
        .await;
    assert_eq!(first.stored, ["a", "b"]);
    assert_eq!(first.counts, BTreeMap::from([(program.clone(), 2)]));

    let again = store
        .put(&[
            stored("a", &program, b"forged".to_vec()),
            stored("c", &program, Vec::new()),
        ])
        .await;
    assert_eq!(again.stored, ["c"]);
    assert_eq!(again.duplicates, ["a"]);
    assert!(again.failed.is_empty());
    assert_eq!(again.counts, BTreeMap::from([(program.clone(), 3)]));

    let kept = item_of(&client, &table, "a").await.expect("a is stored");
    assert_eq!(
        kept[item::PAYLOAD],
        AttributeValue::B(b"original".to_vec().into())
    );
    let counter = item_of(&client, &table, &counter_id(&program))
        .await
        .expect("the counter");
    assert_eq!(counter[item::EVENT_COUNT], AttributeValue::N("3".into()));
}

#[tokio::test]
async fn an_item_over_the_size_limit_fails_alone_and_permanently() {
    let (store, client, table) = store().await;
    let program = unique_program_id();
    let report = store
        .put(&[
            stored("small-1", &program, Vec::new()),
            stored("huge", &program, vec![b'x'; 450 * 1024]),
            stored("small-2", &program, Vec::new()),
        ])
        .await;
    let mut written = report.stored.clone();
    written.sort();
    assert_eq!(written, ["small-1", "small-2"]);
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    let (id, error) = &report.failed[0];
    assert_eq!(id, "huge");
    assert_eq!(error.kind(), ErrorKind::Permanent, "{error}");
    assert_eq!(report.counts[&program], 2);
    assert!(item_of(&client, &table, "huge").await.is_none());
}

#[tokio::test]
async fn programs_written_concurrently_are_each_counted_exactly_under_redelivery() {
    let (store, _, _) = store().await;
    let store = store.with_write_concurrency(4);
    let programs: Vec<String> = (0..6).map(|_| unique_program_id()).collect();
    // 150 events per program: two transactions each, which share the program's counter.
    let batch: Vec<StoredEvent> = (0..150)
        .flat_map(|n| {
            programs
                .iter()
                .map(move |program| stored(&format!("{program}-{n}"), program, Vec::new()))
        })
        .collect();
    let first = store.put(&batch).await;
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    assert_eq!(first.stored.len(), 900);
    let expected: BTreeMap<String, u64> = programs.iter().map(|p| (p.clone(), 150)).collect();
    assert_eq!(first.counts, expected);

    // The batch redelivered with one new event per program: only those are counted.
    let mut again = batch.clone();
    again.extend(
        programs
            .iter()
            .map(|program| stored(&format!("{program}-new"), program, Vec::new())),
    );
    let second = store.put(&again).await;
    assert!(second.failed.is_empty(), "{:?}", second.failed);
    assert_eq!(second.stored.len(), 6);
    assert_eq!(second.duplicates.len(), 900);
    let expected: BTreeMap<String, u64> = programs.iter().map(|p| (p.clone(), 151)).collect();
    assert_eq!(second.counts, expected);
}
