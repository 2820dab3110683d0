//! Named plugins with their active version: atomic hot swap and rollback.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use arc_swap::ArcSwap;

use crate::capabilities::Grant;
use crate::config::PluginLimits;
use crate::engine::{CompiledPlugin, PluginEngine};
use crate::error::EngineError;
use crate::instance_pool::InstancePool;
use crate::version::PluginVersion;

/// Earlier versions kept per plugin for rollback.
const HISTORY_DEPTH: usize = 8;

/// How a registered plugin runs: its configuration, limits and granted capabilities.
/// Settings stay with the name; a swap replaces only the code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PluginSettings {
    /// Values the plugin reads through the `config` import.
    pub config: BTreeMap<String, String>,
    /// Memory, time, fuel and output limits per call.
    pub limits: PluginLimits,
    /// Capabilities beyond the default sandbox.
    pub grants: BTreeSet<Grant>,
}

/// A named plugin: its settings, the active version and earlier versions.
pub struct RegisteredPlugin {
    name: Arc<str>,
    settings: Arc<PluginSettings>,
    active: ArcSwap<CompiledPlugin>,
    /// Earlier versions, newest last. Its lock also serialises swaps and rollbacks.
    history: Mutex<Vec<Arc<CompiledPlugin>>>,
    /// Warm instances of the active version.
    pool: InstancePool,
}

impl RegisteredPlugin {
    /// The plugin's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The plugin's settings.
    pub fn settings(&self) -> &Arc<PluginSettings> {
        &self.settings
    }

    /// The version new calls get; calls already running keep the one they started with.
    pub fn active(&self) -> Arc<CompiledPlugin> {
        self.active.load_full()
    }

    /// Warm instances of the active version, reused between batches.
    pub(crate) fn pool(&self) -> &InstancePool {
        &self.pool
    }

    fn history(&self) -> std::sync::MutexGuard<'_, Vec<Arc<CompiledPlugin>>> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The result of a swap or rollback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapReport {
    /// Plugin name.
    pub name: String,
    /// The version that was active before.
    pub previous: PluginVersion,
    /// The version active now.
    pub active: PluginVersion,
}

/// A registered plugin as listed by the admin API.
#[derive(Clone, Debug)]
pub struct PluginStatus {
    /// Plugin name.
    pub name: String,
    /// Active version.
    pub active: PluginVersion,
    /// Size of the active component in bytes.
    pub size_bytes: usize,
    /// Earlier versions available for rollback, newest first.
    pub previous: Vec<PluginVersion>,
}

/// All plugins of a process by name.
pub struct PluginRegistry {
    engine: PluginEngine,
    plugins: RwLock<BTreeMap<String, Arc<RegisteredPlugin>>>,
}

impl PluginRegistry {
    /// An empty registry compiling on `engine`.
    pub fn new(engine: PluginEngine) -> Self {
        Self {
            engine,
            plugins: RwLock::new(BTreeMap::new()),
        }
    }

    /// The engine plugins run on.
    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    /// Compiles, checks and registers a new plugin under `name`.
    pub fn register(
        &self,
        name: &str,
        settings: PluginSettings,
        bytes: &[u8],
    ) -> Result<Arc<RegisteredPlugin>, EngineError> {
        self.engine.check_limits(name, &settings.limits)?;
        let compiled = self.engine.compile(name, bytes, &settings.grants)?;
        self.register_compiled(name, settings, compiled)
    }

    /// Registers a plugin already compiled and checked (against `settings.grants`) on
    /// this registry's engine under `name`.
    pub fn register_compiled(
        &self,
        name: &str,
        settings: PluginSettings,
        compiled: CompiledPlugin,
    ) -> Result<Arc<RegisteredPlugin>, EngineError> {
        self.engine.check_limits(name, &settings.limits)?;
        let mut plugins = self.plugins.write().unwrap_or_else(PoisonError::into_inner);
        if plugins.contains_key(name) {
            return Err(EngineError::DuplicatePlugin(name.to_owned()));
        }
        let plugin = Arc::new(RegisteredPlugin {
            name: name.into(),
            settings: Arc::new(settings),
            active: ArcSwap::from_pointee(compiled),
            history: Mutex::new(Vec::new()),
            pool: InstancePool::default(),
        });
        plugins.insert(name.to_owned(), plugin.clone());
        tracing::info!(plugin = name, version = %plugin.active().version().short(), "plugin registered");
        Ok(plugin)
    }

    /// The plugin registered as `name`.
    pub fn get(&self, name: &str) -> Result<Arc<RegisteredPlugin>, EngineError> {
        self.plugins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::UnknownPlugin(name.to_owned()))
    }

    /// Makes `bytes` the active version of `name`. The candidate is compiled and
    /// checked first; if it fails, the working version stays active.
    pub fn swap(&self, name: &str, bytes: &[u8]) -> Result<SwapReport, EngineError> {
        let plugin = self.get(name)?;
        let candidate = self.engine.compile(name, bytes, &plugin.settings.grants)?;
        let mut history = plugin.history();
        let previous = plugin.active.swap(Arc::new(candidate));
        plugin.pool.clear();
        let report = SwapReport {
            name: name.to_owned(),
            previous: previous.version(),
            active: plugin.active().version(),
        };
        history.push(previous);
        if history.len() > HISTORY_DEPTH {
            history.remove(0);
        }
        tracing::info!(plugin = name, previous = %report.previous.short(), active = %report.active.short(), "plugin swapped");
        Ok(report)
    }

    /// Restores the version that was active before the last swap.
    pub fn rollback(&self, name: &str) -> Result<SwapReport, EngineError> {
        let plugin = self.get(name)?;
        let mut history = plugin.history();
        let restored = history
            .pop()
            .ok_or_else(|| EngineError::NothingToRollBack(name.to_owned()))?;
        let report = SwapReport {
            name: name.to_owned(),
            previous: plugin.active().version(),
            active: restored.version(),
        };
        plugin.active.store(restored);
        plugin.pool.clear();
        tracing::info!(plugin = name, previous = %report.previous.short(), active = %report.active.short(), "plugin rolled back");
        Ok(report)
    }

    /// Every registered plugin with its active and earlier versions.
    pub fn list(&self) -> Vec<PluginStatus> {
        let plugins = self.plugins.read().unwrap_or_else(PoisonError::into_inner);
        plugins
            .values()
            .map(|plugin| {
                let active = plugin.active();
                PluginStatus {
                    name: plugin.name.to_string(),
                    active: active.version(),
                    size_bytes: active.report().size_bytes,
                    previous: plugin
                        .history()
                        .iter()
                        .rev()
                        .map(|compiled| compiled.version())
                        .collect(),
                }
            })
            .collect()
    }
}
