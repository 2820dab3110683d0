//! A process's view of the registry: the chains of the current release, loaded and
//! swapped atomically when the pointer moves (announced, or found by polling).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use plugin_engine::{
    CompiledPlugin, CoreDataLookup, Grant, PipelineFile, PluginChain, PluginEngine, PluginRegistry,
    PluginSettings, PluginVersion, Side,
};
use tokio::sync::mpsc;

use crate::document::{Release, side_name};
use crate::error::RegistryError;
use crate::registry::{Publish, ReleaseRegistry, compile};

/// The release a process runs: its document, the pointer generation it was read at,
/// and the loaded chains of the sides this process runs.
pub struct ActiveRelease {
    /// The release document.
    pub release: Release,
    /// The pointer generation at which it became current here.
    pub generation: u64,
    host: Option<PluginChain>,
    consumer: Option<PluginChain>,
}

impl ActiveRelease {
    /// The release number.
    pub fn number(&self) -> u64 {
        self.release.number
    }

    /// The loaded chain of `side`, if this process runs that side.
    pub fn chain(&self, side: Side) -> Option<&PluginChain> {
        match side {
            Side::Host => self.host.as_ref(),
            Side::Consumer => self.consumer.as_ref(),
        }
    }
}

/// Follows the current release for one process: loads its chains (reusing compiled
/// plugins across releases), swaps them in atomically, and never goes back to an
/// older pointer generation than one it has used.
pub struct ReleaseRuntime {
    registry: ReleaseRegistry,
    engine: PluginEngine,
    core_data: Arc<dyn CoreDataLookup>,
    sides: Vec<Side>,
    compiled: Mutex<HashMap<(PluginVersion, BTreeSet<Grant>), CompiledPlugin>>,
    active: ArcSwap<ActiveRelease>,
    last_check: tokio::sync::Mutex<Instant>,
    last_error: Mutex<Option<String>>,
}

impl ReleaseRuntime {
    /// Loads the current release for `sides` (after seeding an empty registry from
    /// `seed`, when given).
    pub async fn start(
        registry: ReleaseRegistry,
        engine: PluginEngine,
        core_data: Arc<dyn CoreDataLookup>,
        sides: &[Side],
        seed: Option<&PipelineFile>,
    ) -> Result<Arc<Self>, RegistryError> {
        if let Some(pipeline) = seed {
            registry.seed(pipeline).await?;
        }
        let pointer = registry
            .store()
            .current()
            .await?
            .ok_or(RegistryError::Empty)?;
        let release = registry.store().release(pointer.release).await?;
        let loader = Loader {
            registry: &registry,
            engine: &engine,
            core_data: &core_data,
            compiled: &Mutex::default(),
        };
        let active = loader.load(release, pointer.generation, sides).await?;
        let compiled = loader
            .compiled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        tracing::info!(release = active.number(), "running release");
        Ok(Arc::new(Self {
            registry,
            engine,
            core_data,
            sides: sides.to_vec(),
            compiled: Mutex::new(compiled),
            active: ArcSwap::from_pointee(active),
            last_check: tokio::sync::Mutex::new(Instant::now()),
            last_error: Mutex::new(None),
        }))
    }

    /// The release new work runs on; work already started keeps the one it loaded.
    pub fn active(&self) -> Arc<ActiveRelease> {
        self.active.load_full()
    }

    /// The registry followed.
    pub fn registry(&self) -> &ReleaseRegistry {
        &self.registry
    }

    /// The engine plugins are compiled on.
    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    /// Why the last check of the registry failed, while it keeps failing.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Publishes `candidate` fleet-wide (see [`ReleaseRegistry::publish`]) and swaps this
    /// process to the new release at once, without compiling the candidate again.
    pub async fn publish(&self, candidate: Publish<'_>) -> Result<Release, RegistryError> {
        let (release, compiled) = self.registry.publish(&self.engine, candidate).await?;
        let plugin = &release.side(candidate.side).plugins[candidate.plugin];
        self.compiled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((plugin.version, plugin.grants.clone()), compiled);
        self.refresh().await?;
        Ok(release)
    }

    /// Rolls the fleet back (see [`ReleaseRegistry::rollback`]) and swaps this process.
    pub async fn rollback(&self, to: Option<u64>) -> Result<Release, RegistryError> {
        let release = self.registry.rollback(to).await?;
        self.refresh().await?;
        Ok(release)
    }

    /// Reads the pointer and, if it moved to a newer generation, loads and swaps in its
    /// release; returns whether the active release changed. A release that cannot be
    /// read or loaded leaves the running one in place and is reported here.
    pub async fn refresh(&self) -> Result<bool, RegistryError> {
        let mut last_check = self.last_check.lock().await;
        let result = self.check().await;
        *last_check = Instant::now();
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            result.as_ref().err().map(ToString::to_string);
        result
    }

    /// [`ReleaseRuntime::refresh`] unless the registry was checked within `max_age`
    /// (the consumer checks per batch, cheaply); `None` when it was not checked.
    pub async fn refresh_if_older_than(
        &self,
        max_age: Duration,
    ) -> Result<Option<bool>, RegistryError> {
        if self.last_check.lock().await.elapsed() < max_age {
            return Ok(None);
        }
        self.refresh().await.map(Some)
    }

    /// Follows the registry until `announcements` and the process end: checks on every
    /// announcement and every `poll`, and records a heartbeat for `instance` each time.
    pub async fn follow(
        self: Arc<Self>,
        mut announcements: Option<mpsc::Receiver<String>>,
        poll: Duration,
        instance: String,
    ) {
        loop {
            let announced = async {
                match announcements.as_mut() {
                    Some(receiver) => receiver.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                message = announced => {
                    if message.is_none() {
                        announcements = None;
                        continue;
                    }
                }
                () = tokio::time::sleep(poll) => {}
            }
            if let Err(error) = self.refresh().await {
                tracing::warn!(%error, "cannot follow the plugin registry; keeping the running release");
            }
            self.heartbeat(&instance).await;
        }
    }

    /// Records which release this process runs, for `plugin status`.
    pub async fn heartbeat(&self, instance: &str) {
        let release = self.active().number();
        for side in &self.sides {
            if let Err(error) = self.registry.heartbeat(*side, instance, release).await {
                tracing::debug!(%error, side = side_name(*side), "heartbeat not recorded");
            }
        }
    }

    async fn check(&self) -> Result<bool, RegistryError> {
        let Some(pointer) = self.registry.store().current().await? else {
            return Err(RegistryError::Empty);
        };
        let active = self.active();
        if pointer.generation <= active.generation {
            return Ok(false);
        }
        let release = self.registry.store().release(pointer.release).await?;
        let loader = Loader {
            registry: &self.registry,
            engine: &self.engine,
            core_data: &self.core_data,
            compiled: &self.compiled,
        };
        let loaded = loader
            .load(release, pointer.generation, &self.sides)
            .await?;
        tracing::info!(
            from = active.number(),
            to = loaded.number(),
            generation = loaded.generation,
            "swapped to release"
        );
        self.active.store(Arc::new(loaded));
        Ok(true)
    }
}

/// A name for this process in heartbeats: the Lambda instance's log stream, the ECS
/// task, or the host name and process id.
pub fn instance_id() -> String {
    let pid = std::process::id();
    if let Ok(stream) = std::env::var("AWS_LAMBDA_LOG_STREAM_NAME") {
        return stream.rsplit(']').next().unwrap_or(&stream).to_owned();
    }
    if let Ok(uri) = std::env::var("ECS_CONTAINER_METADATA_URI_V4")
        && let Some(task) = uri.rsplit('/').next()
    {
        return task.to_owned();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}-{pid}")
}

/// Builds the chains of a release, compiling only components not compiled before.
struct Loader<'a> {
    registry: &'a ReleaseRegistry,
    engine: &'a PluginEngine,
    core_data: &'a Arc<dyn CoreDataLookup>,
    compiled: &'a Mutex<HashMap<(PluginVersion, BTreeSet<Grant>), CompiledPlugin>>,
}

impl Loader<'_> {
    async fn load(
        &self,
        release: Release,
        generation: u64,
        sides: &[Side],
    ) -> Result<ActiveRelease, RegistryError> {
        let mut active = ActiveRelease {
            release,
            generation,
            host: None,
            consumer: None,
        };
        for side in sides {
            let chain = self.chain(&active.release, *side).await?;
            if let Err(outcome) = chain.warm_up().await {
                return Err(RegistryError::Corrupt {
                    what: format!("release {}", active.release.number),
                    reason: format!("a {} plugin cannot start: {outcome:?}", side_name(*side)),
                });
            }
            match side {
                Side::Host => active.host = Some(chain),
                Side::Consumer => active.consumer = Some(chain),
            }
        }
        Ok(active)
    }

    async fn chain(&self, release: &Release, side: Side) -> Result<PluginChain, RegistryError> {
        let released = release.side(side);
        let registry = PluginRegistry::new(self.engine.clone());
        let mut steps = Vec::with_capacity(released.chain.len());
        for name in &released.chain {
            let plugin = released
                .plugins
                .get(name)
                .ok_or_else(|| RegistryError::Corrupt {
                    what: format!("release {}", release.number),
                    reason: format!(
                        "the {} chain names {name}, which it does not pin",
                        side_name(side)
                    ),
                })?;
            let settings = plugin.settings();
            let compiled = self
                .compiled(name, plugin.version, &settings.grants)
                .await?;
            steps.push(registry.register_compiled(name, settings, compiled)?);
        }
        Ok(PluginChain::new(
            self.engine.clone(),
            steps,
            self.core_data.clone(),
        ))
    }

    async fn compiled(
        &self,
        name: &str,
        version: PluginVersion,
        grants: &BTreeSet<Grant>,
    ) -> Result<CompiledPlugin, RegistryError> {
        let key = (version, grants.clone());
        if let Some(compiled) = self
            .compiled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(compiled.clone());
        }
        let bytes = self.registry.store().component(version).await?;
        let settings = PluginSettings {
            grants: grants.clone(),
            ..PluginSettings::default()
        };
        let compiled = compile(self.engine, name, &bytes, &settings).await?;
        self.compiled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, compiled.clone());
        Ok(compiled)
    }
}
