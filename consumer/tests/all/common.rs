//! Helpers shared by the integration tests: the emulators' addresses (from the
//! environment `cargo xtask test` sets), unique names, fixtures and stream records.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
pub use test_support::dynamodb::create_event_table;
pub use test_support::{plugin_path, repo_root, unique};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use contract::TrackingEvent;
use plugin_engine::Event;

/// Where the services the tests need are.
pub struct Emulators {
    pub redis_url: String,
    pub kinesis: String,
    pub dynamodb: String,
    pub sqs: String,
}

/// The emulators' addresses; panics (never skips) when they are not set.
pub fn emulators() -> Emulators {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: run `cargo xtask test`, which starts the emulators \
                 (redis-server, kinesalite, DynamoDB Local, moto) and sets it"
            )
        })
    };
    for name in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        var(name);
    }
    Emulators {
        redis_url: var("REDIS_URL"),
        kinesis: var("KINESIS_ENDPOINT_URL"),
        dynamodb: var("DYNAMODB_ENDPOINT_URL"),
        sqs: var("SQS_ENDPOINT_URL"),
    }
}

/// SDK configuration for an emulator at `endpoint`.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .load()
        .await
}

/// A program id (digits, as `validate-tracking` wants) no other test uses.
pub fn unique_program_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or_default();
    let n = (nanos / 1000 % 1_000_000_000) * 100 + COUNTER.fetch_add(1, Ordering::Relaxed) % 100;
    format!("9{:011}{:05}", n, std::process::id() % 100_000)
}

/// The test pipeline (`filter` then `validate-tracking`); panics if the plugins are not built.
pub fn pipeline_file() -> PathBuf {
    for plugin in ["filter", "validate-tracking"] {
        plugin_path(plugin);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipeline.toml")
}

/// A shared artifact cache for the tests' plugin engines, so only the first compiles.
pub fn artifact_cache_dir() -> PathBuf {
    repo_root().join("target/tmp/consumer-test-artifacts")
}

/// A tracking event as the host puts it on the stream.
pub fn tracking_event(message_id: &str, program_id: &str, user_agent: &str) -> Event {
    Event {
        id: message_id.to_owned(),
        key: message_id.to_owned(),
        timestamp_ms: 1_700_000_000_000,
        content_type: "application/json".to_owned(),
        payload: Vec::new(),
        attributes: vec![
            ("checksum".into(), "b84e02d7".into()),
            ("customerId".into(), "4712".into()),
            ("customerName".into(), "Globex Travel".into()),
            ("programId".into(), program_id.into()),
            ("programName".into(), "Summer Video Preroll".into()),
            ("userAgent".into(), user_agent.into()),
        ],
    }
}

/// The protobuf bytes of a well-formed tracking event.
pub fn good_record(message_id: &str, program_id: &str) -> Vec<u8> {
    TrackingEvent::from_event(&tracking_event(message_id, program_id, "Mozilla/5.0"), &[])
        .to_bytes()
}

/// A tracking event `validate-tracking` rejects (no checksum).
pub fn rejected_record(message_id: &str, program_id: &str) -> Vec<u8> {
    let mut event = tracking_event(message_id, program_id, "Mozilla/5.0");
    event.attributes.retain(|(name, _)| name != "checksum");
    TrackingEvent::from_event(&event, &[]).to_bytes()
}

/// A tracking event from a bot, which `filter` drops.
pub fn bot_record(message_id: &str, program_id: &str) -> Vec<u8> {
    TrackingEvent::from_event(
        &tracking_event(message_id, program_id, "Googlebot/2.1"),
        &[],
    )
    .to_bytes()
}

/// Bytes that are not a `TrackingEvent`.
pub fn undecodable_record() -> Vec<u8> {
    vec![0xff, 0xff, 0xff, 0x01]
}

/// Core-data fields of a program, as the host's `/cache/fill` writes them.
pub fn program_fields() -> Vec<(&'static str, &'static str)> {
    vec![
        ("programName", "Summer Video Preroll"),
        ("checksum", "b84e02d7"),
        ("customerId", "4712"),
        ("customerName", "Globex Travel"),
    ]
}

/// Every item of `table`: message id → item.
pub async fn scan_ids(client: &aws_sdk_dynamodb::Client, table: &str) -> Vec<String> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let mut ids = Vec::new();
    let mut start = None;
    loop {
        let output = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan the table");
        for item in output.items() {
            if let Some(AttributeValue::S(id)) = item.get("id")
                && adtrack_consumer::aws::dynamodb::is_event_id(id)
            {
                ids.push(id.clone());
            }
        }
        start = output.last_evaluated_key().cloned();
        if start.is_none() {
            break;
        }
    }
    ids.sort();
    ids
}

/// Creates a Kinesis stream of `shards` shards and waits until it is active.
pub async fn create_stream(client: &aws_sdk_kinesis::Client, stream: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(stream)
        .shard_count(shards)
        .send()
        .await
        .expect("create the Kinesis stream");
    for _ in 0..100 {
        let description = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .expect("describe the stream");
        let status = description
            .stream_description_summary()
            .map(|summary| summary.stream_status().clone());
        if status == Some(aws_sdk_kinesis::types::StreamStatus::Active) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("stream {stream} did not become active");
}
