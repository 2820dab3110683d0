//! Precompiled artifacts: a second engine loads the cached `.cwasm` instead of compiling.

use std::collections::BTreeSet;

use crate::common::*;
use plugin_engine::{EngineConfig, LoadOrigin, PluginEngine};

#[test]
fn a_second_engine_loads_the_precompiled_artifact() {
    let cache = tempfile::tempdir().expect("temp dir");
    let config = EngineConfig {
        artifact_cache_dir: Some(cache.path().to_owned()),
        ..EngineConfig::default()
    };
    let bytes = plugin_bytes("enrich");

    let first = PluginEngine::new(config.clone()).expect("engine");
    let compiled = first
        .compile("enrich", &bytes, &BTreeSet::new())
        .expect("compile");
    assert!(matches!(compiled.report().origin, LoadOrigin::Compiled(_)));
    let artifacts: Vec<_> = std::fs::read_dir(cache.path())
        .expect("cache dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert!(artifacts[0].starts_with(&compiled.version().to_string()));
    assert!(artifacts[0].ends_with(".cwasm"));

    let second = PluginEngine::new(config).expect("engine");
    let loaded = second
        .compile("enrich", &bytes, &BTreeSet::new())
        .expect("load");
    assert!(matches!(loaded.report().origin, LoadOrigin::Precompiled(_)));
    assert_eq!(loaded.version(), compiled.version());
}

#[test]
fn a_corrupt_artifact_is_ignored_and_the_plugin_compiles() {
    let cache = tempfile::tempdir().expect("temp dir");
    let config = EngineConfig {
        artifact_cache_dir: Some(cache.path().to_owned()),
        ..EngineConfig::default()
    };
    let bytes = plugin_bytes("filter");
    let engine = PluginEngine::new(config.clone()).expect("engine");
    engine
        .compile("filter", &bytes, &BTreeSet::new())
        .expect("compile");
    for entry in std::fs::read_dir(cache.path()).expect("cache dir") {
        std::fs::write(entry.expect("entry").path(), b"corrupt").expect("overwrite");
    }
    let engine = PluginEngine::new(config).expect("engine");
    let compiled = engine
        .compile("filter", &bytes, &BTreeSet::new())
        .expect("recompile");
    assert!(matches!(compiled.report().origin, LoadOrigin::Compiled(_)));
}
