//! Settings of the HTTP stage: the listener, limits, timeouts and the admin token.

use std::net::SocketAddr;
use std::time::Duration;

use settings::{InvalidSetting, Secret, ensure};

/// Shortest admin token accepted: a guessable token is worse than none.
const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// How the host listens and what it accepts.
#[derive(Clone, Debug, clap::Args)]
pub struct HttpConfig {
    /// Address and port to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,
    /// Bearer token for the admin API; unset: the admin API is disabled.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    /// Largest request body in bytes (plugin uploads: `--max-plugin-bytes`).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Largest plugin component accepted by the admin API, in bytes.
    #[arg(long, env = "MAX_PLUGIN_BYTES", default_value_t = 64 << 20)]
    pub max_plugin_bytes: usize,
    /// Most events in one `POST /events` request.
    #[arg(long, env = "MAX_BATCH_EVENTS", default_value_t = 1_000)]
    pub max_batch_events: usize,
    /// Most `GET /event` and `POST /events` requests served at once; more are answered
    /// 503 + `Retry-After` at once. The default matches the plugin instance pool.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 128)]
    pub max_concurrent_requests: usize,
    /// Time limit for one request, in milliseconds.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Time limit for one admin request, in milliseconds: an upload answers once the
    /// component is compiled, which takes tens of seconds for JavaScript or Python ones.
    #[arg(long, env = "ADMIN_TIMEOUT_MS", default_value_t = 300_000)]
    pub admin_timeout_ms: u64,
}

impl HttpConfig {
    /// Rejects limits and timeouts that cannot work and a guessable admin token.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        ensure(
            self.max_body_bytes > 0,
            "MAX_BODY_BYTES",
            "must be positive",
        )?;
        ensure(
            self.max_plugin_bytes > 0,
            "MAX_PLUGIN_BYTES",
            "must be positive",
        )?;
        ensure(
            self.max_batch_events > 0,
            "MAX_BATCH_EVENTS",
            "must be positive",
        )?;
        ensure(
            self.max_concurrent_requests > 0,
            "MAX_CONCURRENT_REQUESTS",
            "must be positive",
        )?;
        ensure(
            self.request_timeout_ms > 0,
            "REQUEST_TIMEOUT_MS",
            "must be positive",
        )?;
        ensure(
            self.admin_timeout_ms > 0,
            "ADMIN_TIMEOUT_MS",
            "must be positive",
        )?;
        let token_chars = self
            .admin_token
            .as_ref()
            .map_or(MIN_ADMIN_TOKEN_CHARS, |token| {
                token.expose().chars().count()
            });
        ensure(
            token_chars >= MIN_ADMIN_TOKEN_CHARS,
            "ADMIN_TOKEN",
            "must be at least 16 characters",
        )
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
