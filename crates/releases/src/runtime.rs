//! A process's view of the registry: the chains of the current release, loaded and
//! swapped atomically when the pointer moves (announced, or found by polling).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use plugin_engine::{
    CompiledPlugin, CoreDataLookup, Grant, PipelineFile, PluginChain, PluginEngine, PluginRegistry,
    PluginSettings, PluginVersion, Side,
};
use retry_policy::Classify;
use tokio::sync::mpsc;

use crate::document::{Candidate, Release, side_name};
use crate::error::RegistryError;
use crate::local::LocalStore;
use crate::registry::{Publish, ReleaseRegistry, compile};
use crate::routing::ReleaseChain;
use crate::store::RegistryStore;

/// How often a process judges its running canaries.
const CANARY_CHECK: Duration = Duration::from_secs(1);

/// The release a process runs: its document, the pointer generation it was read at,
/// and the loaded chains of the sides this process runs.
pub struct ActiveRelease {
    /// The release document.
    pub release: Release,
    /// The pointer generation at which it became current here.
    pub generation: u64,
    host: Option<ReleaseChain>,
    consumer: Option<ReleaseChain>,
}

/// Tells the fleet a new release is current (Redis in the host); best effort, since every
/// process also polls.
#[async_trait::async_trait]
pub trait Announcer: Send + Sync {
    /// Announces that release `number` is current.
    async fn announce(&self, number: u64);
}

impl ActiveRelease {
    /// The release number.
    pub fn number(&self) -> u64 {
        self.release.number
    }

    /// The loaded chain of `side`, if this process runs that side.
    pub fn chain(&self, side: Side) -> Option<&ReleaseChain> {
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
    announcer: OnceLock<Arc<dyn Announcer>>,
    mirror: Option<LocalStore>,
}

impl ReleaseRuntime {
    /// Loads the current release for `sides` (after seeding an empty registry from
    /// `seed`, when given). Every release loaded is also kept in `mirror`, a local
    /// directory: when the registry cannot be reached at start, the process starts on the
    /// release it ran last (reported until the registry answers again); with no mirrored
    /// release it fails with the registry's error.
    pub async fn start(
        registry: ReleaseRegistry,
        engine: PluginEngine,
        core_data: Arc<dyn CoreDataLookup>,
        sides: &[Side],
        seed: Option<&PipelineFile>,
        mirror: Option<LocalStore>,
    ) -> Result<Arc<Self>, RegistryError> {
        let (source, release, generation, unreachable) = match current_release(&registry, seed)
            .await
        {
            Ok((release, generation)) => (registry.clone(), release, generation, None),
            Err(error) if error.kind().is_retryable() => {
                let Some(mirror) = &mirror else {
                    return Err(error);
                };
                let mirrored = ReleaseRegistry::new(Arc::new(mirror.clone()));
                let Some(release) = mirrored.current().await? else {
                    return Err(error);
                };
                tracing::warn!(%error, release = release.number, "the plugin registry is unreachable; starting on the last release this process ran");
                // Generation 0: whatever the registry says once it answers is newer.
                (mirrored, release, 0, Some(error.to_string()))
            }
            Err(error) => return Err(error),
        };
        let loader = Loader {
            registry: &source,
            engine: &engine,
            core_data: &core_data,
            compiled: &Mutex::default(),
            mirror: mirror.as_ref(),
        };
        let active = loader.load(release, generation, sides).await?;
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
            last_error: Mutex::new(unreachable),
            announcer: OnceLock::new(),
            mirror,
        }))
    }

    /// Announces the releases this process makes current (a publish, rollback, promotion
    /// or abort through it); set once, after start.
    pub fn announce_with(&self, announcer: Arc<dyn Announcer>) {
        let _ = self.announcer.set(announcer);
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
        let side = release.side(candidate.side);
        let pinned = match &side.candidate {
            Some(tried) if candidate.trial.is_some() => &tried.pinned,
            _ => &side.plugins[candidate.plugin],
        };
        if let Some(mirror) = &self.mirror
            && let Err(error) = mirror
                .put_component(pinned.version, candidate.component)
                .await
        {
            tracing::warn!(%error, "cannot keep a component in the local release mirror");
        }
        // The compiled candidate is reused under its own version, not compiled again.
        if pinned.version == compiled.version() {
            self.compiled
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert((pinned.version, pinned.grants.clone()), compiled);
        }
        self.made_current(&release).await?;
        Ok(release)
    }

    /// Rolls the fleet back (see [`ReleaseRegistry::rollback`]) and swaps this process.
    pub async fn rollback(&self, to: Option<u64>) -> Result<Release, RegistryError> {
        let release = self.registry.rollback(to).await?;
        self.made_current(&release).await?;
        Ok(release)
    }

    /// Makes `side`'s candidate active fleet-wide (see [`ReleaseRegistry::promote`]).
    pub async fn promote(&self, side: Side) -> Result<Release, RegistryError> {
        let release = self.registry.promote(side).await?;
        self.made_current(&release).await?;
        Ok(release)
    }

    /// Drops `side`'s candidate fleet-wide (see [`ReleaseRegistry::abort`]).
    pub async fn abort(&self, side: Side, reason: &str) -> Result<Release, RegistryError> {
        let release = self.registry.abort(side, None, reason).await?;
        self.made_current(&release).await?;
        Ok(release)
    }

    /// After this process made `release` current: swaps to it here and announces it to
    /// the fleet (every other process also finds it at its next poll).
    async fn made_current(&self, release: &Release) -> Result<(), RegistryError> {
        let swapped = self.refresh().await;
        if let Some(announcer) = self.announcer.get() {
            announcer.announce(release.number).await;
        }
        swapped.map(drop)
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

    /// Follows the registry for the life of the process: checks on every announcement
    /// and every `poll`, judges running canaries every second (aborting a failing one
    /// fleet-wide and announcing it), and records a heartbeat for `instance` after each
    /// check.
    pub async fn follow(
        self: Arc<Self>,
        mut announcements: Option<mpsc::Receiver<String>>,
        poll: Duration,
        instance: String,
    ) {
        let tick = poll.min(CANARY_CHECK);
        let mut last_poll = Instant::now();
        loop {
            let announced = async {
                match announcements.as_mut() {
                    Some(receiver) => receiver.recv().await,
                    None => std::future::pending().await,
                }
            };
            let mut check = false;
            tokio::select! {
                message = announced => {
                    if message.is_none() {
                        announcements = None;
                        continue;
                    }
                    check = true;
                }
                () = tokio::time::sleep(tick) => {}
            }
            self.abort_failing_canaries().await;
            if check || last_poll.elapsed() >= poll {
                last_poll = Instant::now();
                if let Err(error) = self.refresh().await {
                    tracing::warn!(%error, "cannot follow the plugin registry; keeping the running release");
                }
                self.heartbeat(&instance).await;
            }
        }
    }

    /// Aborts, fleet-wide, a canary of this process that fails more than its policy
    /// allows, and announces the release that removed it (returned). Another process may
    /// have aborted it first: then nothing happens here and the next check swaps to that
    /// release.
    pub async fn abort_failing_canaries(&self) -> Option<u64> {
        let active = self.active();
        for side in &self.sides {
            let Some(chain) = active.chain(*side) else {
                continue;
            };
            let (Some(reason), Some(report)) = (chain.canary_verdict(), chain.report("")) else {
                continue;
            };
            match self
                .registry
                .abort(*side, Some(report.version), &reason)
                .await
            {
                Ok(release) => {
                    tracing::warn!(release = release.number, %reason, "canary aborted");
                    if let Err(error) = self.made_current(&release).await {
                        tracing::warn!(%error, "cannot load the release without the canary");
                    }
                    return Some(release.number);
                }
                Err(RegistryError::NoCandidate { .. } | RegistryError::Conflict(_)) => {}
                Err(error) => tracing::warn!(%error, "cannot abort a failing canary"),
            }
        }
        None
    }

    /// Records which release this process runs, and its candidates' numbers, for
    /// `plugin status`.
    pub async fn heartbeat(&self, instance: &str) {
        let active = self.active();
        for side in &self.sides {
            let candidates = active
                .chain(*side)
                .and_then(|chain| chain.report(side_name(*side)))
                .into_iter()
                .collect();
            if let Err(error) = self
                .registry
                .heartbeat(*side, instance, active.number(), candidates)
                .await
            {
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
            mirror: self.mirror.as_ref(),
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
    mirror: Option<&'a LocalStore>,
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
        if let Some(mirror) = self.mirror {
            keep_in_mirror(mirror, &active.release).await;
        }
        Ok(active)
    }

    /// The release chain of `side`: the active chain, and the candidate's beside it.
    async fn chain(&self, release: &Release, side: Side) -> Result<ReleaseChain, RegistryError> {
        let released = release.side(side);
        let active = self.plugin_chain(release, side, None).await?;
        let Some(candidate) = &released.candidate else {
            return Ok(ReleaseChain::fixed(active));
        };
        let corrupt = || RegistryError::Corrupt {
            what: format!("release {}", release.number),
            reason: format!(
                "the {} candidate replaces {}, which the chain does not pin",
                side_name(side),
                candidate.plugin
            ),
        };
        let active_version = released
            .plugins
            .get(&candidate.plugin)
            .ok_or_else(corrupt)?
            .version;
        let tried = self.plugin_chain(release, side, Some(candidate)).await?;
        Ok(ReleaseChain::with_trial(
            active,
            candidate.clone(),
            active_version,
            tried,
        ))
    }

    /// The plugin chain of `side`, with `candidate` in place of its plugin when given.
    async fn plugin_chain(
        &self,
        release: &Release,
        side: Side,
        candidate: Option<&Candidate>,
    ) -> Result<PluginChain, RegistryError> {
        let released = release.side(side);
        let registry = PluginRegistry::new(self.engine.clone());
        let mut steps = Vec::with_capacity(released.chain.len());
        for name in &released.chain {
            let plugin = match candidate {
                Some(candidate) if &candidate.plugin == name => Some(&candidate.pinned),
                _ => released.plugins.get(name),
            };
            let plugin = plugin.ok_or_else(|| RegistryError::Corrupt {
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
        if let Some(mirror) = self.mirror
            && let Err(error) = mirror.put_component(version, &bytes).await
        {
            tracing::warn!(%error, "cannot keep a component in the local release mirror");
        }
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

/// The current release of `registry` (seeded from `seed` when empty) and its generation.
async fn current_release(
    registry: &ReleaseRegistry,
    seed: Option<&PipelineFile>,
) -> Result<(Release, u64), RegistryError> {
    if let Some(pipeline) = seed {
        registry.seed(pipeline).await?;
    }
    let pointer = registry
        .store()
        .current()
        .await?
        .ok_or(RegistryError::Empty)?;
    let release = registry.store().release(pointer.release).await?;
    Ok((release, pointer.generation))
}

/// Makes `release` the current one of the local mirror (its components are already there).
async fn keep_in_mirror(mirror: &LocalStore, release: &Release) {
    let kept = async {
        match mirror.create_release(release).await {
            Ok(()) | Err(RegistryError::Conflict(_)) => {}
            Err(error) => return Err(error),
        }
        let current = mirror.current().await?;
        mirror
            .move_current(current.as_ref(), release.number)
            .await?;
        Ok::<(), RegistryError>(())
    };
    if let Err(error) = kept.await {
        tracing::warn!(%error, release = release.number, "cannot keep the release in the local mirror");
    }
}
