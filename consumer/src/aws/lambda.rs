//! The Lambda driver: a Kinesis event source mapping invokes the function with a
//! `KinesisEvent`; the answer is a `KinesisEventResponse` whose `batchItemFailures`
//! name the records to redeliver (the mapping needs `ReportBatchItemFailures`).

use std::sync::Arc;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::{LambdaEvent, service_fn};
use plugin_metrics::PluginMetrics;

use crate::handler::{BatchReport, Consumer, StreamRecord};

/// The records of a Kinesis event, identified by their sequence numbers.
pub fn records_of(event: KinesisEvent) -> Vec<StreamRecord> {
    event
        .records
        .into_iter()
        .map(|record| StreamRecord {
            id: record.kinesis.sequence_number,
            partition_key: record.kinesis.partition_key,
            data: record.kinesis.data.0,
        })
        .collect()
}

/// The partial-batch response for `report`.
pub fn response_for(report: &BatchReport) -> KinesisEventResponse {
    let mut response = KinesisEventResponse::default();
    response.set_failures(report.failed_ids().map(str::to_owned));
    response
}

/// Handles one invocation: the plain function the runtime calls, testable without it.
pub async fn handle_kinesis_event(
    consumer: &Consumer,
    event: KinesisEvent,
) -> KinesisEventResponse {
    let report = consumer.handle(records_of(event)).await;
    response_for(&report)
}

/// Serves invocations from the Lambda Runtime API until the runtime stops, writing the
/// plugin metrics (if any) at the end of each invocation, before Lambda freezes the process.
pub async fn run(
    consumer: Arc<Consumer>,
    plugin_metrics: Option<PluginMetrics>,
) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<KinesisEvent>| {
        let consumer = consumer.clone();
        let plugin_metrics = plugin_metrics.clone();
        async move {
            let response = handle_kinesis_event(&consumer, event.payload).await;
            if let Some(plugin_metrics) = plugin_metrics {
                plugin_metrics.flush();
            }
            Ok::<_, lambda_runtime::Error>(response)
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::RecordFailure;

    #[test]
    fn reads_records_from_the_kinesis_event_json() {
        let json = r#"{"Records":[{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"msg-1",
            "sequenceNumber":"4956","data":"SGVsbG8=","approximateArrivalTimestamp":1480641523.477},
            "eventSource":"aws:kinesis","eventID":"shardId-000000000000:4956"}]}"#;
        let event: KinesisEvent = serde_json::from_str(json).unwrap();
        let records = records_of(event);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].id, "4956");
        assert_eq!(records[0].partition_key, "msg-1");
        assert_eq!(records[0].data, b"Hello");
    }

    #[test]
    fn failures_become_batch_item_failures_by_sequence_number() {
        let report = BatchReport {
            failures: vec![
                RecordFailure {
                    id: "1".into(),
                    reason: "x".into(),
                },
                RecordFailure {
                    id: "3".into(),
                    reason: "y".into(),
                },
            ],
            ..BatchReport::default()
        };
        let json = serde_json::to_value(response_for(&report)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "1"}, {"itemIdentifier": "3"}]})
        );
        let empty = serde_json::to_value(response_for(&BatchReport::default())).unwrap();
        assert_eq!(empty, serde_json::json!({"batchItemFailures": []}));
    }
}
