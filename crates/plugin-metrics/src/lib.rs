//! Plugin metrics for CloudWatch. The plugin engine counts every call per plugin, version
//! and outcome (`plugin_calls_total`, through the `metrics` facade); [`PluginMetrics`] is a
//! recorder that keeps those counts and writes them, when flushed, as CloudWatch embedded
//! metric format (EMF) lines on standard output. CloudWatch Logs turns each line into
//! metrics (no agent needed, on Lambda and with the ECS `awslogs` driver), so an alarm can
//! watch plugin failures and a dashboard can name the plugin and version that fail.
#![deny(missing_docs)]

mod emf;
mod recorder;

use clap::Args;
use settings::deployment::MetricDescription;

pub use emf::EmfDocument;
pub use recorder::PluginMetrics;

/// The environment variable that turns the metrics on and names their namespace.
pub const NAMESPACE_VARIABLE: &str = "METRICS_NAMESPACE";

/// The metrics every EMF line carries, with their CloudWatch unit.
pub const METRICS: [(&str, &str); 3] = [
    ("PluginCalls", "Count"),
    ("PluginFailures", "Count"),
    ("PluginRejections", "Count"),
];

/// The dimension sets of every metric: per plugin version, and per side for alarms that
/// watch a whole chain.
pub const DIMENSION_SETS: [&[&str]; 2] = [&["Side", "Plugin", "Version"], &["Side"]];

/// Where the CloudWatch plugin metrics go; a binary flattens this into its configuration.
#[derive(Clone, Debug, Default, Args)]
pub struct MetricsConfig {
    /// CloudWatch namespace of the plugin metrics, written as embedded metric format lines
    /// on standard output; unset, none are written.
    #[arg(long, env = NAMESPACE_VARIABLE)]
    pub metrics_namespace: Option<String>,
}

impl MetricsConfig {
    /// The recorder for `side` (`host` or `consumer`), when a namespace is configured.
    pub fn recorder(&self, side: &'static str) -> Option<PluginMetrics> {
        self.metrics_namespace
            .as_deref()
            .filter(|namespace| !namespace.trim().is_empty())
            .map(|namespace| PluginMetrics::new(namespace, side))
    }
}

/// The metrics a binary of `side` writes, for its deployment description.
pub fn described(side: &'static str) -> Vec<MetricDescription> {
    METRICS
        .iter()
        .map(|(name, _)| MetricDescription {
            namespace_variable: NAMESPACE_VARIABLE,
            name,
            dimension_sets: DIMENSION_SETS.iter().map(|set| set.to_vec()).collect(),
            fixed_dimensions: vec![("Side", side)],
        })
        .collect()
}
