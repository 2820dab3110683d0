//! Publish, conflict, rollback and refusal, on the local store and on S3 (moto).

use std::sync::Arc;

use plugin_engine::{EngineConfig, PipelineFile, PluginEngine, Side};
use releases::{LocalStore, Publish, RegistryError, RegistryStore, ReleaseRegistry, S3Store};
use test_support::{plugin_bytes, service_env, unique, write_pipeline};

const PIPELINE: &str = r#"
[plugins.enrich]
path = "{plugins}/enrich.wasm"

[plugins.tagger]
path = "{plugins}/filter.wasm"

[plugins.checker]
path = "{plugins}/validate-tracking.wasm"

[pipeline]
host = ["enrich", "tagger"]
consumer = ["checker"]
"#;

/// A fresh registry in each store, with the pipeline's first release seeded.
async fn registries(dir: &std::path::Path) -> Vec<(&'static str, ReleaseRegistry)> {
    let pipeline = PipelineFile::load(&write_pipeline(dir, PIPELINE)).expect("pipeline");
    let local: Arc<dyn RegistryStore> =
        Arc::new(LocalStore::open(&dir.join("registry")).expect("local store"));
    let bucket = unique("registry").to_lowercase();
    let endpoint = service_env("S3_ENDPOINT_URL");
    let s3 = S3Store::connect(&bucket, "registry/", Some(&endpoint)).await;
    test_support::create_bucket(&bucket).await;
    let mut registries = Vec::new();
    for (name, store) in [
        ("local", local),
        ("s3", Arc::new(s3) as Arc<dyn RegistryStore>),
    ] {
        let registry = ReleaseRegistry::new(store);
        let first = registry.seed(&pipeline).await.expect("seed");
        assert_eq!(first.number, 1, "{name}");
        registries.push((name, registry));
    }
    registries
}

fn engine() -> PluginEngine {
    PluginEngine::new(EngineConfig::default()).expect("engine")
}

fn publish<'a>(plugin: &'a str, component: &'a [u8]) -> Publish<'a> {
    Publish {
        side: Side::Host,
        plugin,
        component,
        new: false,
        trial: None,
    }
}

#[tokio::test]
async fn publishing_makes_a_new_numbered_release_current_and_rollback_restores_an_old_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let validate = plugin_bytes("validate-tracking");
    for (name, registry) in registries(dir.path()).await {
        let seeded = registry.current().await.unwrap().expect(name);
        let (second, _) = registry
            .publish(&engine(), publish("tagger", &validate))
            .await
            .expect(name);
        assert_eq!(second.number, 2, "{name}");
        assert_eq!(
            second.host.plugins["tagger"].version,
            plugin_engine::PluginVersion::of(&validate),
            "{name}"
        );
        assert_eq!(second.host.chain, seeded.host.chain, "{name}");
        assert_eq!(
            second.consumer, seeded.consumer,
            "{name}: the other side is unchanged"
        );
        let pointer = registry.store().current().await.unwrap().expect(name);
        assert_eq!((pointer.release, pointer.generation), (2, 2), "{name}");

        let back = registry.rollback(None).await.expect(name);
        assert_eq!(
            back, seeded,
            "{name}: release 1 is current again, unchanged"
        );
        let pointer = registry.store().current().await.unwrap().expect(name);
        assert_eq!((pointer.release, pointer.generation), (1, 3), "{name}");
        assert_eq!(
            registry.releases().await.unwrap().len(),
            2,
            "{name}: every release stays"
        );

        // Publishing after a rollback takes the next free number.
        let (third, _) = registry
            .publish(&engine(), publish("tagger", &validate))
            .await
            .expect(name);
        assert_eq!(third.number, 3, "{name}");
    }
}

#[tokio::test]
async fn of_two_concurrent_publishes_exactly_one_wins_and_the_other_gets_a_conflict() {
    let dir = tempfile::tempdir().expect("temp dir");
    let validate = plugin_bytes("validate-tracking");
    let fan_out = plugin_bytes("fan-out");
    for (name, registry) in registries(dir.path()).await {
        let engine = engine();
        let (first, second) = tokio::join!(
            registry.publish(&engine, publish("tagger", &validate)),
            registry.publish(&engine, publish("tagger", &fan_out)),
        );
        let outcomes = [
            first.map(|(release, _)| release),
            second.map(|(release, _)| release),
        ];
        let winners: Vec<_> = outcomes
            .iter()
            .filter_map(|outcome| outcome.as_ref().ok())
            .collect();
        let conflicts = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Err(RegistryError::Conflict(_))))
            .count();
        assert_eq!((winners.len(), conflicts), (1, 1), "{name}: {outcomes:?}");
        let current = registry.current().await.unwrap().expect(name);
        assert_eq!(&current, winners[0], "{name}: the winner is current");
        assert!(
            outcomes.iter().any(|outcome| matches!(outcome, Err(error) if error.to_string().starts_with("conflict:"))),
            "{name}: the loser is told clearly"
        );
    }
}

#[tokio::test]
async fn a_broken_or_over_privileged_or_unknown_candidate_is_refused_before_anything_is_stored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let denied = plugin_bytes("hostile-denied-import");
    for (name, registry) in registries(dir.path()).await {
        let engine = engine();
        let garbage = registry
            .publish(&engine, publish("tagger", b"not a component"))
            .await
            .unwrap_err();
        assert!(
            matches!(garbage, RegistryError::Refused(_)),
            "{name}: {garbage}"
        );
        let over_privileged = registry
            .publish(&engine, publish("tagger", &denied))
            .await
            .unwrap_err();
        assert!(
            over_privileged.to_string().contains("not granted"),
            "{name}: {over_privileged}"
        );
        let unknown = registry
            .publish(&engine, publish("ghost", &plugin_bytes("filter")))
            .await
            .unwrap_err();
        assert!(
            matches!(unknown, RegistryError::UnknownPlugin { .. })
                && unknown.to_string().contains("--new"),
            "{name}: {unknown}"
        );
        assert_eq!(
            registry.releases().await.unwrap().len(),
            1,
            "{name}: nothing was stored"
        );
        let version = plugin_engine::PluginVersion::of(&denied);
        assert!(
            matches!(
                registry.store().component(version).await,
                Err(RegistryError::UnknownComponent(_))
            ),
            "{name}: the refused component is not in the registry"
        );

        // With --new, a plugin joins the end of the chain.
        let (added, _) = registry
            .publish(
                &engine,
                Publish {
                    new: true,
                    ..publish("ghost", &plugin_bytes("filter"))
                },
            )
            .await
            .expect(name);
        assert_eq!(added.host.chain, ["enrich", "tagger", "ghost"], "{name}");
    }
}

#[tokio::test]
async fn heartbeats_say_which_release_each_instance_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, registry) in registries(dir.path()).await {
        registry
            .heartbeat(Side::Host, "task-a", 1, Vec::new())
            .await
            .unwrap();
        registry
            .heartbeat(Side::Host, "task-b", 1, Vec::new())
            .await
            .unwrap();
        registry
            .heartbeat(Side::Consumer, "lambda-1", 1, Vec::new())
            .await
            .unwrap();
        let status = registry
            .status(std::time::Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            status.summary(),
            "current release 1; host 2/2 instances on release 1, consumer 1/1 instances on release 1",
            "{name}"
        );
    }
}
