//! The shared wasmtime engine: configuration, compilation, checks against the world.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, HasSelf, InstancePre, Linker, Type};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ProfilingStrategy,
};

use crate::artifact_cache::{self, ArtifactCache, ArtifactSource};
use crate::bindings::{Plugin, PluginIndices};
use crate::call_metrics::CallMetrics;
use crate::capabilities::{Grant, first_denied_import};
use crate::config::{EngineConfig, PluginLimits};
use crate::contract_version;
use crate::error::EngineError;
use crate::sandbox::SandboxState;
use crate::version::PluginVersion;

/// The compiled-code engine every plugin runs on; cheap to clone.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: Engine,
    linker: Linker<SandboxState>,
    config: EngineConfig,
    cache: Option<ArtifactCache>,
    /// One permit per instance serving a batch: a call waits here, not in a failing
    /// allocation, while the pool is in full use.
    instances: Arc<Semaphore>,
    /// One permit per idle instance kept warm; the pool has room for both kinds.
    idle_places: Arc<Semaphore>,
    /// One compilation at a time: compiling takes the CPU and memory of a whole core.
    compiles: Arc<Semaphore>,
    _ticker: EpochTicker,
}

/// A plugin compiled, checked against the world and ready to instantiate.
#[derive(Clone)]
pub struct CompiledPlugin {
    pub(crate) pre: InstancePre<SandboxState>,
    /// Where the `handler` functions are in an instance.
    pub(crate) indices: PluginIndices,
    /// Where `batch-handler.handle` is in an instance, when the plugin exports it.
    pub(crate) batch_handler: Option<ComponentExportIndex>,
    /// The metrics every call on this version is counted in.
    pub(crate) metrics: Arc<CallMetrics>,
    report: Arc<PluginReport>,
}

/// What `plugin check` tells an author about a component.
#[derive(Clone, Debug)]
pub struct PluginReport {
    /// sha256 of the component bytes.
    pub version: PluginVersion,
    /// Component size in bytes.
    pub size_bytes: usize,
    /// Interfaces the component imports.
    pub imports: Vec<String>,
    /// Interfaces the component exports.
    pub exports: Vec<String>,
    /// The contract version the component was built for (`None`: it names none).
    pub contract: Option<semver::Version>,
    /// Whether it exports `batch-handler` (the `batch-plugin` world).
    pub handles_batches: bool,
    /// Whether the code was compiled now or loaded precompiled.
    pub origin: LoadOrigin,
    /// Where the precompiled artifact came from; `None` when compiled now.
    pub artifact: Option<ArtifactSource>,
}

/// How a plugin's machine code was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadOrigin {
    /// Compiled from the component bytes.
    Compiled(Duration),
    /// Loaded from a cached `.cwasm` artifact.
    Precompiled(Duration),
}

impl std::fmt::Debug for CompiledPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPlugin")
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl CompiledPlugin {
    /// The plugin's version (sha256 of its bytes).
    pub fn version(&self) -> PluginVersion {
        self.report.version
    }

    /// Facts about the component for authors and operators.
    pub fn report(&self) -> &PluginReport {
        &self.report
    }
}

impl PluginReport {
    /// Where the machine code came from (`compiled`, `package` or `cache`) and how
    /// long loading it took.
    pub fn loaded(&self) -> (&'static str, Duration) {
        self.origin.described(self.artifact)
    }
}

impl LoadOrigin {
    /// `compiled`, `package` or `cache` (with `artifact`, where a precompiled artifact
    /// came from), and how long loading took.
    pub fn described(self, artifact: Option<ArtifactSource>) -> (&'static str, Duration) {
        match (self, artifact) {
            (Self::Compiled(took), _) => ("compiled", took),
            (Self::Precompiled(took), Some(ArtifactSource::Package)) => ("package", took),
            (Self::Precompiled(took), _) => ("cache", took),
        }
    }
}

impl PluginEngine {
    /// Configures wasmtime: pooling allocator with copy-on-write memory images,
    /// epoch interruption and optional fuel, plus the WASI and plugin-world imports.
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        let engine = Engine::new(&wasmtime_config(&config)).map_err(setup_error)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(setup_error)?;
        Plugin::add_to_linker::<_, HasSelf<SandboxState>>(&mut linker, |state| state)
            .map_err(setup_error)?;
        let cache = ArtifactCache::new(
            config.packaged_artifact_dir.clone(),
            config.artifact_cache_dir.clone(),
            &engine,
        );
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick);
        let instances = Arc::new(Semaphore::new(config.max_concurrent_instances as usize));
        let idle_places = Arc::new(Semaphore::new(config.reuse.max_idle as usize));
        Ok(Self {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                config,
                cache,
                instances,
                idle_places,
                compiles: Arc::new(Semaphore::new(1)),
                _ticker: ticker,
            }),
        })
    }

    /// The configuration the engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    pub(crate) fn wasmtime(&self) -> &Engine {
        &self.inner.engine
    }

    /// A place for one more instance serving a batch, waiting for one at most
    /// [`EngineConfig::instance_wait`]; `None` when the pool stayed in full use.
    pub(crate) async fn reserve_instance(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.inner.instances.clone().try_acquire_owned() {
            return Some(permit); // no timer when a place is free
        }
        let wait = self.inner.config.instance_wait;
        let permit = self.inner.instances.clone().acquire_owned();
        match tokio::time::timeout(wait, permit).await {
            Ok(Ok(permit)) => Some(permit),
            Ok(Err(_)) | Err(_) => None,
        }
    }

    /// A place for one more idle instance, if the engine keeps that many.
    pub(crate) fn idle_place(&self) -> Option<OwnedSemaphorePermit> {
        self.inner.idle_places.clone().try_acquire_owned().ok()
    }

    /// Checks that `limits` fit this engine.
    pub fn check_limits(&self, name: &str, limits: &PluginLimits) -> Result<(), EngineError> {
        let invalid = |reason: String| {
            Err(EngineError::InvalidLimits {
                name: name.to_owned(),
                reason,
            })
        };
        if limits.memory_bytes > self.inner.config.max_memory_bytes {
            return invalid(format!(
                "memory limit {} exceeds the engine maximum {}",
                limits.memory_bytes, self.inner.config.max_memory_bytes
            ));
        }
        if limits.fuel.is_some() && !self.inner.config.fuel_metering {
            return invalid("a fuel limit needs fuel metering enabled in the engine".into());
        }
        if limits.timeout.is_zero() {
            return invalid("the timeout must be positive".into());
        }
        Ok(())
    }

    /// Compiles `bytes` (or loads its cached artifact) and checks it against the
    /// plugin world and the capabilities in `grants`. A component that fails any
    /// check is refused with the reason.
    pub fn compile(
        &self,
        name: &str,
        bytes: &[u8],
        grants: &BTreeSet<Grant>,
    ) -> Result<CompiledPlugin, EngineError> {
        self.check_size(name, bytes.len())?;
        let version = PluginVersion::of(bytes);
        let (component, origin, artifact) = self.component(name, version, bytes)?;
        let engine = &self.inner.engine;
        let component_type = component.component_type();
        let imports: Vec<String> = component_type
            .imports(engine)
            .map(|(import, _)| import.to_owned())
            .collect();
        let exports: Vec<String> = component_type
            .exports(engine)
            .map(|(export, _)| export.to_owned())
            .collect();
        let contract =
            contract_version::targeted_version(imports.iter().chain(&exports).map(String::as_str))
                .map_err(|reason| EngineError::WorldMismatch {
                    name: name.to_owned(),
                    reason,
                })?;
        if let Some(target) = &contract
            && !contract_version::accepts(target)
        {
            return Err(EngineError::IncompatibleContract {
                name: name.to_owned(),
                package: contract_version::CONTRACT_PACKAGE,
                target: target.to_string(),
                host: contract_version::CONTRACT_VERSION.to_owned(),
                accepted: contract_version::accepted_range(),
            });
        }
        if let Some(import) = first_denied_import(imports.iter().map(String::as_str), grants) {
            return Err(EngineError::DeniedImport {
                name: name.to_owned(),
                import: import.to_owned(),
            });
        }
        let mismatch = |error: wasmtime::Error| EngineError::WorldMismatch {
            name: name.to_owned(),
            reason: format!("{error:#}"),
        };
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(mismatch)?;
        let indices = PluginIndices::new(&instance_pre).map_err(mismatch)?;
        let batch_handler = batch_handler_export(&component, &exports).map_err(|reason| {
            EngineError::WorldMismatch {
                name: name.to_owned(),
                reason,
            }
        })?;
        Ok(CompiledPlugin {
            pre: instance_pre,
            indices,
            batch_handler,
            metrics: Arc::new(CallMetrics::new(name, version)),
            report: Arc::new(PluginReport {
                version,
                size_bytes: bytes.len(),
                imports,
                exports,
                contract,
                handles_batches: batch_handler.is_some(),
                origin,
                artifact,
            }),
        })
    }

    /// Compiles `bytes` as [`PluginEngine::compile`] does, with the same checks, and
    /// writes its precompiled artifact into `dir` under the name this engine looks
    /// for (see [`EngineConfig::packaged_artifact_dir`]); returns the plugin's version
    /// and the artifact's path.
    /// A build step runs this with the serving engine's configuration, so the shipped
    /// artifacts load at start instead of compiling.
    pub fn precompile(
        &self,
        name: &str,
        bytes: &[u8],
        grants: &BTreeSet<Grant>,
        dir: &Path,
    ) -> Result<(PluginVersion, PathBuf), EngineError> {
        let compiled = self.compile(name, bytes, grants)?;
        let path = artifact_cache::artifact_path_for(&self.inner.engine, dir, compiled.version());
        artifact_cache::write_artifact(&path, compiled.pre.component()).map_err(|source| {
            EngineError::ArtifactWrite {
                path: path.clone(),
                source,
            }
        })?;
        Ok((compiled.version(), path))
    }

    /// [`PluginEngine::compile`] on a blocking thread, one compilation at a time and
    /// within [`EngineConfig::compile_timeout`] (waiting for an earlier compilation
    /// counts). A compilation that runs out of time is left to finish in the
    /// background, still holding its place, so compilations never pile up.
    pub async fn compile_bounded(
        &self,
        name: &str,
        bytes: Vec<u8>,
        grants: BTreeSet<Grant>,
    ) -> Result<CompiledPlugin, EngineError> {
        self.check_size(name, bytes.len())?;
        let limit = self.inner.config.compile_timeout;
        let engine = self.clone();
        let owned_name = name.to_owned();
        let compile = async move {
            let permit = engine.inner.compiles.clone().acquire_owned().await;
            let task = tokio::task::spawn_blocking(move || {
                let _one_at_a_time = permit;
                engine.compile(&owned_name, &bytes, &grants)
            });
            task.await
        };
        match tokio::time::timeout(limit, compile).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(EngineError::Compile {
                name: name.to_owned(),
                reason: format!("the compiler stopped: {join}"),
            }),
            Err(_) => Err(EngineError::CompileTimeout {
                name: name.to_owned(),
                limit,
            }),
        }
    }

    fn check_size(&self, name: &str, size: usize) -> Result<(), EngineError> {
        let limit = self.inner.config.max_component_bytes;
        if size > limit {
            return Err(EngineError::TooLarge {
                name: name.to_owned(),
                size,
                limit,
            });
        }
        Ok(())
    }

    fn component(
        &self,
        name: &str,
        version: PluginVersion,
        bytes: &[u8],
    ) -> Result<(Component, LoadOrigin, Option<ArtifactSource>), EngineError> {
        let started = Instant::now();
        if let Some((component, source)) = self
            .inner
            .cache
            .as_ref()
            .and_then(|cache| cache.load(&self.inner.engine, version))
        {
            let origin = LoadOrigin::Precompiled(started.elapsed());
            return Ok((component, origin, Some(source)));
        }
        let component =
            Component::new(&self.inner.engine, bytes).map_err(|error| EngineError::Compile {
                name: name.to_owned(),
                reason: format!("{error:#}"),
            })?;
        let origin = LoadOrigin::Compiled(started.elapsed());
        if let Some(cache) = &self.inner.cache {
            cache.store(version, &component);
        }
        Ok((component, origin, None))
    }
}

/// Where `batch-handler.handle` is in `component`, when it exports the interface
/// (see `wit/plugin.wit`); an export of it with another signature is an error.
fn batch_handler_export(
    component: &Component,
    exports: &[String],
) -> Result<Option<ComponentExportIndex>, String> {
    let prefix = format!("{}/batch-handler@", contract_version::CONTRACT_PACKAGE);
    let Some(interface) = exports.iter().find(|name| name.starts_with(&prefix)) else {
        return Ok(None);
    };
    let wrong = || {
        format!(
            "{interface} does not export `handle: func(events: list<u8>) -> result<list<u8>, string>`"
        )
    };
    let (_, interface_index) = component
        .get_export(None, interface.as_str())
        .ok_or_else(wrong)?;
    let Some((ComponentItem::ComponentFunc(handle), index)) =
        component.get_export(Some(&interface_index), "handle")
    else {
        return Err(wrong());
    };
    let bytes = |ty: &Type| matches!(ty, Type::List(list) if list.ty() == Type::U8);
    let params: Vec<Type> = handle.params().map(|(_, ty)| ty).collect();
    let results: Vec<Type> = handle.results().collect();
    let takes_bytes = matches!(params.as_slice(), [param] if bytes(param));
    let answers_bytes = matches!(
        results.as_slice(),
        [Type::Result(result)]
            if result.ok().as_ref().is_some_and(bytes) && result.err() == Some(Type::String)
    );
    if takes_bytes && answers_bytes {
        Ok(Some(index))
    } else {
        Err(wrong())
    }
}

fn setup_error(error: wasmtime::Error) -> EngineError {
    EngineError::Setup(format!("{error:#}"))
}

/// Bytes of each freed memory, table and stack slot cleared in place for reuse.
const KEEP_RESIDENT_BYTES: usize = 1 << 20;

fn wasmtime_config(config: &EngineConfig) -> Config {
    // Instances serving calls and idle ones each hold a place of their own.
    let instances = config.max_concurrent_instances + config.reuse.max_idle;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances * 8)
        .total_memories(instances * 2)
        .total_tables(instances * 8)
        .total_stacks(instances)
        .max_memory_size(config.max_memory_bytes)
        .table_elements(64 * 1024)
        // Zero the first pages of a freed slot in place instead of returning them to
        // the kernel: returning them costs a TLB shootdown on every core.
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES)
        .async_stack_keep_resident(KEEP_RESIDENT_BYTES);
    let mut wasmtime = Config::new();
    wasmtime
        // The contract is WASI 0.2 with synchronous exports: without the component-model
        // async runtime every call is a plain fiber call, not a task of a concurrent
        // scheduler (its bookkeeping showed in every call's profile).
        .concurrency_support(false)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        .epoch_interruption(true)
        .consume_fuel(config.fuel_metering);
    if config.perf_map {
        // Not part of the compiled code: cached artifacts load as they are.
        wasmtime.profiler(ProfilingStrategy::PerfMap);
    }
    wasmtime
}

/// Advances the engine's epoch once per tick on a background thread, which is
/// what lets deadlines interrupt guest code; stops when dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .map(|_| ())
            .unwrap_or_else(|error| tracing::error!(%error, "cannot start the epoch ticker"));
        Self { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
