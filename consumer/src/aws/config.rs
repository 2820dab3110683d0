//! The Lambda function's configuration: argument groups filled from the environment
//! (as Lambda passes it) and flags, validated and printed with secrets redacted at start.

use std::path::PathBuf;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use clap::Parser;
use core_data::RedisConfig;
use settings::{InvalidSetting, ensure};

/// Everything the consumer binary is configured with.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "adtrack-consumer",
    about = "Kinesis consumer (AWS Lambda): the consumer plugin chain, then DynamoDB and Redis"
)]
pub struct ConsumerConfig {
    /// The pipeline file; the consumer runs its `consumer` chain.
    #[arg(
        long = "pipeline",
        env = "PIPELINE_FILE",
        default_value = "pipeline.toml"
    )]
    pub pipeline_file: PathBuf,

    /// Where precompiled plugin artifacts (`.cwasm`) are cached between cold starts.
    #[arg(long, env = "PLUGIN_CACHE_DIR", default_value = "/tmp/adtrack-plugins")]
    pub plugin_cache_dir: PathBuf,

    /// DynamoDB table accepted events are written to (key `id` S).
    #[arg(long, env = "DYNAMODB_TABLE")]
    pub dynamodb_table: String,

    /// Programs whose DynamoDB transactions are in flight at once while a batch is
    /// written (the transactions of one program run in order).
    #[arg(long, env = "DYNAMODB_WRITE_CONCURRENCY", default_value_t = crate::aws::dynamodb::DEFAULT_WRITE_CONCURRENCY)]
    pub dynamodb_write_concurrency: usize,

    /// Redis holding the core data; without `REDIS_URL` no core data is updated and
    /// plugins' lookups find nothing.
    #[command(flatten)]
    pub redis: RedisConfig,

    /// Secrets Manager secret holding the Redis AUTH token, read once at init.
    #[arg(long, env = "REDIS_AUTH_TOKEN_SECRET_ARN")]
    pub redis_auth_token_secret_arn: Option<String>,

    /// SQS queue for dead letters (undecodable records, plugin rejections); without it
    /// dead letters are only logged.
    #[arg(long, env = "DEAD_LETTER_QUEUE_URL")]
    pub dead_letter_queue_url: Option<String>,

    /// Bucket for dead letters too large for the queue (under `dead-letters/`);
    /// defaults to `PLUGIN_BUCKET`. Without either, such letters are refused.
    #[arg(long, env = "DEAD_LETTER_BUCKET")]
    pub dead_letter_bucket: Option<String>,

    /// Failed attempts at a record before it becomes a dead letter with its data: keep
    /// it below the event source mapping's `MaximumRetryAttempts`, or Lambda skips the
    /// record before it is dead-lettered.
    #[arg(long, env = "MAX_RECORD_ATTEMPTS", default_value_t = crate::handler::DEFAULT_MAX_ATTEMPTS)]
    pub max_record_attempts: u32,

    /// The plugin registry (the stack's plugin bucket); without `PLUGIN_BUCKET` the
    /// consumer runs the pipeline file's chain.
    #[command(flatten)]
    pub registry: releases::RegistryConfig,

    /// The plugin metrics for CloudWatch.
    #[command(flatten)]
    pub metrics: plugin_metrics::MetricsConfig,

    /// Time limit of one AWS call (DynamoDB, SQS, Secrets Manager) with its retries, in
    /// milliseconds.
    #[arg(long, env = "AWS_OPERATION_TIMEOUT_MS", default_value_t = 10_000)]
    pub aws_operation_timeout_ms: u64,

    /// Time limit of one attempt of an AWS call, connecting included, in milliseconds.
    #[arg(long, env = "AWS_ATTEMPT_TIMEOUT_MS", default_value_t = 3_000)]
    pub aws_attempt_timeout_ms: u64,

    /// Log as JSON lines (CloudWatch) instead of human-readable text.
    #[arg(long, env = "LOG_JSON", default_value_t = true, action = clap::ArgAction::Set)]
    pub log_json: bool,

    /// Without a command: serve the Lambda Runtime API.
    #[command(subcommand)]
    pub command: Option<ConsumerCommand>,
}

/// What the binary does besides serving Lambda.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum ConsumerCommand {
    /// Re-drive the dead-letter queue (dead letters and the event source mapping's
    /// failure records) through the current release, once the cause is fixed; prints a
    /// JSON report.
    Replay {
        /// Messages to replay at most.
        #[arg(long, default_value_t = 1000)]
        max_messages: usize,
    },
}

/// `adtrack-consumer precompile` (hidden; run by `cargo xtask package`): the plugins of a
/// pipeline file compiled into `.cwasm` artifacts with this binary's engine configuration.
#[derive(Clone, Debug, Parser)]
#[command(name = "adtrack-consumer precompile")]
pub struct PrecompileArgs {
    /// The pipeline file whose plugins are compiled.
    #[arg(
        long = "pipeline",
        env = "PIPELINE_FILE",
        default_value = "pipeline.toml"
    )]
    pub pipeline_file: PathBuf,

    /// Where the artifacts go; by default `plugin-artifacts/` beside the pipeline file,
    /// where the function looks for them first.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl PrecompileArgs {
    /// The name of the subcommand, as the first argument.
    pub const COMMAND: &str = "precompile";
}

impl ConsumerConfig {
    /// The bucket large dead letters go to: `DEAD_LETTER_BUCKET`, else `PLUGIN_BUCKET`.
    pub fn large_letter_bucket(&self) -> Option<&str> {
        self.dead_letter_bucket
            .as_deref()
            .or(self.registry.plugin_bucket.as_deref())
    }

    /// Checks the settings that clap cannot: non-empty names, URL schemes, one source
    /// of the Redis token.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        ensure(
            !self.dynamodb_table.trim().is_empty(),
            "DYNAMODB_TABLE",
            "must name a table",
        )?;
        ensure(
            (1..=64).contains(&self.dynamodb_write_concurrency),
            "DYNAMODB_WRITE_CONCURRENCY",
            "must be 1 to 64",
        )?;
        self.redis.validate()?;
        self.registry.validate()?;
        ensure(
            self.max_record_attempts > 0,
            "MAX_RECORD_ATTEMPTS",
            "must be at least 1",
        )?;
        ensure(
            self.redis.redis_auth_token.is_none() || self.redis_auth_token_secret_arn.is_none(),
            "REDIS_AUTH_TOKEN_SECRET_ARN",
            "set either REDIS_AUTH_TOKEN or REDIS_AUTH_TOKEN_SECRET_ARN, not both",
        )?;
        ensure(
            self.aws_attempt_timeout_ms > 0,
            "AWS_ATTEMPT_TIMEOUT_MS",
            "must be positive",
        )?;
        ensure(
            self.aws_operation_timeout_ms >= self.aws_attempt_timeout_ms,
            "AWS_OPERATION_TIMEOUT_MS",
            "must be at least AWS_ATTEMPT_TIMEOUT_MS",
        )?;
        if let Some(url) = &self.dead_letter_queue_url {
            ensure(
                url.starts_with("https://") || url.starts_with("http://"),
                "DEAD_LETTER_QUEUE_URL",
                "must be an SQS queue URL",
            )?;
        }
        Ok(())
    }

    /// The time limits of every AWS call the consumer makes.
    pub fn aws_timeouts(&self) -> TimeoutConfig {
        let attempt = Duration::from_millis(self.aws_attempt_timeout_ms);
        TimeoutConfig::builder()
            .connect_timeout(attempt)
            .operation_attempt_timeout(attempt)
            .operation_timeout(Duration::from_millis(self.aws_operation_timeout_ms))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> ConsumerConfig {
        let mut argv = vec!["adtrack-consumer"];
        argv.extend_from_slice(args);
        ConsumerConfig::try_parse_from(argv).unwrap()
    }

    #[test]
    fn printing_redacts_the_token_and_url_password() {
        let config = parse(&[
            "--dynamodb-table",
            "events",
            "--redis-url",
            "redis://default:hunter2@cache:6379",
            "--redis-auth-token",
            "s3cret",
        ]);
        config.validate().unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(
            printed.contains("redis://default:(redacted)@cache:6379"),
            "{printed}"
        );
        assert!(printed.contains("/tmp/adtrack-plugins"), "{printed}");
    }

    #[test]
    fn validation_names_the_bad_setting() {
        let config = parse(&["--dynamodb-table", "events", "--redis-url", "http://x"]);
        assert_eq!(config.validate().unwrap_err().setting, "REDIS_URL");
        let config = parse(&["--dynamodb-table", " "]);
        assert_eq!(config.validate().unwrap_err().setting, "DYNAMODB_TABLE");
        let config = parse(&["--dynamodb-table", "t", "--dynamodb-write-concurrency", "0"]);
        assert_eq!(
            config.validate().unwrap_err().setting,
            "DYNAMODB_WRITE_CONCURRENCY"
        );
        let config = parse(&[
            "--dynamodb-table",
            "events",
            "--redis-auth-token",
            "a",
            "--redis-auth-token-secret-arn",
            "arn:aws:secretsmanager:x",
        ]);
        assert_eq!(
            config.validate().unwrap_err().setting,
            "REDIS_AUTH_TOKEN_SECRET_ARN"
        );
        let config = parse(&[
            "--dynamodb-table",
            "events",
            "--aws-operation-timeout-ms",
            "100",
        ]);
        assert_eq!(
            config.validate().unwrap_err().setting,
            "AWS_OPERATION_TIMEOUT_MS"
        );
    }
}
