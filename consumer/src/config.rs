//! The consumer's configuration: one typed struct filled from the environment (as Lambda
//! passes it) and flags, validated and printed with secrets redacted at start.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Everything the consumer binary is configured with.
#[derive(Clone, Parser)]
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

    /// DynamoDB table accepted events are written to (key `id` S).
    #[arg(long, env = "DYNAMODB_TABLE")]
    pub dynamodb_table: String,

    /// Redis holding the core data (`redis://` or `rediss://`); without it no core
    /// data is updated and plugins' lookups find nothing.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Redis AUTH token, given directly (e.g. resolved by CloudFormation from Secrets Manager).
    #[arg(long, env = "REDIS_AUTH_TOKEN", hide_env_values = true)]
    pub redis_auth_token: Option<String>,

    /// Secrets Manager secret holding the Redis AUTH token, read once at init.
    #[arg(long, env = "REDIS_AUTH_TOKEN_SECRET_ARN")]
    pub redis_auth_token_secret_arn: Option<String>,

    /// SQS queue for dead letters (undecodable records, plugin rejections); without it
    /// dead letters are only logged.
    #[arg(long, env = "DEAD_LETTER_QUEUE_URL")]
    pub dead_letter_queue_url: Option<String>,

    /// Where precompiled plugin artifacts (`.cwasm`) are cached between cold starts.
    #[arg(long, env = "PLUGIN_CACHE_DIR", default_value = "/tmp/adtrack-plugins")]
    pub plugin_cache_dir: PathBuf,

    /// Timeout of one Redis command, in milliseconds.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 2_000)]
    pub redis_timeout_ms: u64,

    /// Log as JSON lines (CloudWatch) instead of human-readable text.
    #[arg(long, env = "LOG_JSON", default_value_t = true, action = clap::ArgAction::Set)]
    pub log_json: bool,
}

/// The configuration is unusable; says which setting and why.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {setting}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub setting: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl ConsumerConfig {
    /// Checks the settings that clap cannot: non-empty names, URL schemes, one source
    /// of the Redis token.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason: &str| {
            Err(ConfigError {
                setting,
                reason: reason.to_owned(),
            })
        };
        if self.dynamodb_table.trim().is_empty() {
            return invalid("DYNAMODB_TABLE", "must name a table");
        }
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return invalid("REDIS_URL", "must start with redis:// or rediss://");
        }
        if self.redis_auth_token.is_some() && self.redis_auth_token_secret_arn.is_some() {
            return invalid(
                "REDIS_AUTH_TOKEN_SECRET_ARN",
                "set either REDIS_AUTH_TOKEN or REDIS_AUTH_TOKEN_SECRET_ARN, not both",
            );
        }
        if let Some(url) = &self.dead_letter_queue_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return invalid("DEAD_LETTER_QUEUE_URL", "must be an SQS queue URL");
        }
        if self.redis_timeout_ms == 0 {
            return invalid("REDIS_TIMEOUT_MS", "must be positive");
        }
        Ok(())
    }

    /// Timeout of one Redis command.
    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }
}

/// Prints every setting, with the Redis token and any password in `REDIS_URL` redacted.
impl fmt::Display for ConsumerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unset = || "(unset)".to_owned();
        writeln!(f, "PIPELINE_FILE={}", self.pipeline_file.display())?;
        writeln!(f, "DYNAMODB_TABLE={}", self.dynamodb_table)?;
        let redis = self.redis_url.as_deref().map(redact_url_password);
        writeln!(f, "REDIS_URL={}", redis.unwrap_or_else(unset))?;
        let token = self
            .redis_auth_token
            .as_ref()
            .map(|_| "(redacted)".to_owned());
        writeln!(f, "REDIS_AUTH_TOKEN={}", token.unwrap_or_else(unset))?;
        let arn = self.redis_auth_token_secret_arn.clone();
        writeln!(
            f,
            "REDIS_AUTH_TOKEN_SECRET_ARN={}",
            arn.unwrap_or_else(unset)
        )?;
        let queue = self.dead_letter_queue_url.clone();
        writeln!(f, "DEAD_LETTER_QUEUE_URL={}", queue.unwrap_or_else(unset))?;
        writeln!(f, "PLUGIN_CACHE_DIR={}", self.plugin_cache_dir.display())?;
        writeln!(f, "REDIS_TIMEOUT_MS={}", self.redis_timeout_ms)?;
        write!(f, "LOG_JSON={}", self.log_json)
    }
}

/// `redis://user:secret@host` becomes `redis://user:(redacted)@host`.
fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    format!("{scheme}://{user}:(redacted)@{host}")
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
        let printed = config.to_string();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("REDIS_URL=redis://default:(redacted)@cache:6379"));
        assert!(printed.contains("PLUGIN_CACHE_DIR=/tmp/adtrack-plugins"));
    }

    #[test]
    fn validation_names_the_bad_setting() {
        let config = parse(&["--dynamodb-table", "events", "--redis-url", "http://x"]);
        assert_eq!(config.validate().unwrap_err().setting, "REDIS_URL");
        let config = parse(&["--dynamodb-table", " "]);
        assert_eq!(config.validate().unwrap_err().setting, "DYNAMODB_TABLE");
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
    }
}
