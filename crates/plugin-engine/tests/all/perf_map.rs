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
    let path = format!("/tmp/perf-{}.map", std::process::id());
    let map = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    // Each line is `<start> <size> <name>`; a stripped plugin's functions are named by
    // index, one built with its name section by name.
    let plugin_functions = map
        .lines()
        .filter(|line| line.contains("wasm[0]::function["))
        .count();
    std::fs::remove_file(&path).expect("remove the map");
    assert!(plugin_functions > 0, "{path} maps no plugin function");
}
