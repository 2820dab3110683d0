//! Settings of the stream stage: Kinesis (unset: the embedded log), durability and the
//! producer's buffer.

use std::time::Duration;

use clap::ValueEnum;
use settings::{InvalidSetting, ensure};

/// Where accepted events go and when a request is acknowledged.
#[derive(Clone, Debug, clap::Args)]
pub struct StreamConfig {
    /// Kinesis stream for accepted events. Unset: the embedded log under `--data-dir`,
    /// consumed in-process.
    #[arg(long, env = "KINESIS_STREAM_NAME")]
    pub kinesis_stream_name: Option<String>,
    /// Kinesis endpoint override (emulators); AWS_ENDPOINT_URL also works.
    #[arg(long, env = "KINESIS_ENDPOINT_URL")]
    pub kinesis_endpoint_url: Option<String>,
    /// When a request is answered 200: once its records are on the stream (`stream`),
    /// or once they are buffered in the host (`buffer`, flushed before shutdown ends).
    #[arg(long, env = "ACK", value_enum, default_value = "stream")]
    pub ack: Ack,
    /// Records the stream buffer holds before requests get 503 + Retry-After.
    #[arg(long, env = "STREAM_BUFFER_RECORDS", default_value_t = 10_000)]
    pub stream_buffer_records: usize,
    /// How long a batch for the stream waits for more records before it is put, in
    /// milliseconds (at most 1000). Unset: 0 with `ACK=stream` (requests wait for their
    /// batch) and 5 with `ACK=buffer` (no request waits for it, and fewer, larger puts
    /// cost less: one `fdatasync` or one `PutRecords` call each).
    #[arg(long, env = "STREAM_LINGER_MS")]
    pub stream_linger_ms: Option<u64>,
    /// Embedded mode: records the in-process consumer has handled that the log keeps
    /// for replay; older handled records are removed (unhandled ones never are).
    #[arg(long, env = "EMBEDDED_LOG_KEEP_RECORDS", default_value_t = 100_000)]
    pub embedded_log_keep_records: u64,
}

/// When an accepted request is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Ack {
    /// After the stream stored the records (no loss on a crash).
    Stream,
    /// After the records are buffered in the host (lower latency; a crash loses the buffer).
    Buffer,
}

/// The default [`StreamConfig::stream_linger_ms`] with `ACK=buffer`.
const BUFFERED_LINGER_MS: u64 = 5;

/// The longest [`StreamConfig::stream_linger_ms`] accepted.
const MAX_LINGER_MS: u64 = 1_000;

impl StreamConfig {
    /// How long a batch waits for more records: [`StreamConfig::stream_linger_ms`], or
    /// its default for the acknowledgement mode.
    pub fn linger(&self) -> Duration {
        let default = match self.ack {
            Ack::Stream => 0,
            Ack::Buffer => BUFFERED_LINGER_MS,
        };
        Duration::from_millis(self.stream_linger_ms.unwrap_or(default))
    }

    /// Checks what clap cannot: a named stream, a linger of at most a second and a buffer
    /// that holds something.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if let Some(name) = &self.kinesis_stream_name {
            ensure(
                !name.trim().is_empty(),
                "KINESIS_STREAM_NAME",
                "must name a stream",
            )?;
        }
        ensure(
            self.stream_linger_ms
                .is_none_or(|linger| linger <= MAX_LINGER_MS),
            "STREAM_LINGER_MS",
            "must be at most 1000 (a second)",
        )?;
        ensure(
            self.stream_buffer_records > 0,
            "STREAM_BUFFER_RECORDS",
            "must be positive",
        )
    }
}
