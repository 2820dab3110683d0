//! `adtrack-host serve`'s configuration: one argument group per stage, each defined
//! beside the stage it configures, filled from flags and the environment (as Fargate
//! passes it), validated before anything starts and logged with secrets redacted.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use plugin_engine::InstanceReuse;
use plugin_metrics::MetricsConfig;
use releases::RegistryConfig;
use settings::{InvalidSetting, ensure};

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
    /// Seconds a shutdown may spend finishing requests and delivering buffered records,
    /// counted from SIGTERM; well under the ECS stop timeout (60 s), after which the
    /// task is killed. What is left then is logged.
    #[arg(long, env = "SHUTDOWN_DRAIN_SECS", default_value_t = 25)]
    pub shutdown_drain_secs: u64,
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
    /// How long a plugin call waits for a free instance when all are in use, in
    /// milliseconds; then the request is answered 503 + `Retry-After`.
    #[arg(long, env = "INSTANCE_WAIT_MS", default_value_t = 200)]
    pub instance_wait_ms: u64,
    /// Longest a plugin compilation may take, in milliseconds (compilations run one at a
    /// time); an upload over it is answered 503 + `Retry-After`.
    #[arg(long, env = "COMPILE_TIMEOUT_MS", default_value_t = 120_000)]
    pub compile_timeout_ms: u64,
    /// Idle instances kept warm per plugin between requests; 0 starts a fresh instance
    /// for every request (slower, and no state can outlive a request).
    #[arg(long, env = "PLUGIN_WARM_INSTANCES", default_value_t = 16)]
    pub warm_instances: usize,
    /// Calls a plugin instance serves before it is replaced by a fresh one.
    #[arg(long, env = "PLUGIN_INSTANCE_MAX_CALLS", default_value_t = 10_000)]
    pub instance_max_calls: u64,
    /// Map plugin code for `perf` in `/tmp/perf-<pid>.map`, to profile plugins in
    /// place (`true`/`false`).
    #[arg(long, env = "PLUGIN_PERF_MAP")]
    pub perf_map: bool,
}

impl ServeConfig {
    /// How long a shutdown may take from SIGTERM.
    pub fn shutdown_drain(&self) -> Duration {
        Duration::from_secs(self.shutdown_drain_secs)
    }
}

impl PluginConfig {
    /// Checks the registry settings, the instance call limit and that the time limits
    /// are positive.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.registry.validate()?;
        ensure(
            self.instance_max_calls > 0,
            "PLUGIN_INSTANCE_MAX_CALLS",
            "must be positive",
        )?;
        ensure(
            self.compile_timeout_ms > 0,
            "COMPILE_TIMEOUT_MS",
            "must be positive",
        )
    }

    /// How long a call waits for a free plugin instance.
    pub fn instance_wait(&self) -> Duration {
        Duration::from_millis(self.instance_wait_ms)
    }

    /// The time limit of one compilation.
    pub fn compile_timeout(&self) -> Duration {
        Duration::from_millis(self.compile_timeout_ms)
    }

    /// How plugin instances are kept warm and reused.
    pub fn instance_reuse(&self) -> InstanceReuse {
        let defaults = InstanceReuse::default();
        InstanceReuse {
            idle_per_plugin: self.warm_instances,
            max_idle: if self.warm_instances == 0 {
                0
            } else {
                defaults.max_idle
            },
            max_calls: self.instance_max_calls,
            ..defaults
        }
    }
}

impl ServeConfig {
    /// Rejects settings that cannot work, before anything starts.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        ensure(
            self.shutdown_drain_secs > 0,
            "SHUTDOWN_DRAIN_SECS",
            "must be positive",
        )?;
        self.http.validate()?;
        self.plugins.validate()?;
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
        assert_eq!(setting(&["--stream-linger-ms", "1001"]), "STREAM_LINGER_MS");
    }

    #[test]
    fn batches_linger_only_when_no_request_waits_for_them() {
        let linger = |args: &[&str]| parse(args).stream.linger();
        assert_eq!(linger(&[]), Duration::ZERO, "ACK=stream by default");
        assert_eq!(
            linger(&["--ack", "buffer"]),
            Duration::from_millis(5),
            "the documented default with ACK=buffer"
        );
        assert_eq!(
            linger(&["--ack", "buffer", "--stream-linger-ms", "0"]),
            Duration::ZERO
        );
        assert_eq!(
            linger(&["--stream-linger-ms", "20"]),
            Duration::from_millis(20)
        );
    }

    #[test]
    fn plugin_code_is_mapped_for_perf_only_when_asked() {
        assert!(!parse(&[]).plugins.perf_map);
        assert!(parse(&["--perf-map"]).plugins.perf_map);
    }
}
