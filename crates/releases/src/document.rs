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
    /// A candidate version of one plugin of the chain, tried beside the active one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<Candidate>,
}

/// A candidate version of one plugin: a canary serves a share of the events, a shadow
/// runs beside the active version on a share of them and only has its output compared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Candidate {
    /// The plugin of the chain it would replace.
    pub plugin: String,
    /// The candidate component and how it runs (the active plugin's settings).
    pub pinned: ReleasedPlugin,
    /// Canary or shadow.
    pub mode: CandidateMode,
    /// Share of events, by a hash of the event id (the same event always takes the same
    /// path), from 1 to 100.
    pub percent: u8,
    /// When a canary is aborted automatically.
    pub abort: AbortPolicy,
}

/// How a candidate is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CandidateMode {
    /// Serves its share of events in place of the active version.
    Canary,
    /// Runs beside the active version; its output is compared and discarded.
    Shadow,
}

/// When the fleet aborts a canary on its own: once it has made `min_calls` calls, if its
/// failure rate (failed or retry outcomes) exceeds the active version's by more than
/// `max_failure_margin_percent` points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AbortPolicy {
    /// Calls the canary must have made before it is judged.
    pub min_calls: u64,
    /// Tolerated excess of its failure rate over the active version's, in points.
    pub max_failure_margin_percent: u8,
}

impl Default for AbortPolicy {
    fn default() -> Self {
        Self {
            min_calls: 100,
            max_failure_margin_percent: 5,
        }
    }
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
    /// What it has seen of the candidates it runs.
    #[serde(default)]
    pub candidates: Vec<CandidateReport>,
}

/// One process's live numbers for a candidate, as reported in its heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CandidateReport {
    /// `host` or `consumer`.
    pub side: String,
    /// The plugin.
    pub plugin: String,
    /// The candidate's version.
    pub version: PluginVersion,
    /// Canary or shadow.
    pub mode: CandidateMode,
    /// Events the active version handled, and how many of them failed or asked for a retry.
    pub active_calls: u64,
    /// Of those, failed or retried.
    pub active_failures: u64,
    /// Events the candidate handled (a canary's share, or a shadow's copies).
    pub candidate_calls: u64,
    /// Of those, failed or retried.
    pub candidate_failures: u64,
    /// Shadow: events on which the candidate's outcome differed from the active one's.
    pub mismatches: u64,
    /// Shadow: events the active version accepted and the candidate failed.
    pub failed_where_active_succeeded: u64,
    /// Shadow: a bounded sample of differing outcomes.
    pub samples: Vec<ShadowSample>,
}

/// One event on which a shadow's outcome differed from the active version's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShadowSample {
    /// The input event's id.
    pub event_id: String,
    /// The active version's outcome, summarised.
    pub active: String,
    /// The candidate's outcome, summarised.
    pub candidate: String,
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
    use proptest::prelude::*;

    use super::*;
    use crate::RegistryError;
    use crate::store::decode;

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
                candidate: None,
            },
            consumer: SideRelease::default(),
        };
        let json = serde_json::to_string(&release).unwrap();
        assert_eq!(serde_json::from_str::<Release>(&json).unwrap(), release);
        assert_eq!(release.versions().len(), 1);
    }

    fn released_plugin() -> impl Strategy<Value = ReleasedPlugin> {
        (
            any::<Vec<u8>>(),
            prop::collection::btree_map("[a-z]{1,6}", "\\PC{0,8}", 0..3),
            any::<usize>(),
            any::<u64>(),
            any::<Option<u64>>(),
            any::<usize>(),
            any::<usize>(),
            any::<bool>(),
        )
            .prop_map(
                |(bytes, config, memory_bytes, timeout_ms, fuel, events, output, network)| {
                    ReleasedPlugin {
                        version: PluginVersion::of(&bytes),
                        config,
                        memory_bytes,
                        timeout_ms,
                        fuel,
                        max_output_events: events,
                        max_output_bytes: output,
                        grants: if network {
                            BTreeSet::from([Grant::Network])
                        } else {
                            BTreeSet::new()
                        },
                    }
                },
            )
    }

    fn side_release() -> impl Strategy<Value = SideRelease> {
        let candidate = (released_plugin(), any::<bool>(), any::<u8>(), any::<u64>()).prop_map(
            |(pinned, shadow, percent, min_calls)| Candidate {
                plugin: "a".into(),
                pinned,
                mode: if shadow {
                    CandidateMode::Shadow
                } else {
                    CandidateMode::Canary
                },
                percent,
                abort: AbortPolicy {
                    min_calls,
                    max_failure_margin_percent: percent,
                },
            },
        );
        (
            prop::collection::vec("[a-z]{1,3}", 0..4),
            prop::collection::btree_map("[a-z]{1,3}", released_plugin(), 0..3),
            prop::option::of(candidate),
        )
            .prop_map(|(chain, plugins, candidate)| SideRelease {
                chain,
                plugins,
                candidate,
            })
    }

    fn release() -> impl Strategy<Value = Release> {
        (
            any::<u64>(),
            any::<u64>(),
            "\\PC{0,16}",
            side_release(),
            side_release(),
        )
            .prop_map(|(number, created_ms, summary, host, consumer)| Release {
                number,
                created_ms,
                summary,
                host,
                consumer,
            })
    }

    /// A stored release document with one edit: cut short, or a token put in anywhere.
    fn damaged_document() -> impl Strategy<Value = Vec<u8>> {
        let token = prop::sample::select(vec![
            "-1",
            "1e400",
            "18446744073709551616",
            "null",
            "\"\"",
            "{}",
            "[]",
            ",",
            "\"x\":1,",
            "\"canary\"",
            "\\u0000",
            "\"",
        ]);
        (
            release(),
            any::<prop::sample::Index>(),
            prop::option::of(token),
        )
            .prop_map(|(release, at, token)| {
                let mut json = serde_json::to_vec(&release).unwrap_or_default();
                let at = at.index(json.len() + 1);
                match token {
                    Some(token) => {
                        json.splice(at..at, token.bytes());
                    }
                    None => json.truncate(at),
                }
                json
            })
    }

    /// Decodes `bytes` as a release: a release that reads back the same after a round
    /// trip, or a `Corrupt` error saying which document; never a panic.
    fn decodes_or_is_corrupt(bytes: &[u8]) -> Result<(), TestCaseError> {
        match decode::<Release>("release 1", bytes) {
            Ok(release) => {
                let json = serde_json::to_vec(&release).unwrap_or_default();
                prop_assert_eq!(
                    decode::<Release>("release 1", &json).ok(),
                    Some(release.clone())
                );
                for side in [Side::Host, Side::Consumer] {
                    for plugin in release.side(side).plugins.values() {
                        let _ = plugin.settings();
                    }
                }
            }
            Err(RegistryError::Corrupt { what, reason }) => {
                prop_assert_eq!(what, "release 1");
                prop_assert!(!reason.is_empty());
            }
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_bytes_are_a_release_or_corrupt(bytes in any::<Vec<u8>>()) {
            decodes_or_is_corrupt(&bytes)?;
        }

        #[test]
        fn any_release_round_trips(release in release()) {
            let json = serde_json::to_vec(&release).unwrap_or_default();
            prop_assert_eq!(decode::<Release>("release 1", &json).ok(), Some(release));
        }

        #[test]
        fn a_damaged_document_is_a_release_or_corrupt(bytes in damaged_document()) {
            decodes_or_is_corrupt(&bytes)?;
        }
    }
}
