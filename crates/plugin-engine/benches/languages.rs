//! What the `tracking` plugin costs in each language: a pooled instantiation, and
//! validate + transform (with a core-data lookup) per event at batch sizes 1 and 100.
//!
//! Run with `cargo bench -p plugin-engine --bench languages` after `cargo xtask plugins`.
//! Compiled code is cached in `target/plugin-artifacts/`, as in the conformance suite.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use plugin_engine::{
    EngineConfig, Event, InstanceReuse, Outcome, PluginChain, PluginEngine, PluginRegistry,
    PluginSettings, StaticCoreData,
};

const LANGUAGES: [&str; 5] = ["rust", "js", "python", "c", "zig"];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tracking_event(index: usize) -> Event {
    Event {
        id: format!("msg-{index}"),
        key: format!("msg-{index}"),
        timestamp_ms: 1_700_000_000_000,
        content_type: "application/json".into(),
        payload: Vec::new(),
        attributes: vec![
            ("programId".into(), "212313".into()),
            (
                "userAgent".into(),
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0".into(),
            ),
        ],
    }
}

/// One-plugin chains running each language's `tracking` plugin over the sample program,
/// keeping instances warm as configured by `reuse`.
fn chains(reuse: InstanceReuse) -> Vec<(&'static str, PluginChain)> {
    let engine = PluginEngine::new(EngineConfig {
        artifact_cache_dir: Some(repo_root().join("target/plugin-artifacts")),
        reuse,
        ..EngineConfig::default()
    })
    .expect("engine");
    let registry = PluginRegistry::new(engine.clone());
    let program = vec![
        ("programName".to_owned(), "Summer Video Preroll".to_owned()),
        ("checksum".to_owned(), "b84e02d7".to_owned()),
        ("customerId".to_owned(), "4712".to_owned()),
        ("customerName".to_owned(), "Globex Travel".to_owned()),
    ];
    let core_data = Arc::new(StaticCoreData::new(HashMap::from([(
        "212313".to_owned(),
        program,
    )])));
    LANGUAGES
        .iter()
        .map(|language| {
            let path = repo_root().join(format!("target/plugins/tracking-{language}.wasm"));
            let bytes = std::fs::read(&path).unwrap_or_else(|error| {
                panic!("{}: {error}; run `cargo xtask plugins`", path.display())
            });
            let plugin = registry
                .register(language, PluginSettings::default(), &bytes)
                .expect("plugin registers");
            let chain = PluginChain::new(engine.clone(), vec![plugin], core_data.clone());
            (*language, chain)
        })
        .collect()
}

fn per_language(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fresh = chains(InstanceReuse::never());
    let mut group = c.benchmark_group("tracking: pooled instantiation");
    for (language, chain) in &fresh {
        group.bench_function(*language, |b| {
            b.to_async(&runtime)
                .iter(|| async { chain.warm_up().await.expect("instantiates") })
        });
    }
    group.finish();
    drop(fresh);

    let chains = chains(InstanceReuse::default());
    let mut group = c.benchmark_group("tracking: validate + transform per event");
    for batch in [1usize, 100] {
        let events: Vec<Event> = (0..batch).map(tracking_event).collect();
        group.throughput(Throughput::Elements(batch as u64));
        for (language, chain) in &chains {
            group.bench_with_input(BenchmarkId::new(*language, batch), &events, |b, events| {
                b.to_async(&runtime).iter(|| async {
                    let outcomes = chain.process(events.clone()).await;
                    assert!(matches!(outcomes[0].outcome, Outcome::Accepted(_)));
                    outcomes
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = per_language
}
criterion_main!(benches);
