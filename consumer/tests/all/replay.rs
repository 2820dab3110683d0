//! `replay`: dead letters (one kept in S3 because it is too large for the queue) and a
//! failure record of the event source mapping, re-driven through the consumer from the
//! dead-letter queue (moto), the stream (kinesalite) and into DynamoDB Local.

use std::sync::Arc;

use crate::common::*;
use adtrack_consumer::aws::replay::{ReplaySources, replay};
use adtrack_consumer::aws::sqs::{LetterOverflow, MAX_QUEUED_LETTER_BYTES};
use adtrack_consumer::aws::{DynamoDbStore, SqsDeadLetters};
use adtrack_consumer::dead_letter::{DeadLetter, DeadLetterSink};
use adtrack_consumer::init::load_chain;
use adtrack_consumer::{Consumer, StreamRecord};
use aws_sdk_kinesis::primitives::Blob;
use contract::TrackingEvent;
use core_data::NoCoreDataUpdates;

struct Setup {
    consumer: Consumer,
    sources: ReplaySources,
    dead_letters: SqsDeadLetters,
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    stream: String,
}

async fn setup() -> Setup {
    let emulators = emulators();
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config(&emulators.dynamodb).await);
    let table = unique("replayed");
    create_event_table(&dynamodb, &table).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk_config(&emulators.sqs).await);
    let queue_url = sqs
        .create_queue()
        .queue_name(unique("replay-letters"))
        .send()
        .await
        .expect("CreateQueue")
        .queue_url()
        .expect("a queue URL")
        .to_owned();
    let bucket = unique("letters");
    test_support::create_bucket(&bucket).await;
    let s3_config = aws_sdk_s3::config::Builder::from(&sdk_config(&emulators.sqs).await)
        .force_path_style(true)
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(s3_config);
    let kinesis = aws_sdk_kinesis::Client::new(&sdk_config(&emulators.kinesis).await);
    let stream = unique("replay-stream");
    create_stream(&kinesis, &stream, 1).await;
    let dead_letters = SqsDeadLetters::new(
        sqs.clone(),
        &queue_url,
        Some(LetterOverflow {
            client: s3.clone(),
            bucket,
            prefix: "dead-letters/".into(),
        }),
    );
    let (chain, _) = load_chain(
        &pipeline_file(),
        Some(artifact_cache_dir()),
        Arc::new(plugin_engine::NoCoreData),
    )
    .await
    .expect("the consumer chain");
    let consumer = Consumer::new(
        Arc::new(chain),
        Arc::new(DynamoDbStore::new(dynamodb.clone(), &table)),
        Arc::new(dead_letters.clone()),
        Arc::new(NoCoreDataUpdates),
    );
    Setup {
        consumer,
        sources: ReplaySources {
            sqs,
            queue_url,
            s3,
            kinesis,
        },
        dead_letters,
        dynamodb,
        table,
        stream,
    }
}

fn record(sequence: &str, message_id: &str, payload_bytes: usize) -> StreamRecord {
    let mut event = tracking_event(message_id, &unique_program_id(), "Mozilla/5.0");
    event.payload = vec![b'x'; payload_bytes];
    StreamRecord {
        id: sequence.to_owned(),
        partition_key: message_id.to_owned(),
        data: TrackingEvent::from_event(&event, &[]).to_bytes(),
    }
}

/// Puts `records` on the stream; returns the first and last sequence numbers.
async fn put_on_stream(setup: &Setup, records: &[StreamRecord]) -> (String, String) {
    let mut sequences = Vec::new();
    for record in records {
        let output = setup
            .sources
            .kinesis
            .put_record()
            .stream_name(&setup.stream)
            .partition_key(&record.partition_key)
            .data(Blob::new(record.data.clone()))
            .send()
            .await
            .expect("PutRecord");
        sequences.push(output.sequence_number().to_owned());
    }
    (sequences[0].clone(), sequences[sequences.len() - 1].clone())
}

#[tokio::test]
async fn dead_letters_and_failure_records_are_replayed_into_the_store() {
    let setup = setup().await;
    let id = |name: &str| format!("{}-{name}", setup.table);

    // A record that failed on every attempt, and one too large for the queue.
    let exhausted = record("1", &id("exhausted"), 0);
    let large = record("2", &id("large"), MAX_QUEUED_LETTER_BYTES);
    for letter in [
        DeadLetter::exhausted(&exhausted, 3, "plugin enrich failed: trap".into()),
        DeadLetter::exhausted(&large, 3, "event store: throttled".into()),
    ] {
        setup.dead_letters.send(&letter).await.expect("SendMessage");
    }
    // A batch the event source mapping gave up on: only pointers into the stream.
    let skipped = [
        record("", &id("skipped-1"), 0),
        record("", &id("skipped-2"), 0),
    ];
    let (start, end) = put_on_stream(&setup, &skipped).await;
    let failure_record = serde_json::json!({
        "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 6},
        "version": "1.0",
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000000",
            "startSequenceNumber": start,
            "endSequenceNumber": end,
            "batchSize": 2,
            "streamArn": format!("arn:aws:kinesis:us-east-1:000000000000:stream/{}", setup.stream),
        }
    });
    for body in [failure_record.to_string(), "not a letter".to_owned()] {
        setup
            .sources
            .sqs
            .send_message()
            .queue_url(&setup.sources.queue_url)
            .message_body(body)
            .send()
            .await
            .expect("SendMessage");
    }

    let report = replay(&setup.consumer, &setup.sources, 100)
        .await
        .expect("replay");
    assert_eq!(report.messages, 4, "{report:?}");
    assert_eq!(report.dead_letters, 2, "{report:?}");
    assert_eq!(report.failure_records, 1, "{report:?}");
    assert_eq!(report.records, 4, "{report:?}");
    assert_eq!(report.stored_events, 4, "{report:?}");
    assert_eq!(report.deleted, 3, "{report:?}");
    assert_eq!(report.left.len(), 1, "{report:?}");
    assert!(
        report.left[0].contains("neither a dead letter"),
        "{report:?}"
    );

    let mut expected = vec![
        id("exhausted"),
        id("large"),
        id("skipped-1"),
        id("skipped-2"),
    ];
    expected.sort();
    assert_eq!(scan_ids(&setup.dynamodb, &setup.table).await, expected);
}
