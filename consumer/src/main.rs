//! `adtrack-consumer`: the Lambda function. Reads the configuration, builds the consumer
//! (cold start, timed) and serves Kinesis events from the Lambda Runtime API.

use std::process::ExitCode;
use std::sync::Arc;

use adtrack_consumer::aws::{ConsumerConfig, aws_consumer, lambda};
use adtrack_consumer::init;
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let config = ConsumerConfig::parse();
    init_logging(config.log_json);
    if let Err(error) = config.validate() {
        tracing::error!(%error, "refusing to start");
        return ExitCode::FAILURE;
    }
    tracing::info!(config = ?config, "starting adtrack-consumer");
    let consumer = match aws_consumer(&config).await {
        Ok((consumer, report)) => {
            init::log_report(&report);
            consumer
        }
        Err(error) => {
            tracing::error!(%error, "initialisation failed");
            return ExitCode::FAILURE;
        }
    };
    match lambda::run(Arc::new(consumer)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "the Lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_from_env("AWS_LAMBDA_LOG_LEVEL"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().with_current_span(false).init();
    } else {
        builder.without_time().init();
    }
}
