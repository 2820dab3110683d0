//! The host's metrics recorders: Prometheus for `GET /metrics` and, with
//! `METRICS_NAMESPACE`, the plugin metrics for CloudWatch, written every minute and once
//! more when the host stops.

use std::time::Duration;

use anyhow::{Context, Result};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::layers::FanoutBuilder;
use plugin_metrics::{MetricsConfig, PluginMetrics};

/// How often the plugin metrics are written: CloudWatch's standard resolution.
const FLUSH_INTERVAL: Duration = Duration::from_secs(60);

/// The installed recorders; dropping them writes the plugin metrics not yet written.
pub struct Recorders {
    /// Renders `/metrics`.
    pub prometheus: PrometheusHandle,
    plugin_metrics: Option<PluginMetrics>,
}

/// Installs the process-wide recorders (once, before anything records).
pub fn install(config: &MetricsConfig) -> Result<Recorders> {
    let prometheus = PrometheusBuilder::new().build_recorder();
    let handle = prometheus.handle();
    let plugin_metrics = config.recorder("host");
    let installed = match &plugin_metrics {
        Some(cloudwatch) => {
            let fanout = FanoutBuilder::default()
                .add_recorder(prometheus)
                .add_recorder(cloudwatch.clone())
                .build();
            let flushing = cloudwatch.clone();
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(FLUSH_INTERVAL);
                interval.tick().await;
                loop {
                    interval.tick().await;
                    flushing.flush();
                }
            });
            metrics::set_global_recorder(fanout).map_err(|error| error.to_string())
        }
        None => metrics::set_global_recorder(prometheus).map_err(|error| error.to_string()),
    };
    installed
        .map_err(anyhow::Error::msg)
        .context("cannot install the metrics recorder")?;
    Ok(Recorders {
        prometheus: handle,
        plugin_metrics,
    })
}

impl Drop for Recorders {
    fn drop(&mut self) {
        if let Some(plugin_metrics) = &self.plugin_metrics {
            plugin_metrics.flush();
        }
    }
}
