//! The pipeline file: which plugins exist, how they run, and the chain per side.
//!
//! ```toml
//! [limits]                # defaults for every plugin
//! memory-mib = 64
//! timeout-ms = 100
//!
//! [plugins.enrich]
//! path = "target/plugins/enrich.wasm"   # relative to this file
//! config = { fields = "programName,customerId" }
//! timeout-ms = 50          # overrides [limits]
//! grants = []              # "wall-clock", "network"
//!
//! [pipeline]
//! host = ["enrich", "validate-tracking"]
//! consumer = ["validate-tracking"]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::capabilities::Grant;
use crate::chain::PluginChain;
use crate::config::PluginLimits;
use crate::core_data::CoreDataLookup;
use crate::engine::PluginEngine;
use crate::error::EngineError;
use crate::registry::{PluginRegistry, PluginSettings};
use crate::version::PluginVersion;

/// The directory beside a pipeline file that holds its plugins' precompiled artifacts.
const PACKAGED_ARTIFACT_DIR: &str = "plugin-artifacts";

/// Which binary a chain belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The HTTP host (Fargate).
    Host,
    /// The stream consumer (Lambda).
    Consumer,
}

/// A parsed, checked pipeline file.
#[derive(Clone, Debug)]
pub struct PipelineFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Every declared plugin by name.
    pub plugins: BTreeMap<String, PluginDeclaration>,
    /// The host chain, in order.
    pub host: Vec<String>,
    /// The consumer chain, in order.
    pub consumer: Vec<String>,
}

/// One plugin compiled into an artifact by [`PipelineFile::precompile`].
#[derive(Clone, Debug)]
pub struct PrecompiledPlugin {
    /// Plugin name.
    pub name: String,
    /// Its version (sha256 of the component).
    pub version: PluginVersion,
    /// The artifact written.
    pub artifact: PathBuf,
}

/// A plugin as declared in the pipeline file.
#[derive(Clone, Debug)]
pub struct PluginDeclaration {
    /// The component file, resolved against the pipeline file's directory.
    pub path: PathBuf,
    /// Config, limits and grants.
    pub settings: PluginSettings,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPipeline {
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    plugins: BTreeMap<String, RawPlugin>,
    #[serde(default)]
    pipeline: RawSides,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLimits {
    memory_mib: Option<usize>,
    timeout_ms: Option<u64>,
    fuel: Option<u64>,
    max_output_events: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPlugin {
    path: PathBuf,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
    #[serde(default)]
    grants: BTreeSet<Grant>,
    memory_mib: Option<usize>,
    timeout_ms: Option<u64>,
    fuel: Option<u64>,
    max_output_events: Option<usize>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSides {
    #[serde(default)]
    host: Vec<String>,
    #[serde(default)]
    consumer: Vec<String>,
}

impl PipelineFile {
    /// Reads and checks the pipeline file at `path`.
    pub fn load(path: &Path) -> Result<Self, EngineError> {
        let text = std::fs::read_to_string(path).map_err(|source| EngineError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses pipeline text read from `path` (plugin paths resolve against its directory).
    pub fn parse(text: &str, path: &Path) -> Result<Self, EngineError> {
        let invalid = |reason: String| EngineError::Pipeline {
            path: path.to_owned(),
            reason,
        };
        let raw: RawPipeline = toml::from_str(text).map_err(|error| invalid(error.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let defaults = raw
            .limits
            .apply(PluginLimits::default(), "[limits]")
            .map_err(invalid)?;
        let mut plugins = BTreeMap::new();
        for (name, plugin) in raw.plugins {
            let config = plugin
                .config
                .into_iter()
                .map(|(key, value)| Ok((key.clone(), config_value(&name, &key, value)?)))
                .collect::<Result<_, String>>()
                .map_err(invalid)?;
            let limits = RawLimits {
                memory_mib: plugin.memory_mib,
                timeout_ms: plugin.timeout_ms,
                fuel: plugin.fuel,
                max_output_events: plugin.max_output_events,
            }
            .apply(defaults.clone(), &format!("[plugins.{name}]"))
            .map_err(invalid)?;
            let declaration = PluginDeclaration {
                path: base.join(&plugin.path),
                settings: PluginSettings {
                    config,
                    limits,
                    grants: plugin.grants,
                },
            };
            plugins.insert(name, declaration);
        }
        for name in raw.pipeline.host.iter().chain(&raw.pipeline.consumer) {
            if !plugins.contains_key(name) {
                return Err(invalid(format!(
                    "the pipeline uses plugin {name:?}, which is not declared under [plugins]"
                )));
            }
        }
        Ok(Self {
            path: path.to_owned(),
            plugins,
            host: raw.pipeline.host,
            consumer: raw.pipeline.consumer,
        })
    }

    /// The chain of `side`, by plugin name.
    pub fn chain_names(&self, side: Side) -> &[String] {
        match side {
            Side::Host => &self.host,
            Side::Consumer => &self.consumer,
        }
    }

    /// Where precompiled artifacts of the file's plugins are shipped: `plugin-artifacts/`
    /// beside the file, as the Lambda package and the container image carry them (see
    /// [`crate::EngineConfig::packaged_artifact_dir`]).
    pub fn packaged_artifact_dir(&self) -> PathBuf {
        self.path
            .parent()
            .unwrap_or(Path::new("."))
            .join(PACKAGED_ARTIFACT_DIR)
    }

    /// Whether any plugin sets a fuel limit (the engine must then meter fuel).
    pub fn needs_fuel(&self) -> bool {
        self.plugins
            .values()
            .any(|plugin| plugin.settings.limits.fuel.is_some())
    }

    /// Compiles every plugin the file declares with `engine` and writes its artifact
    /// into `dir` (at build time, usually [`PipelineFile::packaged_artifact_dir`]); one
    /// entry per plugin, in name order. A plugin that fails its checks stops the build.
    pub fn precompile(
        &self,
        engine: &PluginEngine,
        dir: &Path,
    ) -> Result<Vec<PrecompiledPlugin>, EngineError> {
        self.plugins
            .iter()
            .map(|(name, declaration)| {
                let bytes = self.read_component(declaration)?;
                let (version, artifact) =
                    engine.precompile(name, &bytes, &declaration.settings.grants, dir)?;
                Ok(PrecompiledPlugin {
                    name: name.clone(),
                    version,
                    artifact,
                })
            })
            .collect()
    }

    fn read_component(&self, declaration: &PluginDeclaration) -> Result<Vec<u8>, EngineError> {
        std::fs::read(&declaration.path).map_err(|source| EngineError::Read {
            path: declaration.path.clone(),
            source,
        })
    }

    /// Registers every plugin `side` uses (not yet registered) and returns its chain.
    pub fn build_chain(
        &self,
        side: Side,
        registry: &PluginRegistry,
        core_data: Arc<dyn CoreDataLookup>,
    ) -> Result<PluginChain, EngineError> {
        let mut steps = Vec::new();
        for name in self.chain_names(side) {
            let plugin = match registry.get(name) {
                Ok(plugin) => plugin,
                Err(_) => {
                    let declaration = &self.plugins[name];
                    let bytes = self.read_component(declaration)?;
                    registry.register(name, declaration.settings.clone(), &bytes)?
                }
            };
            steps.push(plugin);
        }
        Ok(PluginChain::new(
            registry.engine().clone(),
            steps,
            core_data,
        ))
    }
}

impl RawLimits {
    /// `limits` with the values set here; `section` names the table in errors.
    fn apply(self, mut limits: PluginLimits, section: &str) -> Result<PluginLimits, String> {
        if let Some(mib) = self.memory_mib {
            limits.memory_bytes = mib
                .checked_mul(1 << 20)
                .ok_or_else(|| format!("{section} memory-mib = {mib} is too large"))?;
        }
        if let Some(ms) = self.timeout_ms {
            limits.timeout = Duration::from_millis(ms);
        }
        if self.fuel.is_some() {
            limits.fuel = self.fuel;
        }
        if let Some(events) = self.max_output_events {
            limits.max_output_events = events;
        }
        Ok(limits)
    }
}

fn config_value(plugin: &str, key: &str, value: toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text),
        toml::Value::Integer(number) => Ok(number.to_string()),
        toml::Value::Float(number) => Ok(number.to_string()),
        toml::Value::Boolean(flag) => Ok(flag.to_string()),
        other => Err(format!(
            "plugins.{plugin}.config.{key} must be a string, number or boolean, not {}",
            other.type_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    use super::*;

    const EXAMPLE: &str = r#"
        [limits]
        memory-mib = 32
        timeout-ms = 80

        [plugins.enrich]
        path = "plugins/enrich.wasm"
        config = { fields = "programName", max = 3, strict = true }
        timeout-ms = 20

        [plugins.filter]
        path = "/abs/filter.wasm"
        grants = ["wall-clock"]

        [pipeline]
        host = ["enrich", "filter"]
        consumer = ["filter"]
    "#;

    #[test]
    fn parses_plugins_limits_and_chains() {
        let file = PipelineFile::parse(EXAMPLE, Path::new("/etc/adtrack/pipeline.toml")).unwrap();
        let enrich = &file.plugins["enrich"];
        assert_eq!(enrich.path, Path::new("/etc/adtrack/plugins/enrich.wasm"));
        assert_eq!(enrich.settings.config["max"], "3");
        assert_eq!(enrich.settings.config["strict"], "true");
        assert_eq!(enrich.settings.limits.timeout, Duration::from_millis(20));
        assert_eq!(enrich.settings.limits.memory_bytes, 32 << 20);
        let filter = &file.plugins["filter"];
        assert_eq!(filter.path, Path::new("/abs/filter.wasm"));
        assert_eq!(filter.settings.limits.timeout, Duration::from_millis(80));
        assert!(filter.settings.grants.contains(&Grant::WallClock));
        assert_eq!(file.chain_names(Side::Host), ["enrich", "filter"]);
        assert_eq!(file.chain_names(Side::Consumer), ["filter"]);
        assert!(!file.needs_fuel());
    }

    #[test]
    fn refuses_undeclared_plugins_and_unknown_keys() {
        let undeclared = "[pipeline]\nhost = [\"ghost\"]\n";
        let error = PipelineFile::parse(undeclared, Path::new("p.toml")).unwrap_err();
        assert!(error.to_string().contains("\"ghost\""), "{error}");

        let typo = "[plugins.a]\npath = \"a.wasm\"\ntimeout = 5\n";
        let error = PipelineFile::parse(typo, Path::new("p.toml")).unwrap_err();
        assert!(error.to_string().contains("timeout"), "{error}");

        let bad_grant = "[plugins.a]\npath = \"a.wasm\"\ngrants = [\"filesystem\"]\n";
        assert!(PipelineFile::parse(bad_grant, Path::new("p.toml")).is_err());
    }

    #[test]
    fn refuses_a_memory_limit_beyond_the_address_space() {
        let huge = "[plugins.a]\npath = \"a.wasm\"\nmemory-mib = 1125899906842624\n";
        let error = PipelineFile::parse(huge, Path::new("p.toml")).unwrap_err();
        assert!(error.to_string().contains("memory-mib"), "{error}");
    }

    /// Parses `text`: a pipeline whose chains name declared plugins, or an error about
    /// the file; anything else (a panic included) fails the property.
    fn parses_or_names_the_file(text: &str) -> Result<(), TestCaseError> {
        match PipelineFile::parse(text, Path::new("p.toml")) {
            Ok(file) => {
                for side in [Side::Host, Side::Consumer] {
                    for name in file.chain_names(side) {
                        prop_assert!(file.plugins.contains_key(name), "{name} undeclared");
                    }
                }
            }
            Err(EngineError::Pipeline { path, reason }) => {
                prop_assert_eq!(path, Path::new("p.toml"));
                prop_assert!(!reason.is_empty());
            }
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
        Ok(())
    }

    /// A TOML value of any shape the pipeline file might hold, valid or not.
    fn toml_value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|number| number.to_string()),
            Just("18446744073709551615".to_owned()),
            any::<bool>().prop_map(|flag| flag.to_string()),
            any::<f64>().prop_map(|number| number.to_string()),
            "\\PC{0,12}".prop_map(|text| format!("{text:?}")),
            prop::collection::vec("[a-z-]{1,6}", 0..4).prop_map(|names| format!("{names:?}")),
            Just("{ fields = \"a\", n = 3, on = true, nested = { x = 1 } }".to_owned()),
            Just("[\"wall-clock\", \"network\", \"filesystem\"]".to_owned()),
        ]
    }

    /// Lines of a pipeline file: its tables and keys with any values, in any order.
    fn pipeline_text() -> impl Strategy<Value = String> {
        let table = prop::sample::select(vec![
            "[limits]",
            "[pipeline]",
            "[plugins.a]",
            "[plugins.b]",
            "[plugins.a.config]",
        ])
        .prop_map(str::to_owned);
        let key = prop::sample::select(vec![
            "memory-mib",
            "timeout-ms",
            "fuel",
            "max-output-events",
            "path",
            "config",
            "grants",
            "host",
            "consumer",
            "unknown",
        ]);
        let entry = (key, toml_value()).prop_map(|(key, value)| format!("{key} = {value}"));
        prop::collection::vec(prop_oneof![table, entry], 0..16).prop_map(|lines| lines.join("\n"))
    }

    proptest! {
        #[test]
        fn any_text_is_a_pipeline_or_an_error(text in "\\PC*") {
            parses_or_names_the_file(&text)?;
        }

        #[test]
        fn any_pipeline_shaped_text_is_a_pipeline_or_an_error(text in pipeline_text()) {
            parses_or_names_the_file(&text)?;
        }
    }
}
