//! The call metrics of one plugin version: the duration histogram and a counter per
//! outcome, labelled `plugin` and `version`, registered on first use and then shared
//! by every batch on that version (registering looks the key up in the recorder,
//! which cost more than the call itself at batch 1).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Histogram, Label, SharedString};

use crate::version::PluginVersion;

/// Every outcome label a call is counted under: what the plugin answered, `busy`,
/// and the kinds of [`crate::CallFailure`].
const OUTCOMES: [&str; 12] = [
    "accepted",
    "rejected",
    "retry",
    "failed",
    "busy",
    "timeout",
    "memory_limit",
    "fuel_exhausted",
    "trap",
    "output_too_large",
    "instantiate",
    "reported",
];

/// The metrics handles of one plugin version.
pub(crate) struct CallMetrics {
    /// The `plugin` and `version` labels.
    labels: [Label; 2],
    duration: OnceLock<Histogram>,
    calls: [OnceLock<Counter>; OUTCOMES.len()],
}

impl CallMetrics {
    /// The metrics of plugin `name` at `version`; nothing is registered yet.
    pub(crate) fn new(name: &str, version: PluginVersion) -> Self {
        Self {
            labels: [
                Label::new("plugin", SharedString::from(Arc::<str>::from(name))),
                Label::new(
                    "version",
                    SharedString::from(Arc::<str>::from(version.short())),
                ),
            ],
            duration: OnceLock::new(),
            calls: Default::default(),
        }
    }

    /// Counts one event handled with `outcome` and records how long it took.
    pub(crate) fn record(&self, took: Duration, outcome: &'static str) {
        self.duration
            .get_or_init(|| {
                metrics::histogram!("plugin_call_duration_seconds", self.labels.to_vec())
            })
            .record(took.as_secs_f64());
        match OUTCOMES.iter().position(|known| *known == outcome) {
            Some(index) => self.calls[index]
                .get_or_init(|| self.calls_counter(outcome))
                .increment(1),
            None => self.calls_counter(outcome).increment(1),
        }
    }

    /// Counts a `batch-handler` call that failed and fell back to `handler`.
    pub(crate) fn record_batch_fallback(&self) {
        metrics::counter!("plugin_batch_fallbacks_total", self.labels.to_vec()).increment(1);
    }

    fn calls_counter(&self, outcome: &'static str) -> Counter {
        let mut labels = self.labels.to_vec();
        labels.push(Label::new("outcome", outcome));
        metrics::counter!("plugin_calls_total", labels)
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    #[test]
    fn every_batch_on_a_version_counts_into_the_same_series_per_outcome() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let metrics = CallMetrics::new("filter", PluginVersion::of(b"component"));
        metrics::with_local_recorder(&recorder, || {
            for outcome in [
                "accepted",
                "accepted",
                "trap",
                "accepted",
                "not-a-known-outcome",
            ] {
                metrics.record(Duration::from_micros(3), outcome);
            }
            metrics.record_batch_fallback();
        });
        let mut counted: Vec<(String, Vec<String>, u64)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| match value {
                DebugValue::Counter(count) => Some((
                    key.key().name().to_owned(),
                    key.key()
                        .labels()
                        .map(|label| label.value().to_owned())
                        .collect(),
                    count,
                )),
                _ => None,
            })
            .collect();
        counted.sort();
        let version = PluginVersion::of(b"component").short();
        let labels = |outcome: Option<&str>| {
            let mut labels = vec!["filter".to_owned(), version.clone()];
            labels.extend(outcome.map(str::to_owned));
            labels
        };
        assert_eq!(
            counted,
            [
                ("plugin_batch_fallbacks_total".to_owned(), labels(None), 1),
                ("plugin_calls_total".to_owned(), labels(Some("accepted")), 3),
                (
                    "plugin_calls_total".to_owned(),
                    labels(Some("not-a-known-outcome")),
                    1
                ),
                ("plugin_calls_total".to_owned(), labels(Some("trap")), 1),
            ]
        );
    }
}
