//! What a process spends on plugins is bounded: instances in use, the host memory a
//! plugin's output takes, and compilation time.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use crate::thread_allocations::peak_allocation;
use plugin_engine::{
    CallFailure, EngineConfig, EngineError, NoCoreData, Outcome, PluginEngine, PluginLimits,
    PluginSettings,
};

fn settings(limits: PluginLimits) -> PluginSettings {
    PluginSettings {
        limits,
        ..PluginSettings::default()
    }
}

#[tokio::test]
async fn a_call_that_finds_the_pool_in_full_use_is_told_to_retry_and_the_next_one_runs() {
    let engine = PluginEngine::new(EngineConfig {
        max_concurrent_instances: 1,
        instance_wait: Duration::from_millis(50),
        ..EngineConfig::default()
    })
    .expect("engine");
    let spinning = settings(PluginLimits {
        timeout: Duration::from_millis(1_000),
        ..PluginLimits::default()
    });
    let (_, holder) = single_plugin_chain(
        &engine,
        "hostile-infinite-loop",
        spinning,
        Arc::new(NoCoreData),
    );
    let (_, waiter) = single_plugin_chain(
        &engine,
        "validate-tracking",
        PluginSettings::default(),
        Arc::new(NoCoreData),
    );
    // The first call takes the only instance and spins until its deadline; the second
    // waits its 50 ms for an instance meanwhile.
    let (held, refused) = tokio::join!(
        holder.process_one(event("holder", &[])),
        waiter.process_one(complete_tracking_event("waiter")),
    );
    assert!(
        matches!(
            held.outcome,
            Outcome::Failed {
                failure: CallFailure::Timeout(_),
                ..
            }
        ),
        "{held:?}"
    );
    match refused.outcome {
        Outcome::Retry { by, reason } => {
            assert_eq!(&*by.name, "validate-tracking");
            assert!(reason.contains("capacity"), "{reason}");
        }
        other => panic!("expected a retry while the pool is in full use, got {other:?}"),
    }
    let after = waiter.process_one(complete_tracking_event("after")).await;
    assert!(
        matches!(after.outcome, Outcome::Accepted(ref events) if events.len() == 1),
        "the instance is given back after the call: {after:?}"
    );
}

#[tokio::test]
async fn output_over_the_limits_is_refused_before_it_is_copied_into_the_host() {
    let engine = engine();
    let limits = PluginLimits {
        memory_bytes: 256 << 20,
        timeout: Duration::from_secs(30),
        max_output_bytes: 1 << 20,
        ..PluginLimits::default()
    };
    let (_, chain) = single_plugin_chain(
        &engine,
        "hostile-huge-output",
        settings(limits),
        Arc::new(NoCoreData),
    );
    // 100 000 copies of a 1 KiB event: about 100 MiB in the guest's memory.
    let mut input = event("huge", &[]);
    input.payload = vec![7; 1024];
    let (outcome, allocated) = peak_allocation(chain.process_one(input)).await;
    match outcome.outcome {
        Outcome::Failed {
            failure: CallFailure::OutputTooLarge(reason),
            ..
        } => assert!(reason.contains("before it was copied"), "{reason}"),
        other => panic!("expected output too large, got {other:?}"),
    }
    assert!(
        allocated < 32 << 20,
        "the host allocated {allocated} bytes for output it refused"
    );
}

#[tokio::test]
async fn a_compilation_over_its_time_limit_is_refused_with_the_limit() {
    let engine = PluginEngine::new(EngineConfig {
        compile_timeout: Duration::from_millis(1),
        ..EngineConfig::default()
    })
    .expect("engine");
    let error = engine
        .compile_bounded("enrich", plugin_bytes("enrich"), BTreeSet::new())
        .await
        .expect_err("compiling takes longer than 1 ms");
    match error {
        EngineError::CompileTimeout { name, limit } => {
            assert_eq!(name, "enrich");
            assert_eq!(limit, Duration::from_millis(1));
        }
        other => panic!("expected a compile timeout, got {other}"),
    }
}

#[tokio::test]
async fn an_oversized_component_is_refused_before_it_waits_to_compile() {
    let engine = PluginEngine::new(EngineConfig {
        max_component_bytes: 1024,
        ..EngineConfig::default()
    })
    .expect("engine");
    let error = engine
        .compile_bounded("enrich", plugin_bytes("enrich"), BTreeSet::new())
        .await
        .expect_err("the component is larger than 1 KiB");
    assert!(
        matches!(error, EngineError::TooLarge { limit: 1024, .. }),
        "{error}"
    );
}
