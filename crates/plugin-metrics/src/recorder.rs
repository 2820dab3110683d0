//! The recorder: keeps the plugin engine's call counts and drains them into EMF lines.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

use crate::EmfDocument;

/// The plugin engine's counter of calls, labelled `plugin`, `version` and `outcome`.
const PLUGIN_CALLS_COUNTER: &str = "plugin_calls_total";
/// Outcomes that are not failures of the plugin: an accepted event, a rejected one (bad
/// input), and a retry the plugin asked for.
const ACCEPTED: &str = "accepted";
const REJECTED: &str = "rejected";
const RETRY: &str = "retry";

/// A `metrics` recorder for one side's plugin calls; every other metric is ignored.
/// Cloning shares the counts.
#[derive(Clone, Debug)]
pub struct PluginMetrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    namespace: String,
    side: &'static str,
    counts: Mutex<BTreeMap<CallKey, Arc<AtomicU64>>>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct CallKey {
    plugin: String,
    version: String,
    outcome: String,
}

impl PluginMetrics {
    /// A recorder for the plugin calls of `side` (`host` or `consumer`) in `namespace`.
    pub fn new(namespace: &str, side: &'static str) -> Self {
        Self {
            inner: Arc::new(Inner {
                namespace: namespace.to_owned(),
                side,
                counts: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// The counts since the last drain, one document per plugin version that was called;
    /// the counts start again from zero.
    pub fn drain(&self) -> Vec<EmfDocument> {
        let counts = self
            .inner
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut documents: BTreeMap<(&str, &str), EmfDocument> = BTreeMap::new();
        for (key, count) in counts.iter() {
            let calls = count.swap(0, Ordering::Relaxed);
            if calls == 0 {
                continue;
            }
            let document = documents
                .entry((&key.plugin, &key.version))
                .or_insert_with(|| EmfDocument {
                    side: self.inner.side,
                    plugin: key.plugin.clone(),
                    version: key.version.clone(),
                    ..EmfDocument::default()
                });
            document.calls += calls;
            match key.outcome.as_str() {
                ACCEPTED | RETRY => {}
                REJECTED => document.rejections += calls,
                _ => document.failures += calls,
            }
        }
        documents.into_values().collect()
    }

    /// Writes the counts since the last flush to standard output, one EMF line per plugin
    /// version, where CloudWatch Logs picks them up.
    pub fn flush(&self) {
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64);
        let mut out = std::io::stdout().lock();
        for document in self.drain() {
            let line = document.to_json(&self.inner.namespace, timestamp_ms);
            // Standard output gone means the process is going away; nothing to report to.
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }

    fn counter(&self, key: &Key) -> Option<Arc<AtomicU64>> {
        if key.name() != PLUGIN_CALLS_COUNTER {
            return None;
        }
        let label = |name: &str| {
            key.labels()
                .find(|label| label.key() == name)
                .map(|label| label.value().to_owned())
        };
        let key = CallKey {
            plugin: label("plugin")?,
            version: label("version")?,
            outcome: label("outcome")?,
        };
        let mut counts = self
            .inner
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Some(counts.entry(key).or_default().clone())
    }
}

impl Recorder for PluginMetrics {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.counter(key)
            .map_or_else(Counter::noop, Counter::from_arc)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(metrics: &PluginMetrics, plugin: &str, version: &str, outcome: &str, times: u64) {
        let labels = [
            ("plugin", plugin.to_owned()),
            ("version", version.to_owned()),
            ("outcome", outcome.to_owned()),
        ];
        metrics::with_local_recorder(metrics, || {
            metrics::counter!("plugin_calls_total", &labels).increment(times);
        });
    }

    #[test]
    fn failures_and_rejections_are_counted_per_plugin_version() {
        let metrics = PluginMetrics::new("adtrack/test", "consumer");
        call(&metrics, "validate", "aaaa", "accepted", 7);
        call(&metrics, "validate", "aaaa", "rejected", 2);
        call(&metrics, "validate", "aaaa", "trap", 1);
        call(&metrics, "validate", "bbbb", "timeout", 3);
        call(&metrics, "filter", "cccc", "retry", 1);
        let documents = metrics.drain();
        let summary: Vec<(&str, &str, u64, u64, u64)> = documents
            .iter()
            .map(|d| {
                (
                    d.plugin.as_str(),
                    d.version.as_str(),
                    d.calls,
                    d.failures,
                    d.rejections,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("filter", "cccc", 1, 0, 0),
                ("validate", "aaaa", 10, 1, 2),
                ("validate", "bbbb", 3, 3, 0),
            ]
        );
        assert!(documents.iter().all(|d| d.side == "consumer"));
    }

    #[test]
    fn a_drain_starts_the_counts_again_and_other_metrics_are_ignored() {
        let metrics = PluginMetrics::new("adtrack/test", "host");
        call(&metrics, "filter", "cccc", "accepted", 1);
        metrics::with_local_recorder(&metrics, || {
            metrics::counter!("http_requests_total").increment(5);
        });
        assert_eq!(metrics.drain().len(), 1);
        assert!(metrics.drain().is_empty());
        call(&metrics, "filter", "cccc", "accepted", 1);
        assert_eq!(metrics.drain()[0].calls, 1);
    }
}
