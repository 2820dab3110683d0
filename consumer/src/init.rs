//! Cold start: load the consumer chain (from precompiled `.cwasm` artifacts when their
//! version and engine configuration match: those shipped beside the pipeline file, then
//! those cached in the artifact cache), instantiating each plugin once. Every step is timed, so the
//! Lambda init duration can be read off the log; the AWS backends are connected by
//! `crate::aws::aws_consumer`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugin_engine::{
    ArtifactSource, CoreDataLookup, EngineConfig, EngineError, InstanceReuse, LoadOrigin,
    PipelineFile, PluginChain, PluginEngine, PluginRegistry, PluginVersion, Side,
};
use releases::{LocalStore, RegistryError, ReleaseRegistry, ReleaseRuntime};

use crate::releases::{DEFAULT_CHECK_EVERY, RegistryChains};

/// Plugin instances serving at once in the consumer, and idle ones kept warm between
/// batches: it handles one batch at a time, with one instance per plugin per batch,
/// so a small pool keeps memory low.
const CONSUMER_INSTANCE_POOL: u32 = 16;

/// How one plugin of the chain was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginLoad {
    /// Plugin name.
    pub name: String,
    /// Its version (sha256 of the component).
    pub version: PluginVersion,
    /// Compiled now, or loaded precompiled, and how long it took.
    pub origin: LoadOrigin,
    /// Where the precompiled artifact came from; `None` when compiled now.
    pub artifact: Option<ArtifactSource>,
}

/// What the cold start did and how long it took.
#[derive(Clone, Debug, Default)]
pub struct InitReport {
    /// Each plugin of the consumer chain, in order.
    pub plugins: Vec<PluginLoad>,
    /// Reading the pipeline file and loading the chain.
    pub chain: Duration,
    /// Instantiating every plugin once.
    pub warm_up: Duration,
    /// Connecting the backends.
    pub backends: Duration,
    /// The whole init.
    pub total: Duration,
}

impl InitReport {
    /// Whether every plugin was loaded precompiled (from the package or the cache).
    pub fn all_precompiled(&self) -> bool {
        self.plugins
            .iter()
            .all(|plugin| matches!(plugin.origin, LoadOrigin::Precompiled(_)))
    }

    /// Whether every plugin was loaded from the artifacts shipped with the package.
    pub fn all_from_package(&self) -> bool {
        self.plugins
            .iter()
            .all(|plugin| plugin.artifact == Some(ArtifactSource::Package))
    }
}

/// The cold start failed; the function cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The pipeline or a plugin could not be loaded.
    #[error(transparent)]
    Plugins(#[from] EngineError),
    /// The plugin registry could not be read, or its current release not loaded.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A plugin could not be instantiated.
    #[error("plugin {name} cannot start: {reason}")]
    WarmUp {
        /// Plugin name.
        name: String,
        /// What went wrong, for people (logs and answers).
        reason: String,
    },
    /// A backend could not be set up.
    #[error("{backend}: {source}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// The underlying error, kept as the source.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Loads the consumer chain of the pipeline file at `pipeline_path`, caching
/// precompiled artifacts in `artifact_cache_dir`, and instantiates each plugin once.
pub async fn load_chain(
    pipeline_path: &Path,
    artifact_cache_dir: Option<PathBuf>,
    core_data: Arc<dyn CoreDataLookup>,
) -> Result<(PluginChain, InitReport), InitError> {
    let started = Instant::now();
    let pipeline = PipelineFile::load(pipeline_path)?;
    let packaged = Some(pipeline.packaged_artifact_dir());
    let engine = consumer_engine(&pipeline, packaged, artifact_cache_dir)?;
    let registry = PluginRegistry::new(engine);
    let chain = pipeline.build_chain(Side::Consumer, &registry, core_data)?;
    let chain_loaded = started.elapsed();
    let plugins = plugin_loads(&chain);
    let warm_started = Instant::now();
    if let Err(outcome) = chain.warm_up().await {
        let (name, reason) = match outcome {
            plugin_engine::Outcome::Failed { by, failure } => {
                (by.name.to_string(), failure.to_string())
            }
            other => ("(chain)".to_owned(), format!("{other:?}")),
        };
        return Err(InitError::WarmUp { name, reason });
    }
    let report = InitReport {
        plugins,
        chain: chain_loaded,
        warm_up: warm_started.elapsed(),
        backends: Duration::ZERO,
        total: started.elapsed(),
    };
    Ok((chain, report))
}

/// Loads the consumer chain of the registry's current release (seeding an empty
/// registry from the pipeline file at `pipeline_path`); each batch then checks the
/// registry for a newer release.
pub async fn registry_chains(
    registry: ReleaseRegistry,
    pipeline_path: &Path,
    artifact_cache_dir: Option<PathBuf>,
    core_data: Arc<dyn CoreDataLookup>,
) -> Result<(RegistryChains, InitReport), InitError> {
    let started = Instant::now();
    let pipeline = PipelineFile::load(pipeline_path)?;
    let mirror = artifact_cache_dir
        .as_ref()
        .map(|dir| LocalStore::open(&dir.join("release-cache")))
        .transpose()?;
    let packaged = Some(pipeline.packaged_artifact_dir());
    let engine = consumer_engine(&pipeline, packaged, artifact_cache_dir)?;
    let runtime = ReleaseRuntime::start(
        registry,
        engine,
        core_data,
        &[Side::Consumer],
        Some(&pipeline),
        mirror,
    )
    .await?;
    let active = runtime.active();
    let plugins = active
        .chain(Side::Consumer)
        .map(|chain| plugin_loads(chain.active()))
        .unwrap_or_default();
    tracing::info!(
        release = active.number(),
        "consumer runs the registry's current release"
    );
    let chains =
        RegistryChains::new(runtime, DEFAULT_CHECK_EVERY).map_err(|error| InitError::Backend {
            backend: "plugin registry",
            source: Box::new(error),
        })?;
    let report = InitReport {
        plugins,
        chain: started.elapsed(),
        warm_up: Duration::ZERO,
        backends: Duration::ZERO,
        total: started.elapsed(),
    };
    Ok((chains, report))
}

/// The consumer's engine: a small instance pool (one batch at a time), memory up to the
/// largest limit the pipeline declares (at least the engine default), fuel if needed;
/// precompiled artifacts from beside the pipeline file, then from `artifact_cache_dir`.
/// [`crate::precompile`] builds the shipped artifacts with this same configuration.
pub(crate) fn consumer_engine(
    pipeline: &PipelineFile,
    packaged_artifact_dir: Option<PathBuf>,
    artifact_cache_dir: Option<PathBuf>,
) -> Result<PluginEngine, EngineError> {
    let max_memory_bytes = pipeline
        .plugins
        .values()
        .map(|plugin| plugin.settings.limits.memory_bytes)
        .chain([EngineConfig::default().max_memory_bytes])
        .max()
        .unwrap_or_default();
    PluginEngine::new(EngineConfig {
        max_concurrent_instances: CONSUMER_INSTANCE_POOL,
        reuse: InstanceReuse {
            max_idle: CONSUMER_INSTANCE_POOL,
            ..InstanceReuse::default()
        },
        max_memory_bytes,
        fuel_metering: pipeline.needs_fuel(),
        artifact_cache_dir,
        packaged_artifact_dir,
        ..EngineConfig::default()
    })
}

/// How each plugin of `chain` was loaded.
fn plugin_loads(chain: &PluginChain) -> Vec<PluginLoad> {
    chain
        .steps()
        .iter()
        .map(|plugin| {
            let active = plugin.active();
            PluginLoad {
                name: plugin.name().to_string(),
                version: active.version(),
                origin: active.report().origin,
                artifact: active.report().artifact,
            }
        })
        .collect()
}

/// Logs the init report: one line per plugin and the totals.
pub fn log_report(report: &InitReport) {
    for plugin in &report.plugins {
        let (origin, took) = plugin.origin.described(plugin.artifact);
        tracing::info!(plugin = %plugin.name, version = %plugin.version.short(), origin, load_ms = took.as_secs_f64() * 1e3, "plugin loaded");
    }
    tracing::info!(
        chain_ms = report.chain.as_secs_f64() * 1e3,
        warm_up_ms = report.warm_up.as_secs_f64() * 1e3,
        backends_ms = report.backends.as_secs_f64() * 1e3,
        init_ms = report.total.as_secs_f64() * 1e3,
        all_precompiled = report.all_precompiled(),
        all_from_package = report.all_from_package(),
        "consumer initialised"
    );
}
