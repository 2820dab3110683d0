//! `adtrack-host serve`: wires the stages together, serves HTTP, shuts down gracefully.

use std::sync::Arc;
use std::time::Duration;

use adtrack_consumer::Consumer;
use adtrack_consumer::dead_letter::JsonLinesDeadLetters;
use adtrack_consumer::drivers::embedded::{EmbeddedOptions, consume_batch, run_embedded};
use adtrack_consumer::store::EmbeddedStore;
use anyhow::{Context, Result};
use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use core_data::{CoreDataStore, CoreDataUpdates, InProcessCoreData, RedisCoreData};
use embedded_log::EmbeddedLog;
use metrics_exporter_prometheus::PrometheusBuilder;
use plugin_engine::{EngineConfig, PipelineFile, PluginEngine, PluginRegistry, Side};
use tokio::net::TcpListener;

use crate::cache::{CacheConfig, CoreDataCache, follow_updates};
use crate::config::ServeConfig;
use crate::http::{AppState, router};
use crate::stream::{
    EmbeddedSink, KinesisSink, ProducerSettings, StreamConfig, StreamProducer, StreamSink,
};

/// Runs the host until SIGTERM or Ctrl-C, then stops accepting requests, finishes the
/// ones in flight and delivers every buffered record before returning.
pub async fn serve(config: ServeConfig) -> Result<()> {
    config.validate()?;
    tracing::info!(?config, "starting adtrack-host");
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;

    let pipeline = PipelineFile::load(&config.plugins.pipeline)?;
    let engine = PluginEngine::new(EngineConfig {
        fuel_metering: pipeline.needs_fuel(),
        artifact_cache_dir: config.plugins.plugin_cache_dir.clone(),
        ..EngineConfig::default()
    })?;
    let registry = Arc::new(PluginRegistry::new(engine));

    let core_data = CoreDataBackend::start(&config.cache)?;
    let chain = pipeline.build_chain(Side::Host, &registry, Arc::new(core_data.cache.clone()))?;
    if let Err(outcome) = chain.warm_up().await {
        anyhow::bail!("a host plugin cannot start: {outcome:?}");
    }

    let (sink, embedded_log) = stream_sink(&config.stream).await?;
    let embedded_consumer = match embedded_log {
        Some(log) => Some(EmbeddedConsumer::start(
            &config.stream,
            &pipeline,
            &registry,
            &core_data,
            log,
        )?),
        None => None,
    };
    let producer = StreamProducer::start(
        sink,
        ProducerSettings {
            buffer_records: config.stream.stream_buffer_records,
            ..ProducerSettings::default()
        },
    );
    let state = AppState {
        chain,
        registry,
        cache: core_data.cache,
        producer: producer.clone(),
        metrics,
        admin_token: config.http.admin_token.clone().map(Arc::new),
        ack: config.stream.ack,
        max_batch_events: config.http.max_batch_events,
    };
    let listen_addr = config.http.listen_addr;
    let listener = TcpListener::bind(listen_addr)
        .await
        .with_context(|| format!("cannot listen on {listen_addr}"))?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    axum::serve(listener, router(state, &config.http))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the HTTP server failed")?;
    tracing::info!(buffered = producer.buffered(), "draining the stream buffer");
    producer.close().await;
    if let Some(consumer) = embedded_consumer {
        consumer.stop().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Core data as the host uses it: the L1 cache over the backend (Redis when
/// configured, else in process), and the same backend as the embedded consumer's
/// place to count stored events.
struct CoreDataBackend {
    cache: CoreDataCache,
    updates: Arc<dyn CoreDataUpdates>,
}

impl CoreDataBackend {
    /// Builds the backend and starts refreshing L1 on every change it announces.
    fn start(config: &CacheConfig) -> Result<Self> {
        let (store, updates): (Arc<dyn CoreDataStore>, Arc<dyn CoreDataUpdates>) =
            match RedisCoreData::from_config(&config.redis)? {
                Some(redis) => {
                    let redis = Arc::new(redis);
                    (redis.clone(), redis)
                }
                None => {
                    let in_process = Arc::new(InProcessCoreData::new());
                    (in_process.clone(), in_process)
                }
            };
        let cache = CoreDataCache::new(store, config);
        tokio::spawn(follow_updates(cache.clone()));
        Ok(Self { cache, updates })
    }
}

/// Kinesis when a stream name is configured, else the embedded log under the data dir
/// (returned too, for the in-process consumer).
async fn stream_sink(config: &StreamConfig) -> Result<(Arc<dyn StreamSink>, Option<EmbeddedLog>)> {
    if let Some(stream_name) = &config.kinesis_stream_name {
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(5))
                    .build(),
            )
            .load()
            .await;
        let mut kinesis = aws_sdk_kinesis::config::Builder::from(&shared);
        if let Some(endpoint) = &config.kinesis_endpoint_url {
            kinesis = kinesis.endpoint_url(endpoint);
        }
        let client = aws_sdk_kinesis::Client::from_conf(kinesis.build());
        return Ok((
            Arc::new(KinesisSink::new(client, stream_name.clone())),
            None,
        ));
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let path = config.data_dir.join("stream.redb");
    let log = EmbeddedLog::open(&path)
        .with_context(|| format!("cannot open the embedded stream log {}", path.display()))?;
    Ok((Arc::new(EmbeddedSink::new(log.clone())), Some(log)))
}

/// The consumer running in the host process in embedded mode: it reads the embedded
/// log, runs the consumer chain and stores events in `DATA_DIR/events.redb`
/// (dead letters in `DATA_DIR/dead-letters.jsonl`), counting stored events in the
/// host's core-data backend (idempotently per message id).
struct EmbeddedConsumer {
    log: EmbeddedLog,
    consumer: Arc<Consumer>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl EmbeddedConsumer {
    fn start(
        config: &StreamConfig,
        pipeline: &PipelineFile,
        registry: &PluginRegistry,
        core_data: &CoreDataBackend,
        log: EmbeddedLog,
    ) -> Result<Self> {
        let chain =
            pipeline.build_chain(Side::Consumer, registry, Arc::new(core_data.cache.clone()))?;
        let store = EmbeddedStore::open(&config.data_dir.join("events.redb"))
            .context("cannot open the embedded event store")?;
        let dead_letters = JsonLinesDeadLetters::open(&config.data_dir.join("dead-letters.jsonl"))
            .context("cannot open the embedded dead-letter file")?;
        let consumer = Arc::new(Consumer::new(
            chain,
            Arc::new(store),
            Arc::new(dead_letters),
            core_data.updates.clone(),
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_embedded(log.clone(), consumer.clone(), async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            log,
            consumer,
            stop,
            task,
        })
    }

    /// Stops the loop, then consumes what is left in the log (for at most 10 s).
    async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the embedded consumer failed");
        }
        let options = EmbeddedOptions::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            match consume_batch(&self.log, &self.consumer, &options).await {
                Ok(report) if report.records == 0 => return,
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(%error, "cannot drain the embedded log");
                    return;
                }
            }
        }
    }
}

/// Resolves on SIGTERM (ECS stopping the task) or Ctrl-C.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => tracing::info!("Ctrl-C received; shutting down"),
        () = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
}
