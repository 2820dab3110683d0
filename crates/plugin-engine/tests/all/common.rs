//! Helpers shared by the engine's integration tests.

use std::collections::HashMap;
use std::sync::Arc;

pub use test_support::{plugin_bytes, repo_root, take_perf_map_functions};

use plugin_engine::{
    CoreDataLookup, EngineConfig, Event, PluginChain, PluginEngine, PluginRegistry, PluginSettings,
    StaticCoreData,
};

/// An engine with default settings.
pub fn engine() -> PluginEngine {
    PluginEngine::new(EngineConfig::default()).expect("engine")
}

/// Core data holding the sample program 212313.
pub fn sample_core_data() -> Arc<dyn CoreDataLookup> {
    let record = vec![
        ("programName".to_owned(), "Summer Video Preroll".to_owned()),
        ("checksum".to_owned(), "b84e02d7".to_owned()),
        ("customerId".to_owned(), "4712".to_owned()),
        ("customerName".to_owned(), "Globex Travel".to_owned()),
    ];
    Arc::new(StaticCoreData::new(HashMap::from([(
        "212313".to_owned(),
        record,
    )])))
}

/// A one-plugin chain running component `component` registered as `name`.
pub fn single_plugin_chain(
    engine: &PluginEngine,
    component: &str,
    settings: PluginSettings,
    core_data: Arc<dyn CoreDataLookup>,
) -> (Arc<PluginRegistry>, PluginChain) {
    let registry = Arc::new(PluginRegistry::new(engine.clone()));
    let plugin = registry
        .register(component, settings, &plugin_bytes(component))
        .expect("plugin registers");
    let chain = PluginChain::new(engine.clone(), vec![plugin], core_data);
    (registry, chain)
}

/// A tracking event with the given attributes.
pub fn event(id: &str, attributes: &[(&str, &str)]) -> Event {
    Event {
        id: id.to_owned(),
        key: id.to_owned(),
        timestamp_ms: 1_700_000_000_000,
        content_type: "application/json".to_owned(),
        payload: Vec::new(),
        attributes: attributes
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
    }
}

/// A tracking event that passes every example plugin.
pub fn complete_tracking_event(id: &str) -> Event {
    event(
        id,
        &[
            ("programId", "212313"),
            ("userAgent", "Mozilla/5.0 Firefox/128.0"),
            ("checksum", "b84e02d7"),
            ("customerId", "4712"),
        ],
    )
}
