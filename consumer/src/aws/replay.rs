//! `adtrack-consumer replay`: re-drives the dead-letter queue through the current
//! release once the cause is fixed. The queue holds two kinds of message:
//! - dead letters written by the consumer, with the record's data (or a pointer to the
//!   whole letter in S3 when it was too large for the queue);
//! - failure records of the event source mapping (`KinesisBatchInfo`: a shard and a
//!   sequence-number range), whose records are read back from the stream while it
//!   still holds them.
//!
//! Each message's records run through the consumer as a batch would. A message is
//! deleted once every record in it is handled for good (stored, filtered, or a dead
//! letter again, which is a new message); otherwise it stays and comes back after
//! the queue's visibility timeout.

use aws_sdk_kinesis::types::ShardIteratorType;
use retry_policy::ClassifiedError;
use retry_policy::aws::failure;
use serde::{Deserialize, Serialize};

use crate::dead_letter::DeadLetter;
use crate::handler::{Consumer, StreamRecord};

/// Messages received per `ReceiveMessage` call (the SQS maximum).
const RECEIVE_BATCH: i32 = 10;
/// Seconds a received message stays hidden from other receivers while it is replayed.
const VISIBILITY_SECS: i32 = 120;
/// `GetRecords` calls per failure record, at most.
const MAX_READS: usize = 100;

/// The clients a replay uses.
pub struct ReplaySources {
    /// The dead-letter queue.
    pub sqs: aws_sdk_sqs::Client,
    /// Its URL.
    pub queue_url: String,
    /// Where large letters are kept.
    pub s3: aws_sdk_s3::Client,
    /// The stream the event source mapping reads.
    pub kinesis: aws_sdk_kinesis::Client,
}

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    /// Messages received.
    pub messages: usize,
    /// Of which dead letters written by the consumer.
    pub dead_letters: usize,
    /// Of which failure records of the event source mapping.
    pub failure_records: usize,
    /// Records run through the consumer.
    pub records: usize,
    /// Events stored.
    pub stored_events: usize,
    /// Events that were already stored.
    pub duplicate_events: usize,
    /// Records that became dead letters again (new messages).
    pub dead_lettered_again: usize,
    /// Messages deleted from the queue (every record handled).
    pub deleted: usize,
    /// Messages left in the queue: a record failed again, the stream no longer holds
    /// the records, or the message is not one this command knows.
    pub left: Vec<String>,
}

/// A failure record of the event source mapping, as Lambda sends it to its on-failure
/// destination.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FailureRecord {
    kinesis_batch_info: KinesisBatchInfo,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KinesisBatchInfo {
    shard_id: String,
    start_sequence_number: String,
    end_sequence_number: String,
    stream_arn: String,
}

/// Replays up to `max_messages` messages of the queue through `consumer`.
pub async fn replay(
    consumer: &Consumer,
    sources: &ReplaySources,
    max_messages: usize,
) -> Result<ReplayReport, ClassifiedError> {
    let mut report = ReplayReport::default();
    while report.messages < max_messages {
        let wanted = (max_messages - report.messages).min(RECEIVE_BATCH as usize) as i32;
        let received = sources
            .sqs
            .receive_message()
            .queue_url(&sources.queue_url)
            .max_number_of_messages(wanted)
            .visibility_timeout(VISIBILITY_SECS)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|error| failure("ReceiveMessage", error))?;
        let messages = received.messages();
        if messages.is_empty() {
            break;
        }
        for message in messages {
            report.messages += 1;
            let id = message.message_id().unwrap_or_default().to_owned();
            let body = message.body().unwrap_or_default();
            let records = match records_of(body, sources, &mut report).await {
                Ok(records) => records,
                Err(reason) => {
                    tracing::warn!(message = %id, %reason, "message left in the queue");
                    report.left.push(format!("{id}: {reason}"));
                    continue;
                }
            };
            report.records += records.len();
            let batch = consumer.handle(records).await;
            report.stored_events += batch.stored_events;
            report.duplicate_events += batch.duplicate_events;
            report.dead_lettered_again += batch.dead_lettered;
            if let Some(failed) = batch.failures.first() {
                report.left.push(format!(
                    "{id}: record {} failed: {}",
                    failed.id, failed.reason
                ));
                continue;
            }
            if let Some(handle) = message.receipt_handle() {
                sources
                    .sqs
                    .delete_message()
                    .queue_url(&sources.queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .map_err(|error| failure("DeleteMessage", error))?;
                report.deleted += 1;
            }
        }
    }
    Ok(report)
}

/// The records a message stands for, or why it cannot be replayed.
async fn records_of(
    body: &str,
    sources: &ReplaySources,
    report: &mut ReplayReport,
) -> Result<Vec<StreamRecord>, String> {
    if let Ok(letter) = DeadLetter::from_json(body) {
        report.dead_letters += 1;
        let letter = match &letter.data_location {
            Some(location) => fetch_letter(&sources.s3, location).await?,
            None => letter,
        };
        let record = letter
            .record()
            .map_err(|error| format!("the letter's data is not base64: {error}"))?;
        return Ok(vec![record]);
    }
    if let Ok(failure) = serde_json::from_str::<FailureRecord>(body) {
        report.failure_records += 1;
        return read_range(&sources.kinesis, &failure.kinesis_batch_info).await;
    }
    Err("neither a dead letter nor a failure record of the event source mapping".into())
}

/// The whole letter kept at `s3://bucket/key`.
async fn fetch_letter(s3: &aws_sdk_s3::Client, location: &str) -> Result<DeadLetter, String> {
    let (bucket, key) = location
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(|| format!("{location} is not an s3:// location"))?;
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|error| failure("GetObject", error).to_string())?;
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|error| format!("cannot read {location}: {error}"))?
        .into_bytes();
    let json = std::str::from_utf8(&bytes).map_err(|_| format!("{location} is not UTF-8"))?;
    DeadLetter::from_json(json).map_err(|error| format!("{location} is not a dead letter: {error}"))
}

/// The records of `batch` read back from the stream, first to last sequence number.
async fn read_range(
    kinesis: &aws_sdk_kinesis::Client,
    batch: &KinesisBatchInfo,
) -> Result<Vec<StreamRecord>, String> {
    // The stream's name, from `arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`.
    let stream_name = batch
        .stream_arn
        .rsplit_once("stream/")
        .map(|(_, name)| name)
        .ok_or_else(|| format!("{} is not a Kinesis stream ARN", batch.stream_arn))?;
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name(stream_name)
        .shard_id(&batch.shard_id)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(&batch.start_sequence_number)
        .send()
        .await
        .map_err(|error| failure("GetShardIterator", error).to_string())?;
    let mut iterator = iterator.shard_iterator().map(str::to_owned);
    let mut records = Vec::new();
    for _ in 0..MAX_READS {
        let Some(current) = iterator else { break };
        let output = kinesis
            .get_records()
            .shard_iterator(current)
            .send()
            .await
            .map_err(|error| failure("GetRecords", error).to_string())?;
        iterator = output.next_shard_iterator().map(str::to_owned);
        for record in output.records() {
            let sequence = record.sequence_number();
            if sequence_after(sequence, &batch.end_sequence_number) {
                return Ok(records);
            }
            records.push(StreamRecord {
                id: sequence.to_owned(),
                partition_key: record.partition_key().unwrap_or_default().to_owned(),
                data: record.data().as_ref().to_vec(),
            });
        }
        if output.records().is_empty() && output.millis_behind_latest() == Some(0) {
            break;
        }
    }
    match records.first() {
        Some(first) if first.id == batch.start_sequence_number => Ok(records),
        _ => Err(format!(
            "the stream no longer holds records {}..{} of {}",
            batch.start_sequence_number, batch.end_sequence_number, batch.shard_id
        )),
    }
}

/// Whether sequence number `a` comes after `b` (decimal strings of any length).
fn sequence_after(a: &str, b: &str) -> bool {
    (a.len(), a) > (b.len(), b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_by_length_then_digits() {
        assert!(sequence_after("100", "99"));
        assert!(sequence_after(
            "49590338271490256608559692538361571095921575989136588802",
            "49590338271490256608559692538361571095921575989136588801"
        ));
        assert!(!sequence_after("99", "100"));
        assert!(!sequence_after("5", "5"));
    }

    #[test]
    fn a_failure_record_of_the_event_source_mapping_is_read() {
        let body = r#"{"requestContext":{"requestId":"x","functionArn":"arn:aws:lambda:us-east-1:1:function:f","condition":"RetryAttemptsExhausted","approximateInvokeCount":6},"responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},"version":"1.0","timestamp":"2026-11-28T08:00:00.000Z","KinesisBatchInfo":{"shardId":"shardId-000000000000","startSequenceNumber":"1","endSequenceNumber":"2","approximateArrivalOfFirstRecord":"2026-11-28T07:59:00Z","approximateArrivalOfLastRecord":"2026-11-28T07:59:01Z","batchSize":2,"streamArn":"arn:aws:kinesis:us-east-1:1:stream/events"}}"#;
        let failure: FailureRecord = serde_json::from_str(body).unwrap();
        assert_eq!(failure.kinesis_batch_info.shard_id, "shardId-000000000000");
        assert_eq!(failure.kinesis_batch_info.end_sequence_number, "2");
        assert!(DeadLetter::from_json(body).is_err());
    }
}
