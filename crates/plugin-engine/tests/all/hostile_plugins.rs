//! Hostile plugins fail their own calls with a typed reason; the engine keeps serving.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use plugin_engine::{
    CallFailure, EngineConfig, EngineError, Grant, NoCoreData, Outcome, PluginChain, PluginEngine,
    PluginLimits, PluginRegistry, PluginSettings,
};

fn limits(timeout_ms: u64, memory_mib: usize) -> PluginSettings {
    PluginSettings {
        limits: PluginLimits {
            timeout: Duration::from_millis(timeout_ms),
            memory_bytes: memory_mib << 20,
            ..PluginLimits::default()
        },
        ..PluginSettings::default()
    }
}

fn failure(outcome: Outcome) -> CallFailure {
    match outcome {
        Outcome::Failed { failure, .. } => failure,
        other => panic!("expected the plugin call to fail, got {other:?}"),
    }
}

/// After a hostile call, the same engine still runs a well-behaved plugin.
async fn engine_still_serves(engine: &PluginEngine) {
    let (_, chain) = single_plugin_chain(
        engine,
        "validate-tracking",
        PluginSettings::default(),
        Arc::new(NoCoreData),
    );
    let outcome = chain.process_one(complete_tracking_event("after")).await;
    assert!(
        matches!(outcome.outcome, Outcome::Accepted(ref events) if events.len() == 1),
        "a good plugin must still work after a hostile one: {outcome:?}"
    );
}

#[tokio::test]
async fn an_infinite_loop_is_interrupted_at_its_deadline() {
    let engine = engine();
    let (_, chain) = single_plugin_chain(
        &engine,
        "hostile-infinite-loop",
        limits(50, 64),
        Arc::new(NoCoreData),
    );
    let outcomes = chain
        .process(vec![event("loop-1", &[]), event("loop-2", &[])])
        .await;
    for outcome in outcomes {
        assert_eq!(
            failure(outcome.outcome),
            CallFailure::Timeout(Duration::from_millis(50))
        );
    }
    engine_still_serves(&engine).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_looping_plugin_does_not_stall_other_work_on_the_same_thread() {
    let engine = engine();
    let (_, looping) = single_plugin_chain(
        &engine,
        "hostile-infinite-loop",
        limits(2_000, 64),
        Arc::new(NoCoreData),
    );
    let hostile = tokio::spawn(async move { looping.process_one(event("loop", &[])).await });
    tokio::task::yield_now().await;
    let (_, good) = single_plugin_chain(
        &engine,
        "validate-tracking",
        PluginSettings::default(),
        Arc::new(NoCoreData),
    );
    let outcome = good.process_one(complete_tracking_event("meanwhile")).await;
    assert!(matches!(outcome.outcome, Outcome::Accepted(_)));
    assert!(
        !hostile.is_finished(),
        "the good call finished while the looping plugin was still being interrupted"
    );
    let looped = hostile.await.expect("task");
    assert!(matches!(failure(looped.outcome), CallFailure::Timeout(_)));
}

#[tokio::test]
async fn a_memory_bomb_hits_its_memory_limit() {
    let engine = engine();
    let (_, chain) = single_plugin_chain(
        &engine,
        "hostile-memory-bomb",
        limits(5_000, 16),
        Arc::new(NoCoreData),
    );
    let outcome = chain.process_one(event("bomb", &[])).await;
    assert_eq!(failure(outcome.outcome), CallFailure::MemoryLimit(16 << 20));
    engine_still_serves(&engine).await;
}

#[tokio::test]
async fn a_panicking_plugin_traps_and_the_panic_message_is_reported() {
    let engine = engine();
    let (_, chain) = single_plugin_chain(
        &engine,
        "hostile-trap",
        PluginSettings::default(),
        Arc::new(NoCoreData),
    );
    let outcomes = chain
        .process(vec![event("trap-1", &[]), event("trap-2", &[])])
        .await;
    for outcome in outcomes {
        match failure(outcome.outcome) {
            CallFailure::Trap(reason) => assert!(
                reason.contains("hostile plugin panicked on purpose"),
                "{reason}"
            ),
            other => panic!("expected a trap, got {other:?}"),
        }
    }
    engine_still_serves(&engine).await;
}

#[tokio::test]
async fn huge_output_is_refused() {
    let engine = engine();
    let (_, chain) = single_plugin_chain(
        &engine,
        "hostile-huge-output",
        limits(10_000, 256),
        Arc::new(NoCoreData),
    );
    let outcome = chain.process_one(event("huge", &[])).await;
    match failure(outcome.outcome) {
        CallFailure::OutputTooLarge(reason) => assert!(reason.contains("1000 events"), "{reason}"),
        other => panic!("expected output too large, got {other:?}"),
    }
    engine_still_serves(&engine).await;
}

#[tokio::test]
async fn a_plugin_importing_networking_is_refused_unless_granted() {
    let engine = engine();
    let registry = PluginRegistry::new(engine.clone());
    let bytes = plugin_bytes("hostile-denied-import");
    let error = registry
        .register("sneaky", PluginSettings::default(), &bytes)
        .err()
        .expect("a plugin importing wasi:sockets is refused");
    match error {
        EngineError::DeniedImport { name, import } => {
            assert_eq!(name, "sneaky");
            assert!(import.starts_with("wasi:sockets/"), "{import}");
        }
        other => panic!("expected a denied import, got {other}"),
    }
    assert!(matches!(
        registry.get("sneaky"),
        Err(EngineError::UnknownPlugin(_))
    ));

    let granted = PluginSettings {
        grants: BTreeSet::from([Grant::Network]),
        ..PluginSettings::default()
    };
    registry
        .register("networked", granted, &bytes)
        .expect("the same plugin loads when the pipeline grants network");
    engine_still_serves(&engine).await;
}

#[tokio::test]
async fn fuel_limits_stop_a_loop_before_its_deadline() {
    let engine = PluginEngine::new(EngineConfig {
        fuel_metering: true,
        ..EngineConfig::default()
    })
    .expect("engine");
    let settings = PluginSettings {
        limits: PluginLimits {
            fuel: Some(5_000_000),
            timeout: Duration::from_secs(30),
            ..PluginLimits::default()
        },
        ..PluginSettings::default()
    };
    let (_, chain) = single_plugin_chain(
        &engine,
        "hostile-infinite-loop",
        settings,
        Arc::new(NoCoreData),
    );
    let outcome = chain.process_one(event("loop", &[])).await;
    assert_eq!(
        failure(outcome.outcome),
        CallFailure::FuelExhausted(5_000_000)
    );
}

#[tokio::test]
async fn fuel_limits_need_fuel_metering() {
    let registry = PluginRegistry::new(engine());
    let settings = PluginSettings {
        limits: PluginLimits {
            fuel: Some(1_000),
            ..PluginLimits::default()
        },
        ..PluginSettings::default()
    };
    let error = registry
        .register("metered", settings, &plugin_bytes("filter"))
        .err()
        .expect("refused");
    assert!(
        matches!(error, EngineError::InvalidLimits { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn one_hostile_plugin_in_a_chain_fails_only_the_events_it_handles() {
    let engine = engine();
    let registry = PluginRegistry::new(engine.clone());
    let good = registry
        .register(
            "validate-tracking",
            PluginSettings::default(),
            &plugin_bytes("validate-tracking"),
        )
        .expect("good plugin");
    let trap = registry
        .register(
            "hostile-trap",
            PluginSettings::default(),
            &plugin_bytes("hostile-trap"),
        )
        .expect("hostile plugin");
    let guarded = PluginChain::new(engine.clone(), vec![good.clone()], Arc::new(NoCoreData));
    let doomed = PluginChain::new(engine, vec![good, trap], Arc::new(NoCoreData));
    let doomed_outcome = doomed.process_one(complete_tracking_event("x")).await;
    assert!(
        matches!(doomed_outcome.outcome, Outcome::Failed { ref by, .. } if &*by.name == "hostile-trap")
    );
    let outcome = guarded.process_one(complete_tracking_event("y")).await;
    assert!(matches!(outcome.outcome, Outcome::Accepted(_)));
}
