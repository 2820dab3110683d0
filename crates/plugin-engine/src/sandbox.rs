//! Per-instance store state: the WASI sandbox, resource limits and the host imports.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostWallClock, ResourceTable, WasiCtx, WasiCtxView, WasiView};

use crate::bindings::LogLevel;
use crate::bindings::adtrack::plugin::{config, core_data, log, types};
use crate::capabilities::Grant;
use crate::config::PluginLimits;
use crate::core_data::CoreDataLookup;
use crate::registry::PluginSettings;
use crate::version::PluginVersion;

/// Bytes of guest stderr kept to explain traps (panic messages land there).
const STDERR_CAPTURE_BYTES: usize = 4096;
/// Bytes of guest stderr quoted in a trap report.
const STDERR_REPORT_BYTES: usize = 512;
/// Longest log message forwarded from a plugin.
const MAX_LOG_MESSAGE_BYTES: usize = 2048;
/// Log lines a plugin may emit per call before further lines are dropped.
const LOG_LINES_PER_CALL: u32 = 256;

/// Everything a plugin instance's store holds.
pub(crate) struct SandboxState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) limits: PluginLimits,
    /// When the current call started; the epoch callback measures the deadline from it.
    call_started: Instant,
    /// `handler` calls the current call stands for (two per event of a `batch-handler`
    /// call): its time and log budgets are that many calls'.
    handler_calls: u32,
    epoch_tick: Duration,
    plugin_name: Arc<str>,
    version: PluginVersion,
    settings: Arc<PluginSettings>,
    core_data: Arc<dyn CoreDataLookup>,
    log_lines_left: u32,
}

impl SandboxState {
    /// A fresh sandbox for one instance of `plugin_name` at `version`.
    pub(crate) fn new(
        plugin_name: Arc<str>,
        version: PluginVersion,
        settings: Arc<PluginSettings>,
        core_data: Arc<dyn CoreDataLookup>,
        epoch_tick: Duration,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE_BYTES);
        let wasi = sandboxed_wasi(&settings.grants, stderr.clone());
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(settings.limits.memory_bytes),
            stderr,
            limits: settings.limits.clone(),
            call_started: Instant::now(),
            handler_calls: 1,
            epoch_tick,
            plugin_name,
            version,
            settings,
            core_data,
            log_lines_left: LOG_LINES_PER_CALL,
        }
    }

    /// `handler` calls the current call stands for.
    pub(crate) fn handler_calls(&self) -> u32 {
        self.handler_calls
    }

    /// Marks the start of a guest call standing for `calls` `handler` calls: its deadline
    /// counts from now and its log lines are counted afresh.
    pub(crate) fn start_call(&mut self, calls: u32) {
        self.call_started = Instant::now();
        self.handler_calls = calls.max(1);
        self.log_lines_left = LOG_LINES_PER_CALL.saturating_mul(self.handler_calls);
    }

    /// The guest time budget of the current call.
    pub(crate) fn call_timeout(&self) -> Duration {
        self.limits.timeout.saturating_mul(self.handler_calls)
    }

    /// Answers the guest's core-data lookups from `core_data` from now on.
    pub(crate) fn set_core_data(&mut self, core_data: Arc<dyn CoreDataLookup>) {
        self.core_data = core_data;
    }

    /// Whether the stderr capture is over half full: an instance reused further might
    /// lose the message that explains its next trap.
    pub(crate) fn stderr_nearly_full(&self) -> bool {
        self.stderr.contents().len() > STDERR_CAPTURE_BYTES / 2
    }

    /// Whether the current call has used up its time.
    pub(crate) fn deadline_passed(&self) -> bool {
        self.call_started.elapsed() >= self.call_timeout()
    }

    /// Cap on a whole call including host imports: the guest deadline plus a few
    /// ticks, so a hung import cannot hold a call forever.
    pub(crate) fn wall_limit(&self) -> Duration {
        self.call_timeout() + self.epoch_tick * 4
    }

    /// When the current call reaches its [`SandboxState::wall_limit`].
    pub(crate) fn wall_deadline(&self) -> Instant {
        self.call_started + self.wall_limit()
    }

    /// What the guest last wrote to stderr (e.g. a panic message) on one line,
    /// without the hint about backtraces that guests cannot act on.
    pub(crate) fn stderr_tail(&self) -> Option<String> {
        let captured = self.stderr.contents();
        let text = String::from_utf8_lossy(&captured);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        let joined = lines.join(" ");
        let start = joined.len().saturating_sub(STDERR_REPORT_BYTES);
        let start = (start..joined.len())
            .find(|index| joined.is_char_boundary(*index))
            .unwrap_or(joined.len());
        (!joined.is_empty()).then(|| joined[start..].to_owned())
    }
}

/// A WASI context that grants nothing beyond `grants`: no preopened directories,
/// no environment, no arguments, empty stdin, stdout discarded, stderr captured.
fn sandboxed_wasi(grants: &BTreeSet<Grant>, stderr: MemoryOutputPipe) -> WasiCtx {
    let mut builder = WasiCtx::builder();
    builder.stderr(stderr);
    if !grants.contains(&Grant::WallClock) {
        builder.wall_clock(UnixEpochClock);
    }
    if grants.contains(&Grant::Network) {
        builder.inherit_network();
        builder.allow_ip_name_lookup(true);
    } else {
        builder.allow_tcp(false);
        builder.allow_udp(false);
        builder.allow_ip_name_lookup(false);
    }
    builder.build()
}

/// A wall clock stuck at the Unix epoch, for plugins without [`Grant::WallClock`].
struct UnixEpochClock;

impl HostWallClock for UnixEpochClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl WasiView for SandboxState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Refuses memory growth past a plugin's limit and remembers that it did.
pub(crate) struct MemoryLimiter {
    limit: usize,
    pub(crate) exceeded: bool,
    /// Bytes of linear memory grown so far, across the instance's memories.
    grown: usize,
}

impl MemoryLimiter {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            exceeded: false,
            grown: 0,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes of linear memory the instance has grown to, over all its memories.
    pub(crate) fn grown(&self) -> usize {
        self.grown
    }
}

/// Most table elements an instance may have (function references).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        self.grown += desired.saturating_sub(current);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl types::Host for SandboxState {}

impl log::Host for SandboxState {
    fn emit(&mut self, level: LogLevel, message: String) {
        if self.log_lines_left == 0 {
            return;
        }
        self.log_lines_left -= 1;
        let message = truncate(&message, MAX_LOG_MESSAGE_BYTES);
        let plugin = &*self.plugin_name;
        let version = self.version.short();
        match level {
            LogLevel::Trace => tracing::trace!(plugin, %version, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, %version, "{message}"),
            LogLevel::Info => tracing::info!(plugin, %version, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, %version, "{message}"),
            LogLevel::Error => tracing::error!(plugin, %version, "{message}"),
        }
    }
}

impl config::Host for SandboxState {
    fn get(&mut self, key: String) -> Option<String> {
        self.settings.config.get(&key).cloned()
    }
}

impl core_data::Host for SandboxState {
    async fn lookup(&mut self, key: String) -> Result<Option<Vec<(String, String)>>, String> {
        self.core_data
            .lookup(&key)
            .await
            .map_err(|error| error.to_string())
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("hello", 10), "hello");
    }

    #[test]
    fn limiter_refuses_growth_past_the_limit_and_remembers() {
        let mut limiter = MemoryLimiter::new(1 << 20);
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!limiter.exceeded);
        assert_eq!(limiter.grown(), 1 << 20);
        assert!(!limiter.memory_growing(1 << 20, 2 << 20, None).unwrap());
        assert!(limiter.exceeded);
    }
}
