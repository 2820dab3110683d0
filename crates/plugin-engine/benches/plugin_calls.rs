//! Per-event cost of validate + transform through the engine against the same logic
//! in native Rust, at batch sizes 1 and 100, with warm instances and with a fresh
//! instance per batch, and the cost of a pooled instantiation.
//!
//! Run with `cargo bench -p plugin-engine --bench plugin_calls` after `cargo xtask plugins`.
//! The engines keep a few instance places, as one batch at a time needs: their memory
//! reservations then fit under valgrind, so `valgrind --tool=callgrind` can count the
//! instructions of a run (see the README's engine section).

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use plugin_engine::{
    EngineConfig, Event, InstanceReuse, NoCoreData, Outcome, PluginChain, PluginEngine,
    PluginRegistry, PluginSettings,
};

const BOT_PATTERNS: [&str; 5] = ["bot", "crawler", "spider", "slurp", "headlesschrome"];

fn plugin_bytes(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/plugins")
        .join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|error| panic!("{}: {error}; run `cargo xtask plugins`", path.display()))
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
            ("checksum".into(), "b84e02d7".into()),
            ("customerId".into(), "4712".into()),
        ],
    }
}

/// The `filter` + `validate-tracking` logic written as plain Rust: the baseline.
fn native_chain(mut event: Event) -> Result<Option<Event>, String> {
    let user_agent = event
        .attribute("userAgent")
        .unwrap_or("")
        .to_ascii_lowercase();
    if BOT_PATTERNS
        .iter()
        .any(|pattern| user_agent.contains(pattern))
    {
        return Ok(None);
    }
    let digits = |name: &str| {
        event
            .attribute(name)
            .filter(|value| !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
            .is_some()
    };
    if !digits("programId") || !digits("customerId") {
        return Err("invalid ids".into());
    }
    let checksum_ok = event
        .attribute("checksum")
        .is_some_and(|value| !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !checksum_ok {
        return Err("invalid checksum".into());
    }
    event.set_attribute("valid", "true");
    Ok(Some(event))
}

/// An engine with a fresh instance per batch and two instance places: the bench runs one
/// batch at a time.
fn small_engine() -> EngineConfig {
    EngineConfig {
        max_concurrent_instances: 2,
        reuse: InstanceReuse::never(),
        ..EngineConfig::default()
    }
}

fn wasm_chain(engine: &PluginEngine, names: &[&str]) -> PluginChain {
    let registry = PluginRegistry::new(engine.clone());
    let steps = names
        .iter()
        .map(|name| {
            registry
                .register(name, PluginSettings::default(), &plugin_bytes(name))
                .expect("plugin registers")
        })
        .collect();
    PluginChain::new(engine.clone(), steps, Arc::new(NoCoreData))
}

fn per_event_cost(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let engine = PluginEngine::new(EngineConfig {
        reuse: InstanceReuse {
            idle_per_plugin: 2,
            max_idle: 2,
            ..InstanceReuse::default()
        },
        ..small_engine()
    })
    .expect("engine");
    let chain = wasm_chain(&engine, &["filter", "validate-tracking"]);
    let fresh_engine = PluginEngine::new(small_engine()).expect("engine");
    let fresh_chain = wasm_chain(&fresh_engine, &["filter", "validate-tracking"]);
    let mut group = c.benchmark_group("filter+validate per event");
    for batch in [1usize, 100] {
        let events: Vec<Event> = (0..batch).map(tracking_event).collect();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("native", batch), &events, |b, events| {
            b.iter(|| events.iter().cloned().map(native_chain).collect::<Vec<_>>())
        });
        for (label, chain) in [("wasm", &chain), ("wasm fresh instances", &fresh_chain)] {
            group.bench_with_input(BenchmarkId::new(label, batch), &events, |b, events| {
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

fn instantiation_cost(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let engine = PluginEngine::new(small_engine()).expect("engine");
    let chain = wasm_chain(&engine, &["validate-tracking"]);
    c.bench_function("pooled instantiation", |b| {
        b.to_async(&runtime)
            .iter(|| async { chain.warm_up().await.expect("instantiates") })
    });
}

criterion_group!(benches, per_event_cost, instantiation_cost);
criterion_main!(benches);
