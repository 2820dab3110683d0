//! A poison record (one the consumer chain fails on, every time) among good ones, on
//! the AWS path under the Lambda Runtime API emulator and in embedded mode: the poison
//! ends as a dead letter, every good record is stored and counted, nothing is stuck.
//!
//! The consumer chain ends with `hostile-half-trap`, which traps on events whose client
//! id (the `id` a client sent, kept as `clientEventId`) ends in an even byte: the good
//! events' ids end in `1`, the poison's in `0`.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::Record;
use base64::Engine as _;
use serde_json::{Value, json};
use test_support::LambdaFunction;

use super::aws_world::{AwsWorld, aws_env, sdk_config};
use super::embedded_world::{EmbeddedWorld, dead_letters};
use super::load::PROGRAMS;
use super::reconcile::{Reconciliation, counter_total};
use crate::common::*;

/// Host and consumer chains of the poison scenarios.
const PIPELINE: &str = r#"
[plugins.enrich]
path = "{plugins}/enrich.wasm"
config = { fields = "programName,checksum,customerId,customerName" }

[plugins.validate-tracking]
path = "{plugins}/validate-tracking.wasm"

[plugins.trap-on-even-ids]
path = "{plugins}/hostile-half-trap.wasm"

[pipeline]
host = ["enrich", "validate-tracking"]
consumer = ["validate-tracking", "trap-on-even-ids"]
"#;

/// `POST /events` requests, and events in each.
const REQUESTS: usize = 30;
const EVENTS_PER_REQUEST: usize = 10;

/// The event source mapping's defaults in `infrastructure/`: records per invocation,
/// and retries of a failing batch before Lambda gives up on what is left of it.
const BATCH_SIZE: usize = 100;
const MAXIMUM_RETRY_ATTEMPTS: usize = 5;

/// How long the embedded consumer may take to store the good records and park the poison.
const EMBEDDED_LIMIT: Duration = Duration::from_secs(45);

/// What the batches were answered.
struct Sent {
    acknowledged: Vec<String>,
    poison: Vec<String>,
    failures: String,
}

/// Sends [`REQUESTS`] batches; the middle one carries the poison among good events.
async fn send_batches(host: &Host) -> Sent {
    let mut sent = Sent {
        acknowledged: Vec::new(),
        poison: Vec::new(),
        failures: String::new(),
    };
    let mut refused = 0;
    for request in 0..REQUESTS {
        let events: Vec<Value> = (0..EVENTS_PER_REQUEST)
            .map(|event| {
                let poison = request == REQUESTS / 2 && event == EVENTS_PER_REQUEST / 2;
                let end = if poison { "0" } else { "1" };
                json!({
                    "id": format!("batch-{request:03}-{event:02}-{end}"),
                    "attributes": {
                        "programId": PROGRAMS[event % PROGRAMS.len()],
                        "userAgent": "Mozilla/5.0"
                    }
                })
            })
            .collect();
        let response = host
            .client
            .post(host.at("/events"))
            .json(&events)
            .send()
            .await
            .expect("POST /events");
        if response.status() != 200 {
            refused += 1;
            continue;
        }
        let body: Value = response.json().await.expect("json");
        for result in body["results"].as_array().expect("results") {
            assert_eq!(result["outcome"], "accepted", "{result}");
            let id = result["ids"][0].as_str().expect("an output id").to_owned();
            if result["index"] == EVENTS_PER_REQUEST / 2 && request == REQUESTS / 2 {
                sent.poison.push(id.clone());
            }
            sent.acknowledged.push(id);
        }
    }
    sent.failures = if refused == 0 {
        "none".into()
    } else {
        format!("{refused} batches refused")
    };
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_under_the_lambda_emulator_is_dead_lettered_and_blocks_nothing() {
    let world = AwsWorld::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = write_pipeline(dir.path(), PIPELINE);
    let host = world
        .start_host_with(&[("PIPELINE_FILE", pipeline.display().to_string())])
        .await;
    let sent = send_batches(&host).await;

    let sqs_endpoint = service_env("SQS_ENDPOINT_URL");
    let sqs = aws_sdk_sqs::Client::new(&sdk_config(&sqs_endpoint).await);
    let queue_url = sqs
        .create_queue()
        .queue_name(test_support::unique("fault-dead-letters"))
        .send()
        .await
        .expect("CreateQueue on moto")
        .queue_url()
        .expect("a queue URL")
        .to_owned();
    let mut env = aws_env();
    env.extend([
        ("PIPELINE_FILE", pipeline.display().to_string()),
        ("DYNAMODB_TABLE", world.table.clone()),
        ("REDIS_URL", world.redis_url()),
        ("DEAD_LETTER_QUEUE_URL", queue_url.clone()),
        (
            "PLUGIN_CACHE_DIR",
            dir.path().join("artifacts").display().to_string(),
        ),
        (
            "AWS_ENDPOINT_URL_DYNAMODB",
            format!("http://127.0.0.1:{}", world.dynamodb_proxy.port()),
        ),
        ("AWS_ENDPOINT_URL_SQS", sqs_endpoint),
        ("LOG_JSON", "false".into()),
    ]);
    let mut function = LambdaFunction::start(&env).await;
    let given_up = event_source_mapping(&mut function, &world).await;

    let mut observed = world.observe().await;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("GetQueueAttributes");
    observed.dead_letters = attributes
        .attributes()
        .and_then(|attributes| {
            attributes.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        })
        .and_then(|count| count.parse().ok())
        .unwrap_or_default();
    Reconciliation::new(
        "a poison record among good ones (Lambda emulator)",
        &sent.acknowledged,
        &sent.poison,
        observed,
        format!(
            "{}; the mapping gave up on {given_up} records",
            sent.failures
        ),
    )
    .print_and_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_in_embedded_mode_is_dead_lettered_and_blocks_nothing() {
    let world = EmbeddedWorld::start(PIPELINE).await;
    let mut host = world.start_host().await;
    let sent = send_batches(&host).await;
    let good = (sent.acknowledged.len() - sent.poison.len()) as u64;
    let started = Instant::now();
    while started.elapsed() < EMBEDDED_LIMIT
        && (counter_total(&world.redis).await < good || dead_letters(&host) < sent.poison.len())
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    host.kill();
    Reconciliation::new(
        "a poison record among good ones (embedded)",
        &sent.acknowledged,
        &sent.poison,
        world.observe(&host).await,
        sent.failures,
    )
    .print_and_check();
}

/// Plays Lambda's event source mapping with partial batch responses over every shard:
/// batches of [`BATCH_SIZE`]; a batch with failures is retried from its first failed
/// record, and after [`MAXIMUM_RETRY_ATTEMPTS`] retries the rest of it is given up
/// (its on-failure destination would get the shard and sequence pointers only).
/// Returns how many records were given up on.
async fn event_source_mapping(function: &mut LambdaFunction, world: &AwsWorld) -> usize {
    let mut given_up = 0;
    for shard in world.shard_records().await {
        let (mut position, mut retries) = (0, 0);
        while position < shard.len() {
            let batch = &shard[position..shard.len().min(position + BATCH_SIZE)];
            let answer = function.invoke(&kinesis_event(&world.stream, batch)).await;
            let failed: Vec<&str> = match answer["batchItemFailures"].as_array() {
                Some(failures) => failures
                    .iter()
                    .filter_map(|failure| failure["itemIdentifier"].as_str())
                    .collect(),
                // The whole invocation failed.
                None => vec![batch[0].sequence_number()],
            };
            match batch
                .iter()
                .position(|record| failed.contains(&record.sequence_number()))
            {
                None => (position, retries) = (position + batch.len(), 0),
                Some(first) if retries < MAXIMUM_RETRY_ATTEMPTS => {
                    (position, retries) = (position + first, retries + 1)
                }
                Some(first) => {
                    given_up += batch.len() - first;
                    (position, retries) = (position + batch.len(), 0);
                }
            }
        }
    }
    given_up
}

/// A Kinesis event as the event source mapping sends it.
fn kinesis_event(stream: &str, records: &[Record]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|record| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": record.partition_key(),
                    "sequenceNumber": record.sequence_number(),
                    "data": base64::engine::general_purpose::STANDARD.encode(record.data().as_ref()),
                    "approximateArrivalTimestamp": 1_700_000_000.5
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:{}", record.sequence_number()),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/consumer",
                "awsRegion": "us-east-1",
                "eventSourceARN": format!("arn:aws:kinesis:us-east-1:123456789012:stream/{stream}")
            })
        })
        .collect();
    json!({ "Records": records })
}
