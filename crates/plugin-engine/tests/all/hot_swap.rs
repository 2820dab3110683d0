//! Swapping plugins while calls are in flight; rollback; refusing broken candidates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::*;
use plugin_engine::{
    EngineError, NoCoreData, Outcome, PluginChain, PluginLimits, PluginRegistry, PluginSettings,
    PluginVersion,
};

/// An event the `filter` plugin accepts and `validate-tracking` rejects (no checksum),
/// so which version handled it is visible in the outcome.
fn probe() -> plugin_engine::Event {
    event(
        "probe",
        &[("programId", "212313"), ("userAgent", "Mozilla/5.0")],
    )
}

fn setup() -> (
    Arc<PluginRegistry>,
    PluginChain,
    PluginVersion,
    PluginVersion,
) {
    let engine = engine();
    let registry = Arc::new(PluginRegistry::new(engine.clone()));
    let old = plugin_bytes("filter");
    // A generous deadline: this test is about the swap, and a loaded machine (the rest
    // of the suite runs beside it) can hold a call past the default 100 ms.
    let settings = PluginSettings {
        limits: PluginLimits {
            timeout: std::time::Duration::from_secs(5),
            ..PluginLimits::default()
        },
        ..PluginSettings::default()
    };
    let plugin = registry.register("gate", settings, &old).expect("register");
    let chain = PluginChain::new(engine, vec![plugin], Arc::new(NoCoreData));
    let new = plugin_bytes("validate-tracking");
    (
        registry,
        chain,
        PluginVersion::of(&old),
        PluginVersion::of(&new),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_under_concurrent_load_fails_no_call_and_takes_effect() {
    let (registry, chain, old, new) = setup();
    let swapped = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for _ in 0..4 {
        let chain = chain.clone();
        let swapped = swapped.clone();
        callers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut calls_after_swap = 0;
            while calls_after_swap < 20 {
                let was_swapped = swapped.load(Ordering::SeqCst);
                let result = chain.process_one(probe()).await;
                let version = result.processed_by[0].version;
                match result.outcome {
                    Outcome::Accepted(_) | Outcome::Rejected { .. } => {}
                    other => panic!("a call failed during the swap: {other:?}"),
                }
                if was_swapped {
                    calls_after_swap += 1;
                }
                seen.push((was_swapped, version));
            }
            seen
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let report = registry
        .swap("gate", &plugin_bytes("validate-tracking"))
        .expect("swap");
    swapped.store(true, Ordering::SeqCst);
    assert_eq!((report.previous, report.active), (old, new));

    for caller in callers {
        let seen = caller.await.expect("caller task");
        assert!(
            seen.iter().any(|(_, version)| *version == old),
            "calls ran before the swap"
        );
        for (was_swapped, version) in seen {
            if was_swapped {
                assert_eq!(
                    version, new,
                    "a call started after the swap ran the old version"
                );
            }
        }
    }
    match chain.process_one(probe()).await.outcome {
        Outcome::Rejected { by, reason } => {
            assert_eq!(by.version, new);
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("the new version should reject the probe: {other:?}"),
    }
}

#[tokio::test]
async fn rollback_restores_the_previous_version() {
    let (registry, chain, old, new) = setup();
    registry
        .swap("gate", &plugin_bytes("validate-tracking"))
        .expect("swap");
    assert_eq!(registry.list()[0].active, new);
    assert_eq!(registry.list()[0].previous, [old]);

    let report = registry.rollback("gate").expect("rollback");
    assert_eq!((report.previous, report.active), (new, old));
    let result = chain.process_one(probe()).await;
    assert_eq!(result.processed_by[0].version, old);
    assert!(matches!(result.outcome, Outcome::Accepted(ref events) if events.len() == 1));

    assert!(matches!(
        registry.rollback("gate"),
        Err(EngineError::NothingToRollBack(_))
    ));
    assert!(matches!(
        registry.rollback("nope"),
        Err(EngineError::UnknownPlugin(_))
    ));
}

#[tokio::test]
async fn broken_candidates_are_refused_and_the_working_version_stays() {
    let (registry, chain, old, _) = setup();
    let candidates: [(&str, Vec<u8>); 3] = [
        ("garbage", b"definitely not wasm".to_vec()),
        // A core module, not a component: the smallest valid wasm module.
        ("core module", b"\0asm\x01\0\0\0".to_vec()),
        ("denied import", plugin_bytes("hostile-denied-import")),
    ];
    for (what, bytes) in candidates {
        let error = registry
            .swap("gate", &bytes)
            .err()
            .unwrap_or_else(|| panic!("{what} must be refused"));
        assert!(
            matches!(
                error,
                EngineError::Compile { .. } | EngineError::DeniedImport { .. }
            ),
            "{what}: {error}"
        );
        assert_eq!(registry.list()[0].active, old, "{what} replaced the plugin");
    }
    let result = chain.process_one(probe()).await;
    assert_eq!(result.processed_by[0].version, old);
    assert!(matches!(result.outcome, Outcome::Accepted(_)));
}
