//! Warm instances: reused between batches, replaced after a failure, a call cut short,
//! their call limit, memory growth or a swap.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use plugin_engine::{
    CoreDataLookup, CoreRecord, EngineConfig, InstanceReuse, LookupError, NoCoreData, Outcome,
    PluginChain, PluginEngine, PluginRegistry, PluginSettings,
};

use crate::common::*;

/// The `instanceCalls` the `hostile-stateful` plugin stamped on the event: how many
/// calls its instance had served, this one included.
async fn instance_calls(chain: &PluginChain, attributes: &[(&str, &str)]) -> Outcome {
    chain.process_one(event("e", attributes)).await.outcome
}

fn calls_of(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Accepted(events) => events[0]
            .attribute("instanceCalls")
            .expect("the plugin stamps every event")
            .to_owned(),
        other => panic!("expected the event to be accepted, got {other:?}"),
    }
}

async fn calls_seen(chain: &PluginChain, batches: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..batches {
        seen.push(calls_of(&instance_calls(chain, &[]).await));
    }
    seen
}

fn stateful_chain(reuse: InstanceReuse) -> (Arc<PluginRegistry>, PluginChain) {
    let engine = PluginEngine::new(EngineConfig {
        reuse,
        ..EngineConfig::default()
    })
    .expect("engine");
    single_plugin_chain(
        &engine,
        "hostile-stateful",
        PluginSettings::default(),
        Arc::new(NoCoreData),
    )
}

#[tokio::test]
async fn a_warm_instance_serves_the_next_batches() {
    let (_registry, chain) = stateful_chain(InstanceReuse::default());
    assert_eq!(calls_seen(&chain, 3).await, ["1", "2", "3"]);
}

#[tokio::test]
async fn without_reuse_every_batch_gets_a_fresh_instance() {
    let (_registry, chain) = stateful_chain(InstanceReuse::never());
    assert_eq!(calls_seen(&chain, 3).await, ["1", "1", "1"]);
}

#[tokio::test]
async fn an_instance_is_replaced_after_its_call_limit() {
    // validate + transform: two calls per event.
    let reuse = InstanceReuse {
        max_calls: 4,
        ..InstanceReuse::default()
    };
    let (_registry, chain) = stateful_chain(reuse);
    assert_eq!(calls_seen(&chain, 5).await, ["1", "2", "1", "2", "1"]);
}

#[tokio::test]
async fn an_instance_whose_memory_grew_past_the_limit_is_replaced() {
    let reuse = InstanceReuse {
        max_memory_growth_bytes: 1 << 20,
        ..InstanceReuse::default()
    };
    let (_registry, chain) = stateful_chain(reuse);
    assert_eq!(calls_seen(&chain, 1).await, ["1"]);
    let leaked = instance_calls(&chain, &[("leakBytes", "2097152")]).await;
    assert_eq!(calls_of(&leaked), "2");
    assert_eq!(calls_seen(&chain, 2).await, ["1", "2"]);
}

#[tokio::test]
async fn a_failed_instance_never_serves_again() {
    let (_registry, chain) = stateful_chain(InstanceReuse::default());
    assert_eq!(calls_seen(&chain, 2).await, ["1", "2"]);
    let trapped = instance_calls(&chain, &[("trap", "yes")]).await;
    assert!(matches!(trapped, Outcome::Failed { .. }), "{trapped:?}");
    assert_eq!(calls_seen(&chain, 2).await, ["1", "2"]);
}

/// A lookup that never answers.
struct Hanging;

#[async_trait]
impl CoreDataLookup for Hanging {
    async fn lookup(&self, _key: &str) -> Result<Option<CoreRecord>, LookupError> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn an_instance_whose_batch_was_dropped_mid_call_never_serves_again() {
    let engine = PluginEngine::new(EngineConfig::default()).expect("engine");
    let (_registry, chain) = single_plugin_chain(
        &engine,
        "hostile-stateful",
        PluginSettings::default(),
        Arc::new(Hanging),
    );
    assert_eq!(calls_seen(&chain, 2).await, ["1", "2"]);
    let cut_short = tokio::time::timeout(
        Duration::from_millis(20),
        instance_calls(&chain, &[("lookup", "212313")]),
    )
    .await;
    assert!(cut_short.is_err(), "the lookup never answers");
    assert_eq!(calls_seen(&chain, 1).await, ["1"]);
}

#[tokio::test]
async fn a_swap_and_a_rollback_leave_no_instance_of_another_version_serving() {
    let (registry, chain) = stateful_chain(InstanceReuse::default());
    assert_eq!(calls_seen(&chain, 2).await, ["1", "2"]);
    registry
        .swap("hostile-stateful", &plugin_bytes("filter"))
        .expect("swap");
    let filtered = instance_calls(&chain, &[]).await;
    let stamped = matches!(&filtered, Outcome::Accepted(events)
        if events.iter().any(|event| event.attribute("instanceCalls").is_some()));
    assert!(!stamped, "the new version serves at once: {filtered:?}");
    registry.rollback("hostile-stateful").expect("rollback");
    assert_eq!(calls_seen(&chain, 2).await, ["1", "2"]);
}
