//! Precompiled artifacts: a second engine loads the cached `.cwasm` instead of compiling.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::*;
use plugin_engine::{ArtifactSource, CompiledPlugin, EngineConfig, LoadOrigin, PluginEngine};

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

/// The artifact files in `dir`.
fn artifacts_in(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.map(|entry| entry.expect("entry").path()).collect())
        .unwrap_or_default()
}

/// Compiles `plugin` with `config` into `dir` (as a packaging step does); the artifact.
fn precompile_into(
    config: &EngineConfig,
    dir: &std::path::Path,
    plugin: &str,
) -> std::path::PathBuf {
    let engine = PluginEngine::new(EngineConfig {
        artifact_cache_dir: Some(dir.to_owned()),
        ..config.clone()
    })
    .expect("engine");
    engine
        .compile(plugin, &plugin_bytes(plugin), &BTreeSet::new())
        .expect("compile");
    let artifacts = artifacts_in(dir);
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    artifacts[0].clone()
}

/// `plugin` loaded by a default engine with `package` as its packaged artifacts and
/// `cache`, if any, as its artifact cache.
fn load_with_package(package: &Path, cache: Option<&Path>, plugin: &str) -> CompiledPlugin {
    let engine = PluginEngine::new(EngineConfig {
        packaged_artifact_dir: Some(package.to_owned()),
        artifact_cache_dir: cache.map(Path::to_owned),
        ..EngineConfig::default()
    })
    .expect("engine");
    engine
        .compile(plugin, &plugin_bytes(plugin), &BTreeSet::new())
        .expect("the plugin loads or compiles")
}

#[test]
fn a_packaged_artifact_is_loaded_first_and_the_cache_is_left_alone() {
    let (package, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    precompile_into(&EngineConfig::default(), package.path(), "enrich");
    let loaded = load_with_package(package.path(), Some(cache.path()), "enrich");
    assert!(matches!(loaded.report().origin, LoadOrigin::Precompiled(_)));
    assert_eq!(loaded.report().artifact, Some(ArtifactSource::Package));
    assert_eq!(artifacts_in(cache.path()), Vec::<std::path::PathBuf>::new());
}

#[test]
fn an_artifact_of_another_engine_configuration_is_not_used_and_the_plugin_compiles() {
    let fuel = EngineConfig {
        fuel_metering: true,
        ..EngineConfig::default()
    };
    let (other, own) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let other_artifact = precompile_into(&fuel, other.path(), "filter");
    let own_artifact = precompile_into(&EngineConfig::default(), own.path(), "filter");
    assert_ne!(other_artifact.file_name(), own_artifact.file_name());

    // Named for another engine fingerprint: not looked at.
    let cache = tempfile::tempdir().unwrap();
    let compiled = load_with_package(other.path(), Some(cache.path()), "filter");
    assert!(matches!(compiled.report().origin, LoadOrigin::Compiled(_)));
    assert_eq!(compiled.report().artifact, None);
    assert_eq!(
        artifacts_in(cache.path()).len(),
        1,
        "the compiled plugin is cached"
    );

    // Under this engine's name but built by the other configuration: wasmtime's
    // compatibility check refuses it.
    let forged = tempfile::tempdir().unwrap();
    std::fs::copy(
        &other_artifact,
        forged
            .path()
            .join(own_artifact.file_name().expect("a file name")),
    )
    .expect("copy");
    let compiled = load_with_package(forged.path(), None, "filter");
    assert!(matches!(compiled.report().origin, LoadOrigin::Compiled(_)));
    assert_eq!(compiled.report().artifact, None);
}
