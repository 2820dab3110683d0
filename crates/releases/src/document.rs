//! The release document and the heartbeat, as stored (JSON).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use plugin_engine::{Grant, PluginLimits, PluginSettings, PluginVersion, Side};
use serde::{Deserialize, Serialize};

/// One immutable, numbered release: what each side runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Release {
    /// The release number, from 1, increasing by one per publish.
    pub number: u64,
    /// When it was published, ms since the Unix epoch.
    pub created_ms: u64,
    /// What changed, for people (`publish filter on host`).
    pub summary: String,
    /// The host chain.
    pub host: SideRelease,
    /// The consumer chain.
    pub consumer: SideRelease,
}

/// One side's chain and the plugins it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SideRelease {
    /// Plugin names in the order events go through them.
    pub chain: Vec<String>,
    /// Every plugin of the chain.
    pub plugins: BTreeMap<String, ReleasedPlugin>,
}

/// A plugin as a release pins it: the exact component and how it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleasedPlugin {
    /// The component (sha256 of its bytes).
    pub version: PluginVersion,
    /// Values the plugin reads through the `config` import.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Linear memory limit in bytes.
    pub memory_bytes: usize,
    /// Time limit of one call in milliseconds.
    pub timeout_ms: u64,
    /// Instruction budget of one call, when metered.
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Most events one `transform` call may return.
    pub max_output_events: usize,
    /// Most bytes one `transform` call may return.
    pub max_output_bytes: usize,
    /// Capabilities beyond the default sandbox.
    #[serde(default)]
    pub grants: BTreeSet<Grant>,
}

impl ReleasedPlugin {
    /// The plugin `version` running with `settings`.
    pub fn new(version: PluginVersion, settings: &PluginSettings) -> Self {
        let limits = &settings.limits;
        Self {
            version,
            config: settings.config.clone(),
            memory_bytes: limits.memory_bytes,
            timeout_ms: limits.timeout.as_millis() as u64,
            fuel: limits.fuel,
            max_output_events: limits.max_output_events,
            max_output_bytes: limits.max_output_bytes,
            grants: settings.grants.clone(),
        }
    }

    /// The engine settings it runs with.
    pub fn settings(&self) -> PluginSettings {
        PluginSettings {
            config: self.config.clone(),
            limits: PluginLimits {
                memory_bytes: self.memory_bytes,
                timeout: Duration::from_millis(self.timeout_ms),
                fuel: self.fuel,
                max_output_events: self.max_output_events,
                max_output_bytes: self.max_output_bytes,
            },
            grants: self.grants.clone(),
        }
    }
}

impl Release {
    /// The chain of `side`.
    pub fn side(&self, side: Side) -> &SideRelease {
        match side {
            Side::Host => &self.host,
            Side::Consumer => &self.consumer,
        }
    }

    /// The chain of `side`, to change while building the next release.
    pub fn side_mut(&mut self, side: Side) -> &mut SideRelease {
        match side {
            Side::Host => &mut self.host,
            Side::Consumer => &mut self.consumer,
        }
    }

    /// Every component the release names.
    pub fn versions(&self) -> BTreeSet<PluginVersion> {
        [&self.host, &self.consumer]
            .into_iter()
            .flat_map(|side| side.plugins.values().map(|plugin| plugin.version))
            .collect()
    }
}

/// What one process reports it runs, every poll.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Heartbeat {
    /// `host` or `consumer`.
    pub side: String,
    /// The process (task id, function instance, host name and pid).
    pub instance: String,
    /// The release it runs.
    pub release: u64,
    /// When it reported, ms since the Unix epoch.
    pub at_ms: u64,
}

/// The name of `side` in documents and messages.
pub fn side_name(side: Side) -> &'static str {
    match side {
        Side::Host => "host",
        Side::Consumer => "consumer",
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_round_trips_through_json() {
        let plugin = ReleasedPlugin::new(PluginVersion::of(b"filter"), &PluginSettings::default());
        let release = Release {
            number: 7,
            created_ms: 1,
            summary: "publish filter on host".into(),
            host: SideRelease {
                chain: vec!["filter".into()],
                plugins: BTreeMap::from([("filter".into(), plugin)]),
            },
            consumer: SideRelease::default(),
        };
        let json = serde_json::to_string(&release).unwrap();
        assert_eq!(serde_json::from_str::<Release>(&json).unwrap(), release);
        assert_eq!(release.versions().len(), 1);
    }
}
