//! Cold start: load the consumer chain (from precompiled `.cwasm` artifacts when their
//! version matches) and connect the AWS backends named by the configuration. Every
//! step is timed, so the Lambda init duration can be read off the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugin_engine::{
    CoreDataLookup, EngineConfig, EngineError, LoadOrigin, NoCoreData, PipelineFile, PluginChain,
    PluginEngine, PluginRegistry, PluginVersion, Side,
};

use crate::config::ConsumerConfig;
use crate::core_data::{CoreDataUpdates, NoCoreDataUpdates, RedisCoreData};
use crate::dead_letter::{DeadLetterSink, LoggedDeadLetters, SqsDeadLetters};
use crate::handler::Consumer;
use crate::store::DynamoDbStore;

/// Plugin instances live at once in the consumer: it handles one batch at a time,
/// with one instance per plugin per batch, so a small pool keeps memory low.
const CONSUMER_INSTANCE_POOL: u32 = 16;

/// How one plugin of the chain was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginLoad {
    /// Plugin name.
    pub name: String,
    /// Its version (sha256 of the component).
    pub version: PluginVersion,
    /// Compiled now, or loaded precompiled from the artifact cache, and how long it took.
    pub origin: LoadOrigin,
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
    /// Whether every plugin was loaded from the artifact cache.
    pub fn all_precompiled(&self) -> bool {
        self.plugins
            .iter()
            .all(|plugin| matches!(plugin.origin, LoadOrigin::Precompiled(_)))
    }
}

/// The cold start failed; the function cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The pipeline or a plugin could not be loaded.
    #[error(transparent)]
    Plugins(#[from] EngineError),
    /// A plugin could not be instantiated.
    #[error("plugin {name} cannot start: {reason}")]
    WarmUp {
        /// Plugin name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A backend could not be set up.
    #[error("{backend}: {reason}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// Why.
        reason: String,
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
    let max_memory_bytes = pipeline
        .plugins
        .values()
        .map(|plugin| plugin.settings.limits.memory_bytes)
        .max()
        .unwrap_or(EngineConfig::default().max_memory_bytes);
    let engine = PluginEngine::new(EngineConfig {
        max_concurrent_instances: CONSUMER_INSTANCE_POOL,
        max_memory_bytes,
        fuel_metering: pipeline.needs_fuel(),
        artifact_cache_dir,
        ..EngineConfig::default()
    })?;
    let registry = PluginRegistry::new(engine);
    let chain = pipeline.build_chain(Side::Consumer, &registry, core_data)?;
    let chain_loaded = started.elapsed();
    let plugins = chain
        .steps()
        .iter()
        .map(|plugin| {
            let active = plugin.active();
            PluginLoad {
                name: plugin.name().to_string(),
                version: active.version(),
                origin: active.report().origin,
            }
        })
        .collect();
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

/// Builds the consumer the Lambda function runs: DynamoDB, SQS dead letters (or the
/// log), Redis core data (or none), and the consumer chain.
pub async fn aws_consumer(config: &ConsumerConfig) -> Result<(Consumer, InitReport), InitError> {
    let started = Instant::now();
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let redis = match &config.redis_url {
        Some(url) => {
            let token = redis_token(config, &aws).await?;
            let redis = RedisCoreData::connect(url, token.as_deref(), config.redis_timeout())
                .await
                .map_err(|error| InitError::Backend {
                    backend: "Redis",
                    reason: error.to_string(),
                })?;
            Some(redis)
        }
        None => {
            tracing::warn!("REDIS_URL is not set: core data is neither read nor updated");
            None
        }
    };
    let dead_letters: Arc<dyn DeadLetterSink> = match &config.dead_letter_queue_url {
        Some(url) => Arc::new(SqsDeadLetters::new(aws_sdk_sqs::Client::new(&aws), url)),
        None => {
            tracing::warn!("DEAD_LETTER_QUEUE_URL is not set: dead letters are only logged");
            Arc::new(LoggedDeadLetters)
        }
    };
    let store = Arc::new(DynamoDbStore::new(
        aws_sdk_dynamodb::Client::new(&aws),
        &config.dynamodb_table,
    ));
    let backends = started.elapsed();
    let (lookup, updates): (Arc<dyn CoreDataLookup>, Arc<dyn CoreDataUpdates>) = match redis {
        Some(redis) => (Arc::new(redis.clone()), Arc::new(redis)),
        None => (Arc::new(NoCoreData), Arc::new(NoCoreDataUpdates)),
    };
    let cache_dir = Some(config.plugin_cache_dir.clone());
    let (chain, mut report) = load_chain(&config.pipeline_file, cache_dir, lookup).await?;
    report.backends = backends;
    report.total = started.elapsed();
    Ok((Consumer::new(chain, store, dead_letters, updates), report))
}

/// The Redis AUTH token: given directly, or read from Secrets Manager once.
async fn redis_token(
    config: &ConsumerConfig,
    aws: &aws_config::SdkConfig,
) -> Result<Option<String>, InitError> {
    if let Some(token) = &config.redis_auth_token {
        return Ok(Some(token.clone()));
    }
    let Some(arn) = &config.redis_auth_token_secret_arn else {
        return Ok(None);
    };
    let error = |reason: String| InitError::Backend {
        backend: "Secrets Manager",
        reason,
    };
    let secret = aws_sdk_secretsmanager::Client::new(aws)
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            error(format!(
                "cannot read {arn}: {}",
                crate::aws_error::describe(&e)
            ))
        })?;
    secret
        .secret_string()
        .map(|token| Some(token.trim().to_owned()))
        .ok_or_else(|| error(format!("{arn} has no string value")))
}

/// Logs the init report: one line per plugin and the totals.
pub fn log_report(report: &InitReport) {
    for plugin in &report.plugins {
        let (origin, took) = match plugin.origin {
            LoadOrigin::Compiled(took) => ("compiled", took),
            LoadOrigin::Precompiled(took) => ("precompiled", took),
        };
        tracing::info!(plugin = %plugin.name, version = %plugin.version.short(), origin, load_ms = took.as_secs_f64() * 1e3, "plugin loaded");
    }
    tracing::info!(
        chain_ms = report.chain.as_secs_f64() * 1e3,
        warm_up_ms = report.warm_up.as_secs_f64() * 1e3,
        backends_ms = report.backends.as_secs_f64() * 1e3,
        init_ms = report.total.as_secs_f64() * 1e3,
        all_precompiled = report.all_precompiled(),
        "consumer initialised"
    );
}
