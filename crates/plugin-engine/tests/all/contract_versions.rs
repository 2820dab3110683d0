//! The versioned contract: a component built for today's contract (a fixture kept in
//! the repository, never rebuilt) keeps loading and running after every later change
//! to the WIT, and a component built for a version this host does not accept is
//! refused with both versions named.

use crate::common::*;
use plugin_engine::{EngineError, Outcome, PluginChain, PluginRegistry, PluginSettings};

/// The `tracking` plugin (Zig) as built for `adtrack:plugin@0.1.0`.
const FIXTURE: &[u8] = include_bytes!("../fixtures/contract-0.1.0-tracking.wasm");

#[tokio::test]
async fn a_component_built_for_contract_0_1_0_still_loads_and_runs() {
    let engine = engine();
    let registry = PluginRegistry::new(engine.clone());
    let plugin = registry
        .register("tracking-0.1.0", PluginSettings::default(), FIXTURE)
        .expect("a component built for 0.1.0 loads on this host");
    assert_eq!(
        plugin.active().report().contract,
        Some(semver::Version::new(0, 1, 0))
    );
    let chain = PluginChain::new(engine, vec![plugin], sample_core_data());
    let outcome = chain.process_one(complete_tracking_event("m1")).await;
    let Outcome::Accepted(events) = outcome.outcome else {
        panic!(
            "the fixture accepts a complete event: {:?}",
            outcome.outcome
        );
    };
    assert_eq!(
        events[0].attribute("programName"),
        Some("Summer Video Preroll")
    );
    assert_eq!(events[0].attribute("valid"), Some("true"));
}

#[test]
fn a_component_built_for_an_incompatible_version_is_refused_naming_both() {
    // The same component, its contract names rewritten to 2.0.0 (same length, so the
    // binary stays well-formed).
    let retargeted = replace_all(FIXTURE, b"adtrack:plugin/", b"@0.1.0", b"@2.0.0");
    let registry = PluginRegistry::new(engine());
    let error = registry
        .register("tracking-2.0.0", PluginSettings::default(), &retargeted)
        .err()
        .expect("a component built for 2.0.0 is refused");
    assert!(
        matches!(error, EngineError::IncompatibleContract { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("adtrack:plugin@2.0.0"), "{message}");
    assert!(
        message.contains("implements adtrack:plugin@0.1.2"),
        "{message}"
    );
}

/// `bytes` with `from` replaced by `to` wherever it ends a name starting with `prefix`.
fn replace_all(bytes: &[u8], prefix: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = bytes.to_vec();
    let mut start = 0;
    while let Some(at) = find(&out[start..], prefix) {
        let name_start = start + at;
        let window_end = (name_start + 64).min(out.len());
        if let Some(version) = find(&out[name_start..window_end], from) {
            let at = name_start + version;
            out[at..at + to.len()].copy_from_slice(to);
        }
        start = name_start + prefix.len();
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
