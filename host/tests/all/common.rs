//! The shared test support, with the host harness bound to this crate's binary.

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::StreamStatus;
pub use test_support::{
    ADMIN_TOKEN, Host, free_port, plugin_path, repo_root, service_env, take_perf_map_functions,
    write_pipeline,
};

/// Starts this crate's `adtrack-host serve` with the repository pipeline and `env`.
pub async fn start_host(env: &[(&str, &str)]) -> Host {
    Host::start(env!("CARGO_BIN_EXE_adtrack-host"), env).await
}

/// A Kinesis client for kinesalite (`KINESIS_ENDPOINT_URL`).
pub async fn kinesis_client() -> Client {
    let endpoint = service_env("KINESIS_ENDPOINT_URL");
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .load()
        .await;
    Client::new(&shared)
}

/// Creates stream `name` with `shards` shards and waits until it is active.
pub async fn create_stream(client: &Client, name: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .expect("CreateStream on kinesalite");
    for _ in 0..100 {
        let summary = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .expect("DescribeStreamSummary");
        if summary
            .stream_description_summary()
            .map(|s| s.stream_status())
            == Some(&StreamStatus::Active)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("stream {name} never became active");
}
