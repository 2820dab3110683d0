//! `adtrack-consumer`: the Lambda function. Reads the configuration, builds the consumer
//! (cold start, timed) and serves Kinesis events from the Lambda Runtime API.

use std::process::ExitCode;
use std::sync::Arc;

use adtrack_consumer::Consumer;
use adtrack_consumer::aws::config::{ConsumerCommand, PrecompileArgs};
use adtrack_consumer::aws::replay::{ReplaySources, replay as replay_queue};
use adtrack_consumer::aws::{ConsumerConfig, aws_consumer, deployment, lambda, sdk_config};
use adtrack_consumer::init;
use adtrack_consumer::precompile::precompile;
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    // Before parsing: the description needs none of the required settings.
    if std::env::args().nth(1).as_deref() == Some(deployment::FLAG) {
        println!("{}", deployment::describe());
        return ExitCode::SUCCESS;
    }
    if std::env::args().nth(1).as_deref() == Some(PrecompileArgs::COMMAND) {
        let args = PrecompileArgs::parse_from(std::env::args().skip(1));
        init_logging(false);
        return precompile_plugins(&args);
    }
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
    if let Some(ConsumerCommand::Replay { max_messages }) = &config.command {
        return replay(&config, &consumer, *max_messages).await;
    }
    let plugin_metrics = config.metrics.recorder("consumer");
    if let Some(recorder) = &plugin_metrics
        && let Err(error) = metrics::set_global_recorder(recorder.clone())
    {
        tracing::error!(%error, "cannot install the plugin metrics recorder");
        return ExitCode::FAILURE;
    }
    match lambda::run(Arc::new(consumer), plugin_metrics).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "the Lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}

/// `adtrack-consumer replay`: the dead-letter queue through the current release.
async fn replay(config: &ConsumerConfig, consumer: &Consumer, max_messages: usize) -> ExitCode {
    let Some(queue_url) = &config.dead_letter_queue_url else {
        tracing::error!("replay needs DEAD_LETTER_QUEUE_URL");
        return ExitCode::FAILURE;
    };
    let aws = sdk_config(config).await;
    let mut s3 = aws_sdk_s3::config::Builder::from(&aws);
    if let Some(endpoint) = &config.registry.s3_endpoint_url {
        s3 = s3.endpoint_url(endpoint).force_path_style(true);
    }
    let sources = ReplaySources {
        sqs: aws_sdk_sqs::Client::new(&aws),
        queue_url: queue_url.clone(),
        s3: aws_sdk_s3::Client::from_conf(s3.build()),
        kinesis: aws_sdk_kinesis::Client::new(&aws),
    };
    match replay_queue(consumer, &sources, max_messages).await {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            if report.left.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            tracing::error!(%error, "replay failed");
            ExitCode::FAILURE
        }
    }
}

/// `adtrack-consumer precompile`: one line per artifact written.
fn precompile_plugins(args: &PrecompileArgs) -> ExitCode {
    match precompile(&args.pipeline_file, args.out.clone()) {
        Ok(done) => {
            for plugin in done {
                let (name, version) = (plugin.name, plugin.version.short());
                println!("{name} {version} {}", plugin.artifact.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "cannot precompile the plugins");
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
