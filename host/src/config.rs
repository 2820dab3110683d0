//! The host's configuration: flags and environment variables (as Fargate passes them).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Configuration of `adtrack-host serve`. Every flag can also be set from the
/// environment variable named in its help.
#[derive(Clone, Args)]
pub struct ServeConfig {
    /// Address and port to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,
    /// The pipeline file (plugins and the host chain).
    #[arg(long, env = "PIPELINE_FILE", default_value = "pipeline.toml")]
    pub pipeline: PathBuf,
    /// Redis for core data, e.g. `redis://127.0.0.1:6379` or `rediss://host:6379`.
    /// Unset: core data stays in the process.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Redis AUTH token (ElastiCache); combined with `--redis-url`.
    #[arg(long, env = "REDIS_AUTH_TOKEN", hide_env_values = true)]
    pub redis_auth_token: Option<String>,
    /// Kinesis stream for accepted events. Unset: the embedded log under `--data-dir`.
    #[arg(long, env = "KINESIS_STREAM_NAME")]
    pub kinesis_stream_name: Option<String>,
    /// Kinesis endpoint override (emulators); AWS_ENDPOINT_URL also works.
    #[arg(long, env = "KINESIS_ENDPOINT_URL")]
    pub kinesis_endpoint_url: Option<String>,
    /// Directory for the embedded stream log and store.
    #[arg(long, env = "DATA_DIR", default_value = ".adtrack")]
    pub data_dir: PathBuf,
    /// Directory for precompiled plugin artifacts (`.cwasm`); unset: compile at start.
    #[arg(long, env = "PLUGIN_CACHE_DIR")]
    pub plugin_cache_dir: Option<PathBuf>,
    /// Bearer token for the admin API; unset: the admin API is disabled.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// When a request is answered 200: once its records are on the stream (`stream`),
    /// or once they are buffered in the host (`buffer`, flushed before shutdown ends).
    #[arg(long, env = "ACK", value_enum, default_value = "stream")]
    pub ack: Ack,
    /// Largest request body in bytes (plugin uploads: `--max-plugin-bytes`).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Largest plugin component accepted by the admin API, in bytes.
    #[arg(long, env = "MAX_PLUGIN_BYTES", default_value_t = 64 << 20)]
    pub max_plugin_bytes: usize,
    /// Time limit for one request, in milliseconds.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Time limit for one admin request, in milliseconds: an upload answers once the
    /// component is compiled, which takes tens of seconds for JavaScript or Python ones.
    #[arg(long, env = "ADMIN_TIMEOUT_MS", default_value_t = 300_000)]
    pub admin_timeout_ms: u64,
    /// Records the stream buffer holds before requests get 503 + Retry-After.
    #[arg(long, env = "STREAM_BUFFER_RECORDS", default_value_t = 10_000)]
    pub stream_buffer_records: usize,
    /// Most programs kept in the L1 cache.
    #[arg(long, env = "CACHE_CAPACITY", default_value_t = 100_000)]
    pub cache_capacity: u64,
    /// Seconds a program stays in L1 without a refresh.
    #[arg(long, env = "CACHE_TTL_SECS", default_value_t = 3_600)]
    pub cache_ttl_secs: u64,
    /// Most events in one `POST /events` request.
    #[arg(long, env = "MAX_BATCH_EVENTS", default_value_t = 1_000)]
    pub max_batch_events: usize,
}

/// When an accepted request is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Ack {
    /// After the stream stored the records (no loss on a crash).
    Stream,
    /// After the records are buffered in the host (lower latency; a crash loses the buffer).
    Buffer,
}

impl ServeConfig {
    /// Rejects settings that cannot work, before anything starts.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes == 0 || self.max_plugin_bytes == 0 {
            return Err("body limits must be positive".into());
        }
        if self.request_timeout_ms == 0 || self.admin_timeout_ms == 0 {
            return Err("REQUEST_TIMEOUT_MS and ADMIN_TIMEOUT_MS must be positive".into());
        }
        if self.stream_buffer_records == 0 {
            return Err("STREAM_BUFFER_RECORDS must be positive".into());
        }
        if self
            .admin_token
            .as_deref()
            .is_some_and(|token| token.len() < 16)
        {
            return Err("ADMIN_TOKEN must be at least 16 characters".into());
        }
        Ok(())
    }

    /// The request time limit.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The admin request time limit.
    pub fn admin_timeout(&self) -> Duration {
        Duration::from_millis(self.admin_timeout_ms)
    }
}

/// Printed at start-up: every setting, secrets redacted.
impl fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("ServeConfig")
            .field("listen_addr", &self.listen_addr)
            .field("pipeline", &self.pipeline)
            .field("redis_url", &self.redis_url)
            .field("redis_auth_token", &redacted(&self.redis_auth_token))
            .field("kinesis_stream_name", &self.kinesis_stream_name)
            .field("kinesis_endpoint_url", &self.kinesis_endpoint_url)
            .field("data_dir", &self.data_dir)
            .field("plugin_cache_dir", &self.plugin_cache_dir)
            .field("admin_token", &redacted(&self.admin_token))
            .field("ack", &self.ack)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_plugin_bytes", &self.max_plugin_bytes)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("admin_timeout_ms", &self.admin_timeout_ms)
            .field("stream_buffer_records", &self.stream_buffer_records)
            .field("cache_capacity", &self.cache_capacity)
            .field("cache_ttl_secs", &self.cache_ttl_secs)
            .field("max_batch_events", &self.max_batch_events)
            .finish()
    }
}
