//! Engine-wide configuration and per-plugin limits.

use std::path::PathBuf;
use std::time::Duration;

/// How the shared wasmtime engine is set up; fixed for the life of the process.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Plugin instances that may serve calls at once across all plugins.
    pub max_concurrent_instances: u32,
    /// How instances are kept warm and reused between batches.
    pub reuse: InstanceReuse,
    /// Upper bound on any plugin's linear memory; per-plugin limits must not exceed it.
    pub max_memory_bytes: usize,
    /// Granularity of time limits: the engine's epoch advances once per tick.
    pub epoch_tick: Duration,
    /// Meter guest instructions with fuel (needed for per-plugin `fuel` limits).
    pub fuel_metering: bool,
    /// Where precompiled `.cwasm` artifacts are cached; `None` compiles every time.
    pub artifact_cache_dir: Option<PathBuf>,
    /// A read-only directory of precompiled artifacts shipped with the binary (the
    /// Lambda package, the container image), looked up before `artifact_cache_dir`.
    pub packaged_artifact_dir: Option<PathBuf>,
    /// Largest component accepted, in bytes.
    pub max_component_bytes: usize,
    /// How long a call waits for a free instance when the pool is in full use before
    /// it is answered "retry later".
    pub instance_wait: Duration,
    /// Longest one compilation may take; compilations run one at a time.
    pub compile_timeout: Duration,
    /// Map every plugin function compiled or loaded in `/tmp/perf-<pid>.map`, so that
    /// `perf` attributes samples to plugin code (by name when the component keeps its
    /// name section). Linux; off by default: the file grows with every version loaded.
    pub perf_map: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_concurrent_instances: 128,
            reuse: InstanceReuse::default(),
            max_memory_bytes: 256 << 20,
            epoch_tick: Duration::from_millis(5),
            fuel_metering: false,
            artifact_cache_dir: None,
            packaged_artifact_dir: None,
            max_component_bytes: 64 << 20,
            instance_wait: Duration::from_millis(200),
            compile_timeout: Duration::from_secs(120),
            perf_map: false,
        }
    }
}

/// When a plugin instance is kept for the next batch and when it is replaced.
///
/// An instance that served a batch without failing goes back to its plugin's idle
/// list and serves a later batch (of any request) on the same version; it is dropped
/// after any failure, after `max_calls`, once its memory has grown by more than
/// `max_memory_growth_bytes` since it started, and when its plugin is swapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceReuse {
    /// Idle instances kept per plugin; 0 instantiates afresh for every batch.
    pub idle_per_plugin: usize,
    /// Idle instances kept across all plugins (they hold pool places and memory).
    pub max_idle: u32,
    /// Calls (`validate` or `transform`; a `batch-handler` call counts as both for
    /// each of its events) an instance serves before it is replaced.
    pub max_calls: u64,
    /// Growth of linear memory since instantiation after which it is replaced.
    pub max_memory_growth_bytes: usize,
}

impl InstanceReuse {
    /// No reuse: every batch gets fresh instances (the behaviour before reuse, kept
    /// for comparison and for plugins that must never share an instance).
    pub fn never() -> Self {
        Self {
            idle_per_plugin: 0,
            max_idle: 0,
            ..Self::default()
        }
    }
}

impl Default for InstanceReuse {
    fn default() -> Self {
        Self {
            idle_per_plugin: 16,
            max_idle: 64,
            max_calls: 10_000,
            max_memory_growth_bytes: 16 << 20,
        }
    }
}

/// Limits applied to every call into one plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginLimits {
    /// Largest linear memory the plugin may grow to.
    pub memory_bytes: usize,
    /// Wall-clock budget of one `validate` or `transform` call.
    pub timeout: Duration,
    /// Instruction budget of one call; requires [`EngineConfig::fuel_metering`].
    pub fuel: Option<u64>,
    /// Most events one `transform` call may return.
    pub max_output_events: usize,
    /// Most bytes (payload and attributes) one `transform` call may return; with the
    /// event-count limit it also bounds, before anything is copied, the host memory
    /// that one call's output may take.
    pub max_output_bytes: usize,
}

impl PluginLimits {
    /// Host memory, in bytes, that the data one call hands to the host may take: the
    /// output bytes plus the host's own record of each output event. Checked while the
    /// data is lifted out of the guest, before it is copied.
    pub(crate) fn host_copy_budget(&self) -> usize {
        let per_event = std::mem::size_of::<crate::bindings::WitEvent>();
        self.max_output_bytes
            .saturating_add(self.max_output_events.saturating_mul(per_event))
    }
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            timeout: Duration::from_millis(100),
            fuel: None,
            max_output_events: 1_000,
            max_output_bytes: 8 << 20,
        }
    }
}
