//! `adtrack-host serve`: wires the stages together, serves HTTP, shuts down gracefully.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use adtrack_consumer::Consumer;
use adtrack_consumer::dead_letter::JsonLinesDeadLetters;
use adtrack_consumer::drivers::embedded::{
    DEFAULT_READER, EmbeddedOptions, consume_batch, run_embedded_with,
};
use adtrack_consumer::releases::RegistryChains;
use adtrack_consumer::store::EmbeddedStore;
use anyhow::{Context, Result};
use contract::redis_names::RELEASES_CHANNEL;
use core_data::{CoreDataStore, CoreDataUpdates, InProcessCoreData, RedisCoreData};
use embedded_log::EmbeddedLog;
use plugin_engine::{EngineConfig, PipelineFile, PluginEngine, Side};
use releases::{LocalStore, ReleaseRuntime};
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout_at};

use crate::announce::RedisAnnouncer;
use crate::cache::{CacheConfig, CoreDataCache, follow_updates};
use crate::config::ServeConfig;
use crate::http::{AppState, router};
use crate::stream::{
    EmbeddedSink, KinesisSink, ProducerSettings, SpillFile, StreamProducer, StreamSink,
    kinesis_client,
};

/// Runs the host until SIGTERM or Ctrl-C, then stops accepting requests, finishes the
/// ones in flight and delivers the buffered records, within `SHUTDOWN_DRAIN_SECS` of
/// the signal; what is left then is logged.
pub async fn serve(config: ServeConfig) -> Result<()> {
    config.validate()?;
    tracing::info!(?config, "starting adtrack-host");
    if config.http.admin_token.is_none() {
        tracing::warn!(
            "ADMIN_TOKEN is not set: the admin API is off and GET /cache/fill and /cache/purge \
             are open to anyone who reaches this host"
        );
    }
    let recorders = crate::recorders::install(&config.metrics)?;
    let metrics = recorders.prometheus.clone();

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let core_data = CoreDataBackend::start(&config.cache)?;
    let (sink, embedded_log) = stream_sink(&config).await?;
    // The embedded log has one writer at a time: a second batch in flight would only
    // wait for the lock and commit fewer records. With one, each commit takes all
    // that arrived during the previous one (group commit).
    let max_in_flight_batches = match embedded_log {
        Some(_) => 1,
        None => ProducerSettings::default().max_in_flight_batches,
    };
    let releases = start_releases(&config, &core_data, embedded_log.is_some()).await?;
    let embedded_consumer = match embedded_log {
        Some(log) => Some(EmbeddedConsumer::start(
            &config.data_dir,
            &releases,
            &core_data,
            log,
            EmbeddedOptions {
                keep_handled: config.stream.embedded_log_keep_records,
                batch_size: EMBEDDED_CONSUMER_BATCH,
                ..EmbeddedOptions::default()
            },
        )?),
        None => None,
    };
    let producer = StreamProducer::start(
        sink,
        ProducerSettings {
            buffer_records: config.stream.stream_buffer_records,
            max_in_flight_batches,
            linger: config.stream.linger(),
            spill: Some(Arc::new(SpillFile::new(
                config.data_dir.join("stream-spill.jsonl"),
            ))),
            ..ProducerSettings::default()
        },
    );
    producer
        .resend_spilled()
        .await
        .context("cannot read the stream spill file")?;
    let state = AppState {
        releases,
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
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = router(Arc::new(state), &config.http);
    let mut server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );
    tokio::select! {
        served = &mut server => {
            served.context("the HTTP server task failed")??;
            anyhow::bail!("the HTTP server stopped on its own");
        }
        () = shutdown_signal() => {}
    }
    let deadline = Instant::now() + config.shutdown_drain();
    let _ = stop.send(());
    match timeout_at(deadline, &mut server).await {
        Ok(served) => served.context("the HTTP server task failed")??,
        Err(_) => {
            server.abort();
            tracing::warn!(
                "shutdown drain deadline reached: requests still in flight were cut off"
            );
        }
    }
    drain(deadline, &producer, embedded_consumer).await;
    tracing::info!("stopped");
    Ok(())
}

/// Delivers the buffered records, then lets the embedded consumer catch up, both before
/// `deadline`; logs what is left when time runs out.
async fn drain(
    deadline: Instant,
    producer: &StreamProducer,
    embedded_consumer: Option<EmbeddedConsumer>,
) {
    tracing::info!(buffered = producer.buffered(), "draining the stream buffer");
    if timeout_at(deadline, producer.close()).await.is_err() {
        tracing::error!(
            undelivered = producer.buffered(),
            "shutdown drain deadline reached: buffered records were not delivered"
        );
        return;
    }
    if let Some(consumer) = embedded_consumer
        && timeout_at(deadline, consumer.stop()).await.is_err()
    {
        tracing::warn!(
            "shutdown drain deadline reached: the embedded consumer resumes from the log at \
             the next start"
        );
    }
}

/// Loads the registry's current release (seeding an empty registry from the pipeline
/// file) for the host side, and the consumer side when the consumer runs in process,
/// then follows the registry: announcements on Redis, and a poll in case one is missed.
async fn start_releases(
    config: &ServeConfig,
    core_data: &CoreDataBackend,
    embedded_consumer: bool,
) -> Result<Arc<ReleaseRuntime>> {
    let pipeline = PipelineFile::load(&config.plugins.pipeline)?;
    let engine = PluginEngine::new(EngineConfig {
        packaged_artifact_dir: Some(pipeline.packaged_artifact_dir()),
        artifact_cache_dir: config.plugins.plugin_cache_dir.clone(),
        instance_wait: config.plugins.instance_wait(),
        compile_timeout: config.plugins.compile_timeout(),
        reuse: config.plugins.instance_reuse(),
        perf_map: config.plugins.perf_map,
        ..serving_engine(&pipeline)
    })?;
    let registry = config.plugins.registry.open(&config.data_dir).await?;
    let sides: &[Side] = if embedded_consumer {
        &[Side::Host, Side::Consumer]
    } else {
        &[Side::Host]
    };
    let lookup = Arc::new(core_data.cache.clone());
    let mirror = LocalStore::open(&config.data_dir.join("release-cache"))?;
    let releases = ReleaseRuntime::start(
        registry,
        engine,
        lookup,
        sides,
        Some(&pipeline),
        Some(mirror),
    )
    .await
    .context("cannot load the current plugin release")?;
    let instance = releases::instance_id();
    releases.heartbeat(&instance).await;
    let announcements = core_data
        .redis
        .as_ref()
        .map(|redis| redis.follow_channel(RELEASES_CHANNEL));
    let poll = config.plugins.registry.poll();
    if let Some(redis) = &core_data.redis {
        releases.announce_with(Arc::new(RedisAnnouncer(redis.clone())));
    }
    tokio::spawn(releases.clone().follow(announcements, poll, instance));
    Ok(releases)
}

/// The parts of the serving engine's configuration that its compiled code depends on:
/// `pipeline precompile` builds the image's artifacts with exactly these.
pub fn serving_engine(pipeline: &PipelineFile) -> EngineConfig {
    EngineConfig {
        fuel_metering: pipeline.needs_fuel(),
        ..EngineConfig::default()
    }
}

/// Core data as the host uses it: the L1 cache over the backend (Redis when
/// configured, else in process), and the same backend as the embedded consumer's
/// place to count stored events.
struct CoreDataBackend {
    cache: CoreDataCache,
    updates: Arc<dyn CoreDataUpdates>,
    /// The Redis backend, when configured (also the fleet's announcement channel).
    redis: Option<RedisCoreData>,
}

impl CoreDataBackend {
    /// Builds the backend and starts refreshing L1 on every change it announces.
    fn start(config: &CacheConfig) -> Result<Self> {
        let redis = RedisCoreData::from_config(&config.redis)?;
        let (store, updates): (Arc<dyn CoreDataStore>, Arc<dyn CoreDataUpdates>) = match &redis {
            Some(redis) => {
                let redis = Arc::new(redis.clone());
                (redis.clone(), redis)
            }
            None => {
                let in_process = Arc::new(InProcessCoreData::new());
                (in_process.clone(), in_process)
            }
        };
        let cache = CoreDataCache::new(store, config);
        tokio::spawn(follow_updates(cache.clone()));
        Ok(Self {
            cache,
            updates,
            redis,
        })
    }
}

/// Kinesis when a stream name is configured, else the embedded log under the data dir
/// (returned too, for the in-process consumer).
async fn stream_sink(config: &ServeConfig) -> Result<(Arc<dyn StreamSink>, Option<EmbeddedLog>)> {
    let stream = &config.stream;
    if let Some(stream_name) = &stream.kinesis_stream_name {
        let client = kinesis_client(stream.kinesis_endpoint_url.as_deref()).await;
        return Ok((
            Arc::new(KinesisSink::new(client, stream_name.clone())),
            None,
        ));
    }
    let path = config.data_dir.join(STREAM_LOG);
    let log = EmbeddedLog::open(&path)
        .with_context(|| format!("cannot open the embedded stream log {}", path.display()))?;
    let legacy = config.data_dir.join(LEGACY_STREAM_LOG);
    if legacy.exists() {
        let imported = log
            .import_redb_log(&legacy, DEFAULT_READER)
            .with_context(|| {
                format!("cannot import the earlier stream log {}", legacy.display())
            })?;
        tracing::info!(imported, from = %legacy.display(), "records the consumer had not handled moved into the segment log");
    }
    Ok((Arc::new(EmbeddedSink::new(log.clone())), Some(log)))
}

/// The embedded stream log's directory under the data dir.
const STREAM_LOG: &str = "stream-log";
/// Where hosts before the segment log kept it (a redb file), imported once at start.
const LEGACY_STREAM_LOG: &str = "stream.redb";

/// Most records per batch of the in-process consumer: each batch costs two commits (the
/// events, then the checkpoint), so under load larger batches leave more CPU for requests.
const EMBEDDED_CONSUMER_BATCH: usize = 500;

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
        data_dir: &Path,
        releases: &Arc<ReleaseRuntime>,
        core_data: &CoreDataBackend,
        log: EmbeddedLog,
        options: EmbeddedOptions,
    ) -> Result<Self> {
        // The host's follower keeps the release current; batches never check themselves.
        let chains = RegistryChains::new(releases.clone(), Duration::MAX)?;
        let store = EmbeddedStore::open(&data_dir.join("events.redb"))
            .context("cannot open the embedded event store")?;
        let dead_letters = JsonLinesDeadLetters::open(&data_dir.join("dead-letters.jsonl"))
            .context("cannot open the embedded dead-letter file")?;
        let consumer = Arc::new(Consumer::new(
            Arc::new(chains),
            Arc::new(store),
            Arc::new(dead_letters),
            core_data.updates.clone(),
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_embedded_with(
            log.clone(),
            consumer.clone(),
            options,
            async move {
                let _ = stopped.await;
            },
        ));
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
        let options = EmbeddedOptions {
            batch_size: EMBEDDED_CONSUMER_BATCH,
            ..EmbeddedOptions::default()
        };
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
