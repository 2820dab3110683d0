//! What a replay compares: the active version and the candidate, each as a chain over
//! the same core data. Three ways to name them: two components, a pipeline file's chain
//! with the candidate in place of one plugin, or the current release's chain with its
//! candidate (canary or shadow) or a given component in place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use plugin_engine::{
    CoreDataLookup, EngineConfig, PipelineFile, PluginChain, PluginEngine, PluginRegistry,
    PluginSettings, Side,
};
use releases::{ReleaseRegistry, ReleasedPlugin, SideRelease};

/// The two chains a replay runs, with what to call them.
pub struct Subjects {
    /// The version running today.
    pub active: PluginChain,
    /// The version on trial.
    pub candidate: PluginChain,
}

/// How the user named the subjects.
pub enum SubjectSpec {
    /// Two components run as plugin `name` with `config`.
    Components {
        /// The version running today.
        active: PathBuf,
        /// The version on trial.
        candidate: PathBuf,
        /// The name both run under.
        name: String,
        /// Config both get.
        config: BTreeMap<String, String>,
    },
    /// A pipeline file's chain, and the same chain with `plugin` replaced by `candidate`.
    Pipeline {
        /// The pipeline file.
        file: PathBuf,
        /// Which chain.
        side: Side,
        /// The plugin the candidate replaces.
        plugin: String,
        /// The candidate component.
        candidate: PathBuf,
    },
    /// The current release's chain, and the same chain with the release's candidate, or
    /// with `candidate` in place of `plugin`.
    Release {
        /// The registry.
        registry: ReleaseRegistry,
        /// Which chain.
        side: Side,
        /// A component to try instead of the release's own candidate: (plugin, file).
        candidate: Option<(String, PathBuf)>,
    },
}

impl SubjectSpec {
    /// Compiles both chains, answering lookups from `lookup`.
    pub async fn build(&self, lookup: Arc<dyn CoreDataLookup>) -> Result<Subjects> {
        match self {
            SubjectSpec::Components {
                active,
                candidate,
                name,
                config,
            } => {
                let engine = PluginEngine::new(EngineConfig::default())?;
                let settings = PluginSettings {
                    config: config.clone(),
                    ..PluginSettings::default()
                };
                let chain = |file: &Path| -> Result<PluginChain> {
                    let registry = PluginRegistry::new(engine.clone());
                    let plugin = registry.register(name, settings.clone(), &read(file)?)?;
                    Ok(PluginChain::new(
                        engine.clone(),
                        vec![plugin],
                        lookup.clone(),
                    ))
                };
                Ok(Subjects {
                    active: chain(active)?,
                    candidate: chain(candidate)?,
                })
            }
            SubjectSpec::Pipeline {
                file,
                side,
                plugin,
                candidate,
            } => {
                let pipeline = PipelineFile::load(file)?;
                if !pipeline.chain_names(*side).contains(plugin) {
                    bail!(
                        "the {} chain of {} has no plugin {plugin:?} for the candidate to replace \
                         (--plugin names it)",
                        releases::side_name(*side),
                        file.display()
                    );
                }
                let engine = PluginEngine::new(EngineConfig {
                    fuel_metering: pipeline.needs_fuel(),
                    ..EngineConfig::default()
                })?;
                let active = pipeline.build_chain(
                    *side,
                    &PluginRegistry::new(engine.clone()),
                    lookup.clone(),
                )?;
                let registry = PluginRegistry::new(engine);
                let candidate_chain = pipeline.build_chain(*side, &registry, lookup)?;
                registry.swap(plugin, &read(candidate)?)?;
                Ok(Subjects {
                    active,
                    candidate: candidate_chain,
                })
            }
            SubjectSpec::Release {
                registry,
                side,
                candidate,
            } => release_subjects(registry, *side, candidate.as_ref(), lookup).await,
        }
    }
}

async fn release_subjects(
    registry: &ReleaseRegistry,
    side: Side,
    candidate: Option<&(String, PathBuf)>,
    lookup: Arc<dyn CoreDataLookup>,
) -> Result<Subjects> {
    let release = registry
        .current()
        .await?
        .context("the registry has no current release")?;
    let chain = release.side(side);
    let engine = PluginEngine::new(EngineConfig {
        fuel_metering: chain.plugins.values().any(|plugin| plugin.fuel.is_some()),
        ..EngineConfig::default()
    })?;
    let active = release_chain(registry, &engine, chain, None, lookup.clone()).await?;
    let replaced = match (candidate, &chain.candidate) {
        (Some((plugin, file)), _) => {
            let pinned = chain.plugins.get(plugin).with_context(|| {
                format!(
                    "release {} has no plugin {plugin:?} on the {} side",
                    release.number,
                    releases::side_name(side)
                )
            })?;
            (plugin.clone(), pinned.settings(), read(file)?)
        }
        (None, Some(tried)) => {
            let bytes = registry.store().component(tried.pinned.version).await?;
            (tried.plugin.clone(), tried.pinned.settings(), bytes)
        }
        (None, None) => bail!(
            "release {} has no candidate on the {} side: give a component to try",
            release.number,
            releases::side_name(side)
        ),
    };
    let candidate = release_chain(registry, &engine, chain, Some(replaced), lookup).await?;
    Ok(Subjects { active, candidate })
}

/// The chain `side` pins, with `replaced` (plugin, settings, component) in place of
/// that plugin.
async fn release_chain(
    registry: &ReleaseRegistry,
    engine: &PluginEngine,
    side: &SideRelease,
    replaced: Option<(String, PluginSettings, Vec<u8>)>,
    lookup: Arc<dyn CoreDataLookup>,
) -> Result<PluginChain> {
    let plugins = PluginRegistry::new(engine.clone());
    let mut steps = Vec::new();
    for name in &side.chain {
        let step = match &replaced {
            Some((plugin, settings, bytes)) if plugin == name => {
                plugins.register(name, settings.clone(), bytes)?
            }
            _ => {
                let pinned: &ReleasedPlugin = side
                    .plugins
                    .get(name)
                    .with_context(|| format!("the release names no version of {name:?}"))?;
                let bytes = registry.store().component(pinned.version).await?;
                plugins.register(name, pinned.settings(), &bytes)?
            }
        };
        steps.push(step);
    }
    Ok(PluginChain::new(engine.clone(), steps, lookup))
}

fn read(file: &Path) -> Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}
