//! The consumer's AWS calls give up on an endpoint that accepts connections and never
//! answers, instead of holding the Lambda invocation until it is killed.

use std::time::Duration;

use adtrack_consumer::aws::{ConsumerConfig, sdk_config};
use clap::Parser;
use test_support::silent_endpoint;

#[tokio::test]
async fn a_dynamodb_call_to_a_silent_endpoint_fails_within_its_time_limit() {
    let config = ConsumerConfig::try_parse_from([
        "adtrack-consumer",
        "--dynamodb-table",
        "events",
        "--aws-operation-timeout-ms",
        "1500",
        "--aws-attempt-timeout-ms",
        "500",
    ])
    .expect("configuration");
    config.validate().expect("valid configuration");
    let shared = sdk_config(&config).await;
    let dynamodb = aws_sdk_dynamodb::config::Builder::from(&shared)
        .endpoint_url(silent_endpoint().await)
        .build();
    let call = aws_sdk_dynamodb::Client::from_conf(dynamodb)
        .describe_table()
        .table_name("events")
        .send();
    let result = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the call gives up on its own instead of hanging");
    let error = result.expect_err("nothing answers");
    assert!(
        matches!(error, aws_sdk_dynamodb::error::SdkError::TimeoutError(_)),
        "{error:?}"
    );
}
