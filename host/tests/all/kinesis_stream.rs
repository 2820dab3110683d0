//! Against kinesalite and the real redis-server: fill, track, read the record back
//! from the stream with GetRecords and decode it with the protobuf schema.

use crate::common::*;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::ShardIteratorType;
use contract::TrackingEvent;

/// The data of every record on stream `name`.
async fn read_all(client: &Client, name: &str) -> Vec<Vec<u8>> {
    let shards = client
        .list_shards()
        .stream_name(name)
        .send()
        .await
        .expect("ListShards");
    let mut records = Vec::new();
    for shard in shards.shards() {
        let iterator = client
            .get_shard_iterator()
            .stream_name(name)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator
            .expect("iterator");
        let output = client
            .get_records()
            .shard_iterator(iterator)
            .send()
            .await
            .expect("GetRecords");
        for record in output.records() {
            records.push(record.data().as_ref().to_vec());
        }
    }
    records
}

#[tokio::test]
async fn a_tracked_event_is_on_kinesis_as_a_protobuf_tracking_event() {
    let client = kinesis_client().await;
    let stream = format!("adtrack-test-{}", uuid::Uuid::new_v4().simple());
    create_stream(&client, &stream, 2).await;
    let redis_url = service_env("REDIS_URL");
    let endpoint = service_env("KINESIS_ENDPOINT_URL");
    let host = start_host(&[
        ("REDIS_URL", &redis_url),
        ("KINESIS_STREAM_NAME", &stream),
        ("KINESIS_ENDPOINT_URL", &endpoint),
    ])
    .await;
    let (status, _) = host.get("/cache/fill").await;
    assert_eq!(status, 200);
    let (status, body) = host.get("/event/212312").await;
    assert_eq!(status, 200, "{body}");
    let message_id = body["messageId"].as_str().expect("messageId").to_owned();

    let records = read_all(&client, &stream).await;
    let decoded: Vec<(TrackingEvent, &Vec<u8>)> = records
        .iter()
        .map(|data| (TrackingEvent::from_bytes(data).expect("protobuf"), data))
        .collect();
    let (record, data) = decoded
        .iter()
        .find(|(record, _)| record.message_id == message_id)
        .unwrap_or_else(|| panic!("message {message_id} not on the stream: {decoded:?}"));

    // An existing consumer, decoding with the reference architecture's schema, reads the
    // original eight fields.
    let reference = test_support::decode_with_reference_schema(data);
    assert_eq!(
        reference,
        test_support::ReferenceTrackingEvent {
            programid: "212312".into(),
            checksum: record.checksum.clone(),
            customer_id: 4711,
            user_agent: record.user_agent.clone(),
            program_name: "Spring Sale Banner".into(),
            customer_name: "Acme Outdoor".into(),
            is_valid: true,
            message_id: message_id.clone(),
        }
    );
    assert!(!reference.checksum.is_empty(), "{reference:?}");
    assert_eq!(record.program_id, "212312");
    assert_eq!(record.program_name, "Spring Sale Banner");
    assert_eq!(record.customer_id, 4711);
    assert_eq!(record.customer_name, "Acme Outdoor");
    assert!(record.valid);
    assert_eq!(record.key, message_id);
    assert_eq!(record.processed_by.len(), 4);
    let (_, health) = host.get("/health/check").await;
    assert_eq!(health["stream"]["backend"], "kinesis");
    assert_eq!(health["coreData"]["backend"], "redis");
}

/// A stream that does not exist is a configuration error: the host answers 503 at once
/// with one sentence (Kinesis' own words and request ids stay in the log), and does not
/// retry the call like a throttle.
#[tokio::test]
async fn a_missing_stream_is_refused_without_retries() {
    let redis_url = service_env("REDIS_URL");
    let endpoint = service_env("KINESIS_ENDPOINT_URL");
    let missing = format!("adtrack-missing-{}", uuid::Uuid::new_v4().simple());
    let host = start_host(&[
        ("REDIS_URL", &redis_url),
        ("KINESIS_STREAM_NAME", &missing),
        ("KINESIS_ENDPOINT_URL", &endpoint),
    ])
    .await;
    let (status, _) = host.get("/cache/fill").await;
    assert_eq!(status, 200);
    let (status, body) = host.get("/event/212312").await;
    assert_eq!(status, 503, "{body}");
    let error = body["error"].as_str().expect("an error sentence");
    assert_eq!(
        error,
        "the stream did not take the records (auth-or-config, 1 attempts)"
    );
    let metrics = host
        .client
        .get(host.at("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        !metrics.contains("stream_put_retries_total"),
        "a missing stream was retried:\n{metrics}"
    );
}
