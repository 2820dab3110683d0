//! `adtrack-host serve`'s configuration: one argument group per stage, each defined
//! beside the stage it configures, filled from flags and the environment (as Fargate
//! passes it), validated before anything starts and logged with secrets redacted.

use std::path::PathBuf;

use clap::Args;
use plugin_metrics::MetricsConfig;
use releases::RegistryConfig;
use settings::InvalidSetting;

use crate::cache::CacheConfig;
use crate::http::HttpConfig;
use crate::stream::StreamConfig;

/// Configuration of `adtrack-host serve`. Every flag can also be set from the
/// environment variable named in its help.
#[derive(Clone, Debug, Args)]
pub struct ServeConfig {
    /// Directory for the embedded stream log, event store, dead letters and the local
    /// plugin registry.
    #[arg(long, env = "DATA_DIR", default_value = ".adtrack")]
    pub data_dir: PathBuf,
    /// The HTTP stage.
    #[command(flatten)]
    pub http: HttpConfig,
    /// The plugins.
    #[command(flatten)]
    pub plugins: PluginConfig,
    /// The cache stage (core data).
    #[command(flatten)]
    pub cache: CacheConfig,
    /// The stream stage.
    #[command(flatten)]
    pub stream: StreamConfig,
    /// The plugin metrics for CloudWatch.
    #[command(flatten)]
    pub metrics: MetricsConfig,
}

/// Where the plugins come from: the registry's current release (seeded from the
/// pipeline file when the registry is empty).
#[derive(Clone, Debug, Args)]
pub struct PluginConfig {
    /// The pipeline file: the first release of an empty registry.
    #[arg(long, env = "PIPELINE_FILE", default_value = "pipeline.toml")]
    pub pipeline: PathBuf,
    /// Directory for precompiled plugin artifacts (`.cwasm`); unset: compile at start.
    #[arg(long, env = "PLUGIN_CACHE_DIR")]
    pub plugin_cache_dir: Option<PathBuf>,
    /// The plugin registry.
    #[command(flatten)]
    pub registry: RegistryConfig,
}

impl ServeConfig {
    /// Rejects settings that cannot work, before anything starts.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.http.validate()?;
        self.plugins.registry.validate()?;
        self.cache.validate()?;
        self.stream.validate()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        config: ServeConfig,
    }

    fn parse(args: &[&str]) -> ServeConfig {
        let mut argv = vec!["serve"];
        argv.extend_from_slice(args);
        Serve::try_parse_from(argv).unwrap().config
    }

    #[test]
    fn printing_redacts_the_admin_token_the_redis_token_and_the_url_password() {
        let config = parse(&[
            "--redis-url",
            "rediss://default:hunter2@cache:6379",
            "--redis-auth-token",
            "s3cret-token",
            "--admin-token",
            "admin-token-0123456789",
        ]);
        config.validate().unwrap();
        let printed = format!("{config:?}");
        for secret in ["hunter2", "s3cret-token", "admin-token-0123456789"] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
        assert!(
            printed.contains("rediss://default:(redacted)@cache:6379"),
            "{printed}"
        );
    }

    #[test]
    fn validation_names_the_bad_setting() {
        let setting = |args: &[&str]| parse(args).validate().unwrap_err().setting;
        assert_eq!(setting(&["--redis-url", "http://cache"]), "REDIS_URL");
        assert_eq!(setting(&["--admin-token", "short"]), "ADMIN_TOKEN");
        assert_eq!(
            setting(&["--stream-buffer-records", "0"]),
            "STREAM_BUFFER_RECORDS"
        );
        assert_eq!(setting(&["--max-body-bytes", "0"]), "MAX_BODY_BYTES");
    }
}
