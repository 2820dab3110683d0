//! The Lambda function's cold start: connect the AWS backends named by the
//! configuration, then load the consumer chain (see [`crate::init`]).

use std::sync::Arc;
use std::time::Instant;

use core_data::{CoreDataUpdates, NoCoreDataUpdates, RedisCoreData};
use plugin_engine::{CoreDataLookup, NoCoreData};
use retry_policy::aws::failure;
use settings::Secret;

use super::sqs::LetterOverflow;
use super::{ConsumerConfig, DynamoDbAttempts, DynamoDbStore, SqsDeadLetters};
use crate::dead_letter::{DeadLetterSink, LoggedDeadLetters};
use crate::handler::{ChainSource, Consumer};
use crate::init::{InitError, InitReport, load_chain, registry_chains};

/// Builds the consumer the Lambda function runs: DynamoDB, SQS dead letters (or the
/// log), Redis core data (or none), and the consumer chain.
pub async fn aws_consumer(config: &ConsumerConfig) -> Result<(Consumer, InitReport), InitError> {
    let started = Instant::now();
    let aws = sdk_config(config).await;
    let redis = match &config.redis.redis_url {
        Some(url) => {
            let token = redis_token(config, &aws).await?;
            let backend = |source: core_data::CoreDataError| InitError::Backend {
                backend: "Redis",
                source: Box::new(source),
            };
            let token = token.as_ref().or(config.redis.redis_auth_token.as_ref());
            let redis = RedisCoreData::connect(url, token, config.redis.timeout())
                .await
                .map_err(backend)?;
            Some(redis)
        }
        None => {
            tracing::warn!("REDIS_URL is not set: core data is neither read nor updated");
            None
        }
    };
    let dead_letters: Arc<dyn DeadLetterSink> = match &config.dead_letter_queue_url {
        Some(url) => Arc::new(SqsDeadLetters::new(
            aws_sdk_sqs::Client::new(&aws),
            url,
            letter_overflow(config, &aws),
        )),
        None => {
            tracing::warn!("DEAD_LETTER_QUEUE_URL is not set: dead letters are only logged");
            Arc::new(LoggedDeadLetters)
        }
    };
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let store = Arc::new(
        DynamoDbStore::new(dynamodb.clone(), &config.dynamodb_table)
            .with_write_concurrency(config.dynamodb_write_concurrency),
    );
    let attempts = Arc::new(DynamoDbAttempts::new(dynamodb, &config.dynamodb_table));
    let backends = started.elapsed();
    let (lookup, updates): (Arc<dyn CoreDataLookup>, Arc<dyn CoreDataUpdates>) = match redis {
        Some(redis) => (Arc::new(redis.clone()), Arc::new(redis)),
        None => (Arc::new(NoCoreData), Arc::new(NoCoreDataUpdates)),
    };
    let cache_dir = Some(config.plugin_cache_dir.clone());
    let (chains, mut report): (Arc<dyn ChainSource>, InitReport) =
        if config.registry.plugin_bucket.is_some() {
            let registry = config.registry.open(&config.plugin_cache_dir).await?;
            let (chains, report) =
                registry_chains(registry, &config.pipeline_file, cache_dir, lookup).await?;
            (Arc::new(chains), report)
        } else {
            tracing::warn!("PLUGIN_BUCKET is not set: the consumer runs the pipeline file's chain");
            let (chain, report) = load_chain(&config.pipeline_file, cache_dir, lookup).await?;
            (Arc::new(chain), report)
        };
    report.backends = backends;
    report.total = started.elapsed();
    let consumer = Consumer::new(chains, store, dead_letters, updates)
        .with_attempts(attempts, config.max_record_attempts);
    Ok((consumer, report))
}

/// Where letters too large for SQS go: `dead-letters/` in the configured bucket.
fn letter_overflow(config: &ConsumerConfig, aws: &aws_config::SdkConfig) -> Option<LetterOverflow> {
    let bucket = config.large_letter_bucket()?;
    let mut s3 = aws_sdk_s3::config::Builder::from(aws);
    if let Some(endpoint) = &config.registry.s3_endpoint_url {
        s3 = s3.endpoint_url(endpoint).force_path_style(true);
    }
    Some(LetterOverflow {
        client: aws_sdk_s3::Client::from_conf(s3.build()),
        bucket: bucket.to_owned(),
        prefix: "dead-letters/".to_owned(),
    })
}

/// The AWS SDK settings every client of the consumer is built from: the environment's
/// region, credentials and endpoints, with the configured time limits.
pub async fn sdk_config(config: &ConsumerConfig) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(config.aws_timeouts())
        .load()
        .await
}

/// The Redis AUTH token read from Secrets Manager once, when the configuration names a
/// secret (a token given directly is used as it is).
async fn redis_token(
    config: &ConsumerConfig,
    aws: &aws_config::SdkConfig,
) -> Result<Option<Secret>, InitError> {
    let Some(arn) = &config.redis_auth_token_secret_arn else {
        return Ok(None);
    };
    let secrets = |source: Box<dyn std::error::Error + Send + Sync>| InitError::Backend {
        backend: "Secrets Manager",
        source,
    };
    let secret = aws_sdk_secretsmanager::Client::new(aws)
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|error| secrets(Box::new(failure(&format!("GetSecretValue {arn}"), error))))?;
    let token = secret
        .secret_string()
        .ok_or_else(|| secrets(format!("{arn} has no string value").into()))?;
    Ok(Some(Secret::from(token.trim())))
}
