//! `EngineConfig::perf_map`: plugin code mapped for `perf`, also when loaded precompiled.

use std::collections::BTreeSet;

use crate::common::*;
use plugin_engine::{EngineConfig, LoadOrigin, PluginEngine};

#[test]
fn with_the_perf_map_on_a_precompiled_plugin_loads_and_its_code_is_mapped() {
    let cache = tempfile::tempdir().expect("temp dir");
    let config = EngineConfig {
        artifact_cache_dir: Some(cache.path().to_owned()),
        ..EngineConfig::default()
    };
    let bytes = plugin_bytes("filter");
    PluginEngine::new(config.clone())
        .expect("engine")
        .compile("filter", &bytes, &BTreeSet::new())
        .expect("compile");

    let profiled = PluginEngine::new(EngineConfig {
        perf_map: true,
        ..config
    })
    .expect("engine with the perf map");
    let loaded = profiled
        .compile("filter", &bytes, &BTreeSet::new())
        .expect("load");
    assert!(
        matches!(loaded.report().origin, LoadOrigin::Precompiled(_)),
        "the perf map must not change which artifacts load: {:?}",
        loaded.report().origin
    );
    let plugin_functions = take_perf_map_functions(std::process::id());
    assert!(plugin_functions > 0, "the perf map maps no plugin function");
}
