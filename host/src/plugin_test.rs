//! `plugin test`: golden cases for one plugin. A cases file is JSON lines, each an input
//! event (with optional plugin config and core data) and the outcome it must give:
//!
//! ```json
//! {"name":"a bot is dropped","event":{"attributes":{"userAgent":"Googlebot"}},"expect":{"outcome":"filtered"}}
//! ```
//!
//! The outcome is compared as `plugin run` prints it, without the plugin versions (a
//! rebuild changes them, not the behaviour). A failing case prints each field that
//! differs, with payloads compared as JSON when they are JSON; `--update` writes the
//! actual outcomes into the file instead.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use plugin_engine::{
    CoreDataLookup, EngineConfig, Event, NoCoreData, PluginChain, PluginEngine, PluginRegistry,
    PluginSettings, StaticCoreData,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::views::{EventInput, OutcomeView};

/// The timestamp of a case's event when it sets none, so outcomes are reproducible.
const CASE_TIMESTAMP_MS: u64 = 1_700_000_000_000;

/// One golden case.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    /// What the case shows.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
    /// The input event.
    event: Value,
    /// Plugin config for this case (`config.get`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    config: BTreeMap<String, String>,
    /// Core data for this case's lookups: {"key": {"field": "value"}}.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    core_data: Option<Map<String, Value>>,
    /// The outcome the event must give.
    #[serde(default)]
    expect: Value,
}

/// What a test run found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TestSummary {
    /// Cases that gave their expected outcome.
    pub passed: usize,
    /// Cases that did not; each with its differences, for people.
    pub failed: Vec<String>,
    /// Cases whose expectation `--update` rewrote.
    pub updated: usize,
}

/// Runs every case of `cases` through the component `file` (core data from
/// `core_data`, unless a case brings its own); with `update`, rewrites the expectations.
pub async fn run_cases(
    file: &Path,
    cases: &Path,
    core_data: Option<Arc<dyn CoreDataLookup>>,
    update: bool,
) -> Result<TestSummary> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let text = std::fs::read_to_string(cases)
        .with_context(|| format!("cannot read {}", cases.display()))?;
    // Each case registers the plugin with its own config: compiled once, then loaded
    // from the artifact cache.
    let engine = PluginEngine::new(EngineConfig {
        artifact_cache_dir: Some(std::env::temp_dir().join("adtrack-plugin-test-artifacts")),
        ..EngineConfig::default()
    })?;
    let name = file
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_owned());
    let mut summary = TestSummary::default();
    let mut written = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let number = index + 1;
        let mut case: Case = serde_json::from_str(line)
            .with_context(|| format!("{} line {number} is not a case", cases.display()))?;
        let label = if case.name.is_empty() {
            format!("line {number}")
        } else {
            format!("line {number} ({})", case.name)
        };
        let lookup = match &case.core_data {
            Some(records) => static_core_data(records),
            None => core_data.clone().unwrap_or_else(|| Arc::new(NoCoreData)),
        };
        let registry = PluginRegistry::new(engine.clone());
        let settings = PluginSettings {
            config: case.config.clone(),
            ..PluginSettings::default()
        };
        let plugin = registry.register(&name, settings, &bytes)?;
        let chain = PluginChain::new(engine.clone(), vec![plugin], lookup);
        let actual = match case_event(&case.event, number) {
            Ok(event) => {
                let outcome = chain.process_one(event).await;
                comparable(&OutcomeView::new(&outcome, true))?
            }
            Err(reason) => comparable(&OutcomeView::InvalidInput { reason })?,
        };
        let differences = differences(&case.expect, &actual);
        if differences.is_empty() {
            summary.passed += 1;
        } else if update {
            case.expect = actual;
            summary.updated += 1;
        } else {
            summary
                .failed
                .push(format!("{label}:\n  {}", differences.join("\n  ")));
        }
        written.push(serde_json::to_string(&case)?);
    }
    if update && summary.updated > 0 {
        std::fs::write(cases, written.join("\n") + "\n")
            .with_context(|| format!("cannot write {}", cases.display()))?;
    }
    if summary.passed + summary.failed.len() + summary.updated == 0 {
        bail!("{} holds no cases", cases.display());
    }
    Ok(summary)
}

/// The case's event, with a fixed timestamp when it sets none.
fn case_event(input: &Value, number: usize) -> Result<Event, String> {
    let mut input = input.clone();
    if let Value::Object(fields) = &mut input {
        fields
            .entry("timestampMs")
            .or_insert(Value::from(CASE_TIMESTAMP_MS));
    }
    let input: EventInput =
        serde_json::from_value(input).map_err(|error| format!("not an event: {error}"))?;
    input
        .into_event(format!("case-{number}"))
        .map_err(|error| error.to_string())
}

/// An outcome as cases state it: without plugin versions.
pub fn comparable(outcome: &OutcomeView) -> Result<Value> {
    let mut value = serde_json::to_value(outcome)?;
    if let Value::Object(fields) = &mut value {
        fields.remove("processedBy");
        fields.remove("version");
    }
    Ok(value)
}

/// Core data for lookups from JSON records: {"key": {"field": "value"}}; values that
/// are not strings are kept as their JSON text.
pub fn static_core_data(records: &Map<String, Value>) -> Arc<dyn CoreDataLookup> {
    let records = records
        .iter()
        .map(|(key, fields)| {
            let fields = fields
                .as_object()
                .map(|fields| {
                    fields
                        .iter()
                        .map(|(field, value)| match value {
                            Value::String(text) => (field.clone(), text.clone()),
                            other => (field.clone(), other.to_string()),
                        })
                        .collect()
                })
                .unwrap_or_default();
            (key.clone(), fields)
        })
        .collect();
    Arc::new(StaticCoreData::new(records))
}

/// Every place where `actual` differs from `expected`, one line each, named by its
/// path (`events[0].attributes.programName`). Payloads that are JSON text on both sides
/// are compared as JSON.
pub fn differences(expected: &Value, actual: &Value) -> Vec<String> {
    let mut found = Vec::new();
    diff("", expected, actual, &mut found);
    found
}

fn diff(path: &str, expected: &Value, actual: &Value, found: &mut Vec<String>) {
    let at = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => {
            let keys: std::collections::BTreeSet<&String> = want.keys().chain(got.keys()).collect();
            for key in keys {
                match (want.get(key), got.get(key)) {
                    (Some(want), Some(got)) => diff(&at(key), want, got, found),
                    (Some(want), None) => {
                        found.push(format!("{}: expected {want}, missing", at(key)))
                    }
                    (None, Some(got)) => {
                        found.push(format!("{}: not expected, got {got}", at(key)))
                    }
                    (None, None) => {}
                }
            }
        }
        (Value::Array(want), Value::Array(got)) => {
            for index in 0..want.len().max(got.len()) {
                let here = format!("{path}[{index}]");
                match (want.get(index), got.get(index)) {
                    (Some(want), Some(got)) => diff(&here, want, got, found),
                    (Some(want), None) => found.push(format!("{here}: expected {want}, missing")),
                    (None, Some(got)) => found.push(format!("{here}: not expected, got {got}")),
                    (None, None) => {}
                }
            }
        }
        (Value::String(want), Value::String(got)) if want != got => {
            let parsed = (
                serde_json::from_str::<Value>(want),
                serde_json::from_str::<Value>(got),
            );
            match parsed {
                (Ok(want @ (Value::Object(_) | Value::Array(_))), Ok(got)) => {
                    diff(path, &want, &got, found)
                }
                _ => found.push(format!("{path}: expected {want:?}, got {got:?}")),
            }
        }
        (want, got) if want != got => found.push(format!("{path}: expected {want}, got {got}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_difference_names_the_field_and_both_values() {
        let expected =
            json!({"outcome":"accepted","events":[{"attributes":{"programName":"Summer"}}]});
        let actual =
            json!({"outcome":"accepted","events":[{"attributes":{"programName":"Winter"}}]});
        assert_eq!(
            differences(&expected, &actual),
            [r#"events[0].attributes.programName: expected "Summer", got "Winter""#]
        );
    }

    #[test]
    fn json_payloads_are_compared_field_by_field() {
        let expected = json!({"payload": r#"{"a":1,"b":[1,2]}"#});
        let actual = json!({"payload": r#"{"b":[1,3],"a":1}"#});
        assert_eq!(
            differences(&expected, &actual),
            ["payload.b[1]: expected 2, got 3"]
        );
    }

    #[test]
    fn missing_and_unexpected_fields_are_named() {
        let expected = json!({"outcome":"rejected","reason":"missing checksum"});
        let actual = json!({"outcome":"filtered","plugin":"filter"});
        assert_eq!(
            differences(&expected, &actual),
            [
                r#"outcome: expected "rejected", got "filtered""#,
                r#"plugin: not expected, got "filter""#,
                r#"reason: expected "missing checksum", missing"#,
            ]
        );
    }
}
