//! One CloudWatch embedded metric format document: the counts of one plugin version.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{DIMENSION_SETS, METRICS};

/// The counts of one plugin version on one side since the last flush.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EmfDocument {
    /// `host` or `consumer`.
    pub side: &'static str,
    /// The plugin's name in the pipeline.
    pub plugin: String,
    /// The plugin version (short sha256 of its component).
    pub version: String,
    /// Every call.
    pub calls: u64,
    /// Calls that trapped, timed out, broke a limit or reported a failure.
    pub failures: u64,
    /// Calls whose event the plugin rejected as bad input.
    pub rejections: u64,
}

impl EmfDocument {
    /// The EMF JSON object, stamped with `timestamp_ms`, in `namespace`.
    pub fn to_json(&self, namespace: &str, timestamp_ms: u64) -> Value {
        let metrics: Vec<Value> = METRICS
            .iter()
            .map(|(name, unit)| json!({ "Name": name, "Unit": unit }))
            .collect();
        let mut document = Map::new();
        document.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": DIMENSION_SETS,
                    "Metrics": metrics,
                }],
            }),
        );
        document.insert("Side".into(), self.side.into());
        document.insert("Plugin".into(), self.plugin.clone().into());
        document.insert("Version".into(), self.version.clone().into());
        for ((name, _), value) in METRICS
            .iter()
            .zip([self.calls, self.failures, self.rejections])
        {
            document.insert((*name).into(), value.into());
        }
        Value::Object(document)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_metric_and_dimension_has_a_value_in_the_document() {
        let document = EmfDocument {
            side: "host",
            plugin: "filter".into(),
            version: "0123abcd".into(),
            calls: 5,
            failures: 2,
            rejections: 1,
        }
        .to_json("adtrack/test", 1_700_000_000_000);
        let directive = &document["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "adtrack/test");
        assert_eq!(document["_aws"]["Timestamp"], 1_700_000_000_000_u64);
        for set in directive["Dimensions"].as_array().unwrap() {
            for dimension in set.as_array().unwrap() {
                assert!(
                    document[dimension.as_str().unwrap()].is_string(),
                    "{dimension}"
                );
            }
        }
        let values: Vec<u64> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|metric| document[metric["Name"].as_str().unwrap()].as_u64().unwrap())
            .collect();
        assert_eq!(values, [5, 2, 1]);
    }
}
