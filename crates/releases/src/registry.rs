//! The registry's operations: seed, publish, roll back, list, status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use plugin_engine::{CompiledPlugin, PipelineFile, PluginEngine, PluginSettings, Side};

use crate::document::{
    AbortPolicy, Candidate, CandidateMode, CandidateReport, Heartbeat, Release, ReleasedPlugin,
    SideRelease, now_ms, side_name,
};
use crate::error::RegistryError;
use crate::store::{Pointer, RegistryStore};

/// A candidate component for one plugin of one side.
#[derive(Clone, Copy, Debug)]
pub struct Publish<'a> {
    /// Which chain it belongs to.
    pub side: Side,
    /// The plugin name.
    pub plugin: &'a str,
    /// The component bytes.
    pub component: &'a [u8],
    /// Add the plugin at the end of the chain if the release does not have it.
    pub new: bool,
    /// Try it as a canary or a shadow beside the active version instead of replacing it.
    pub trial: Option<TrialSpec>,
}

/// How a published candidate is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrialSpec {
    /// Canary or shadow.
    pub mode: CandidateMode,
    /// Share of events, 1 to 100.
    pub percent: u8,
    /// When a canary is aborted automatically.
    pub abort: AbortPolicy,
}

/// Which release the fleet runs, from the heartbeats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The current release, if any.
    pub current: Option<u64>,
    /// Live host instances per release they run.
    pub hosts: BTreeMap<u64, usize>,
    /// Live consumer instances per release they run.
    pub consumers: BTreeMap<u64, usize>,
    /// The candidates the live instances try, with their numbers added up.
    pub candidates: Vec<CandidateReport>,
}

impl Status {
    /// `host 3/3 instances on release 7, consumer 1/1 on release 7`.
    pub fn summary(&self) -> String {
        let Some(current) = self.current else {
            return "no release is current".to_owned();
        };
        let side = |name: &str, counts: &BTreeMap<u64, usize>| {
            let total: usize = counts.values().sum();
            let on_current = counts.get(&current).copied().unwrap_or_default();
            format!("{name} {on_current}/{total} instances on release {current}")
        };
        let mut summary = format!(
            "current release {current}; {}, {}",
            side("host", &self.hosts),
            side("consumer", &self.consumers)
        );
        for candidate in &self.candidates {
            summary.push_str(&format!(
                "\n{} {} {} on {}: {}/{} failed (active {}/{})",
                mode_name(candidate.mode),
                candidate.plugin,
                candidate.version.short(),
                candidate.side,
                candidate.candidate_failures,
                candidate.candidate_calls,
                candidate.active_failures,
                candidate.active_calls
            ));
            if candidate.mode == CandidateMode::Shadow {
                summary.push_str(&format!(
                    ", {} differing outcomes, {} failed where the active version succeeded",
                    candidate.mismatches, candidate.failed_where_active_succeeded
                ));
                for sample in &candidate.samples {
                    summary.push_str(&format!(
                        "\n  {}: {} | {}",
                        sample.event_id, sample.active, sample.candidate
                    ));
                }
            }
        }
        summary
    }
}

/// The fleet's plugin registry over a [`RegistryStore`].
#[derive(Clone)]
pub struct ReleaseRegistry {
    store: Arc<dyn RegistryStore>,
}

impl ReleaseRegistry {
    /// The registry kept in `store`.
    pub fn new(store: Arc<dyn RegistryStore>) -> Self {
        Self { store }
    }

    /// The store behind it.
    pub fn store(&self) -> &Arc<dyn RegistryStore> {
        &self.store
    }

    /// The current release, `None` while the registry is empty.
    pub async fn current(&self) -> Result<Option<Release>, RegistryError> {
        match self.store.current().await? {
            Some(pointer) => self.store.release(pointer.release).await.map(Some),
            None => Ok(None),
        }
    }

    /// Makes the pipeline file the first release when the registry is empty (its
    /// components are uploaded); returns the current release either way.
    pub async fn seed(&self, pipeline: &PipelineFile) -> Result<Release, RegistryError> {
        if let Some(current) = self.current().await? {
            return Ok(current);
        }
        let mut release = Release {
            number: self.next_number().await?,
            created_ms: now_ms(),
            summary: format!("seeded from {}", pipeline.path.display()),
            host: SideRelease::default(),
            consumer: SideRelease::default(),
        };
        for side in [Side::Host, Side::Consumer] {
            let chain = pipeline.chain_names(side).to_vec();
            for name in &chain {
                let declaration = &pipeline.plugins[name];
                let bytes = tokio::fs::read(&declaration.path).await.map_err(|error| {
                    RegistryError::Refused(plugin_engine::EngineError::Read {
                        path: declaration.path.clone(),
                        source: error,
                    })
                })?;
                let version = plugin_engine::PluginVersion::of(&bytes);
                self.store.put_component(version, &bytes).await?;
                release.side_mut(side).plugins.insert(
                    name.clone(),
                    ReleasedPlugin::new(version, &declaration.settings),
                );
            }
            release.side_mut(side).chain = chain;
        }
        match self.install(None, release).await {
            Ok(release) => Ok(release),
            // Another process seeded first: its release is current.
            Err(RegistryError::Conflict(_)) => self.current().await?.ok_or(RegistryError::Empty),
            Err(error) => Err(error),
        }
    }

    /// Publishes `candidate` as the next release: checks it against the world and the
    /// plugin's grants on `engine` (a refused component is never stored), stores it,
    /// writes the release and moves the pointer by compare-and-set.
    /// Returns the release and the compiled candidate (so the publishing process need
    /// not compile it again).
    pub async fn publish(
        &self,
        engine: &PluginEngine,
        candidate: Publish<'_>,
    ) -> Result<(Release, CompiledPlugin), RegistryError> {
        let pointer = self.store.current().await?.ok_or(RegistryError::Empty)?;
        let current = self.store.release(pointer.release).await?;
        let side = current.side(candidate.side);
        let settings = match side.plugins.get(candidate.plugin) {
            Some(plugin) => plugin.settings(),
            None if candidate.new => PluginSettings::default(),
            None => {
                return Err(RegistryError::UnknownPlugin {
                    name: candidate.plugin.to_owned(),
                    side: side_name(candidate.side),
                    release: current.number,
                });
            }
        };
        engine.check_limits(candidate.plugin, &settings.limits)?;
        let compiled = compile(engine, candidate.plugin, candidate.component, &settings).await?;
        let version = compiled.version();
        self.store
            .put_component(version, candidate.component)
            .await?;
        let mut next = current.clone();
        next.number = self.next_number().await?;
        next.created_ms = now_ms();
        let side_label = side_name(candidate.side);
        let side = next.side_mut(candidate.side);
        let pinned = ReleasedPlugin::new(version, &settings);
        let summary;
        match candidate.trial {
            Some(trial) => {
                if !side.plugins.contains_key(candidate.plugin) {
                    return Err(RegistryError::UnknownPlugin {
                        name: candidate.plugin.to_owned(),
                        side: side_label,
                        release: current.number,
                    });
                }
                summary = format!(
                    "{} {} {} at {} % on {side_label}",
                    mode_name(trial.mode),
                    candidate.plugin,
                    version.short(),
                    trial.percent
                );
                side.candidate = Some(Candidate {
                    plugin: candidate.plugin.to_owned(),
                    pinned,
                    mode: trial.mode,
                    percent: trial.percent.clamp(1, 100),
                    abort: trial.abort,
                });
            }
            None => {
                summary = format!(
                    "publish {} {} on {side_label}",
                    candidate.plugin,
                    version.short()
                );
                if !side.chain.iter().any(|name| name == candidate.plugin) {
                    side.chain.push(candidate.plugin.to_owned());
                }
                if side
                    .candidate
                    .as_ref()
                    .is_some_and(|tried| tried.plugin == candidate.plugin)
                {
                    side.candidate = None;
                }
                side.plugins.insert(candidate.plugin.to_owned(), pinned);
            }
        }
        next.summary = summary;
        let release = self.install(Some(&pointer), next).await?;
        Ok((release, compiled))
    }

    /// Makes `side`'s candidate the active version of its plugin, fleet-wide.
    pub async fn promote(&self, side: Side) -> Result<Release, RegistryError> {
        self.end_trial(side, None, None).await
    }

    /// Removes `side`'s candidate (if it is still `version`, when given), fleet-wide;
    /// `reason` goes into the release's summary.
    pub async fn abort(
        &self,
        side: Side,
        version: Option<plugin_engine::PluginVersion>,
        reason: &str,
    ) -> Result<Release, RegistryError> {
        self.end_trial(side, version, Some(reason)).await
    }

    /// Promotes (`reason` = `None`) or aborts `side`'s candidate.
    async fn end_trial(
        &self,
        side: Side,
        version: Option<plugin_engine::PluginVersion>,
        abort_reason: Option<&str>,
    ) -> Result<Release, RegistryError> {
        let pointer = self.store.current().await?.ok_or(RegistryError::Empty)?;
        let current = self.store.release(pointer.release).await?;
        let side_label = side_name(side);
        let candidate = current
            .side(side)
            .candidate
            .clone()
            .filter(|candidate| version.is_none_or(|version| candidate.pinned.version == version))
            .ok_or_else(|| RegistryError::NoCandidate {
                side: side_label,
                release: current.number,
            })?;
        let mut next = current.clone();
        next.number = self.next_number().await?;
        next.created_ms = now_ms();
        let version = candidate.pinned.version.short();
        next.summary = match abort_reason {
            Some(reason) => format!(
                "abort {} {version} on {side_label}: {reason}",
                candidate.plugin
            ),
            None => format!("promote {} {version} on {side_label}", candidate.plugin),
        };
        let next_side = next.side_mut(side);
        next_side.candidate = None;
        if abort_reason.is_none() {
            next_side
                .plugins
                .insert(candidate.plugin.clone(), candidate.pinned.clone());
        }
        self.install(Some(&pointer), next).await
    }

    /// Makes release `to` (default: the one numbered just before the current one)
    /// current again.
    pub async fn rollback(&self, to: Option<u64>) -> Result<Release, RegistryError> {
        let pointer = self.store.current().await?.ok_or(RegistryError::Empty)?;
        let target = match to {
            Some(number) => number,
            None => self
                .store
                .release_numbers()
                .await?
                .into_iter()
                .filter(|number| *number < pointer.release)
                .max()
                .ok_or(RegistryError::UnknownRelease(
                    pointer.release.saturating_sub(1),
                ))?,
        };
        let release = self.store.release(target).await?;
        self.store.move_current(Some(&pointer), target).await?;
        tracing::info!(from = pointer.release, to = target, "rolled back");
        Ok(release)
    }

    /// Every release, oldest first.
    pub async fn releases(&self) -> Result<Vec<Release>, RegistryError> {
        let mut releases = Vec::new();
        for number in self.store.release_numbers().await? {
            releases.push(self.store.release(number).await?);
        }
        Ok(releases)
    }

    /// Records that this process (`instance` of `side`) runs `release`, with its live
    /// numbers for the candidates it tries.
    pub async fn heartbeat(
        &self,
        side: Side,
        instance: &str,
        release: u64,
        candidates: Vec<CandidateReport>,
    ) -> Result<(), RegistryError> {
        self.store
            .put_heartbeat(&Heartbeat {
                side: side_name(side).to_owned(),
                instance: instance.to_owned(),
                release,
                at_ms: now_ms(),
                candidates,
            })
            .await
    }

    /// The current release and which release the live instances (a heartbeat within
    /// `fresh`) run.
    pub async fn status(&self, fresh: Duration) -> Result<Status, RegistryError> {
        let mut status = Status {
            current: self.store.current().await?.map(|pointer| pointer.release),
            ..Status::default()
        };
        let oldest = now_ms().saturating_sub(fresh.as_millis() as u64);
        for heartbeat in self.store.heartbeats().await? {
            if heartbeat.at_ms < oldest {
                continue;
            }
            let counts = match heartbeat.side.as_str() {
                "host" => &mut status.hosts,
                _ => &mut status.consumers,
            };
            *counts.entry(heartbeat.release).or_default() += 1;
            for report in heartbeat.candidates {
                merge(&mut status.candidates, report);
            }
        }
        Ok(status)
    }

    async fn next_number(&self) -> Result<u64, RegistryError> {
        let numbers = self.store.release_numbers().await?;
        Ok(numbers.last().copied().unwrap_or_default() + 1)
    }

    /// Writes `release` and moves the pointer to it from `expected`.
    async fn install(
        &self,
        expected: Option<&Pointer>,
        release: Release,
    ) -> Result<Release, RegistryError> {
        self.store.create_release(&release).await?;
        self.store.move_current(expected, release.number).await?;
        tracing::info!(release = release.number, summary = %release.summary, "release published");
        Ok(release)
    }
}

/// Compiles and checks a candidate off the async runtime, one compilation at a time and
/// within the engine's time limit (a JavaScript or Python component takes tens of
/// seconds).
pub(crate) async fn compile(
    engine: &PluginEngine,
    name: &str,
    component: &[u8],
    settings: &PluginSettings,
) -> Result<CompiledPlugin, RegistryError> {
    engine
        .compile_bounded(name, component.to_vec(), settings.grants.clone())
        .await
        .map_err(RegistryError::Refused)
}

/// `canary` or `shadow`.
fn mode_name(mode: CandidateMode) -> &'static str {
    match mode {
        CandidateMode::Canary => "canary",
        CandidateMode::Shadow => "shadow",
    }
}

/// Adds `report` to the report of the same candidate in `reports`.
fn merge(reports: &mut Vec<CandidateReport>, report: CandidateReport) {
    let same = reports.iter_mut().find(|known| {
        (&known.side, &known.plugin, known.version)
            == (&report.side, &report.plugin, report.version)
    });
    let Some(known) = same else {
        reports.push(report);
        return;
    };
    known.active_calls += report.active_calls;
    known.active_failures += report.active_failures;
    known.candidate_calls += report.candidate_calls;
    known.candidate_failures += report.candidate_failures;
    known.mismatches += report.mismatches;
    known.failed_where_active_succeeded += report.failed_where_active_succeeded;
    known.samples.extend(report.samples);
    known.samples.truncate(crate::routing::SHADOW_SAMPLES);
}
