//! Settings of the stream stage: Kinesis (unset: the embedded log), durability and the
//! producer's buffer.

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

impl StreamConfig {
    /// Checks what clap cannot: a named stream and a buffer that holds something.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if let Some(name) = &self.kinesis_stream_name {
            ensure(
                !name.trim().is_empty(),
                "KINESIS_STREAM_NAME",
                "must name a stream",
            )?;
        }
        ensure(
            self.stream_buffer_records > 0,
            "STREAM_BUFFER_RECORDS",
            "must be positive",
        )
    }
}
