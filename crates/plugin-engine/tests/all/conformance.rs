//! The `tracking` plugin written in every supported language (Rust, JavaScript, Python, C,
//! Zig) against one fixture of events and expected outcomes, and hot-swapped in place of
//! the Rust one while calls are in flight.
//!
//! The components come from `cargo xtask plugins` (`target/plugins/tracking-<language>.wasm`);
//! a missing one fails the test. Compiled code is cached in `target/plugin-artifacts/` so
//! the multi-megabyte JavaScript and Python components compile once per version.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use plugin_engine::{
    ChainOutcome, CoreDataLookup, CoreRecord, EngineConfig, Event, LookupError, Outcome,
    PluginChain, PluginEngine, PluginLimits, PluginRegistry, PluginSettings, PluginVersion,
    StaticCoreData,
};
use serde::Deserialize;

/// Every language with a `tracking` plugin; the component of `<language>` is
/// `target/plugins/tracking-<language>.wasm`. Rust is the reference.
const LANGUAGES: [&str; 5] = ["rust", "js", "python", "c", "zig"];

/// One fixture file: the core data the cases need and the cases.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fixture {
    core_data: HashMap<String, CoreRecord>,
    cases: Vec<Case>,
}

/// One input event, how the plugin is set up for it, and what must become of it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    name: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// When set, every core-data lookup fails with this message.
    core_data_error: Option<String>,
    event: EventSpec,
    expect: Expected,
}

/// An event as the fixture writes it; unset fields take defaults.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventSpec {
    id: Option<String>,
    key: Option<String>,
    timestamp_ms: Option<u64>,
    content_type: Option<String>,
    #[serde(default)]
    payload_hex: String,
    attributes: Vec<(String, String)>,
}

/// The outcome a case expects from every language.
#[derive(Debug, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
enum Expected {
    /// One event out: the input with exactly these attributes, in this order.
    Accepted { attributes: Vec<(String, String)> },
    /// Refused as bad input with exactly this reason.
    Rejected { reason: String },
    /// Sent back for a retry with exactly this reason.
    Retry { reason: String },
}

/// Core data whose store is unreachable: every lookup fails with the same message.
struct UnreachableCoreData(String);

#[async_trait]
impl CoreDataLookup for UnreachableCoreData {
    async fn lookup(&self, _key: &str) -> Result<Option<CoreRecord>, LookupError> {
        Err(LookupError::from_message(self.0.clone()))
    }
}

#[tokio::test]
async fn every_language_agrees_with_the_fixture() {
    let fixture = fixture();
    let components = components();
    let mut disagreements = Vec::new();
    let mut checked = 0;
    for language in LANGUAGES {
        let registry = PluginRegistry::new(engine().clone());
        // Cases sharing a plugin setup run as one batch on one instance, as the host runs them.
        for (group, (config, core_data_error)) in setups(fixture).into_iter().enumerate() {
            let cases: Vec<(usize, &Case)> = fixture
                .cases
                .iter()
                .enumerate()
                .filter(|(_, case)| {
                    case.config == config && case.core_data_error == core_data_error
                })
                .collect();
            let name = format!("tracking-{language}-{group}");
            let settings = PluginSettings {
                config: config.clone(),
                ..settings()
            };
            let plugin = registry
                .register(&name, settings, &components[language])
                .unwrap_or_else(|error| panic!("{name} does not register: {error}"));
            let core_data: Arc<dyn CoreDataLookup> = match &core_data_error {
                Some(message) => Arc::new(UnreachableCoreData(message.clone())),
                None => Arc::new(StaticCoreData::new(fixture.core_data.clone())),
            };
            let chain = PluginChain::new(engine().clone(), vec![plugin], core_data);
            let events = cases
                .iter()
                .map(|(index, case)| input(*index, case))
                .collect();
            let outcomes = chain.process(events).await;
            let version = PluginVersion::of(&components[language]);
            for ((index, case), outcome) in cases.iter().zip(&outcomes) {
                checked += 1;
                if let Err(disagreement) = check(&input(*index, case), case, outcome, version) {
                    disagreements.push(format!(
                        "  {language}: case {index} ({}): {disagreement}",
                        case.name
                    ));
                }
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {checked} outcomes disagree with tests/fixtures/conformance.json:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    assert_eq!(checked, LANGUAGES.len() * fixture.cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_hot_swaps_in_place_of_rust_without_a_failed_call() {
    hot_swap_in_place_of_rust("js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hot_swaps_in_place_of_rust_without_a_failed_call() {
    hot_swap_in_place_of_rust("python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_hot_swaps_in_place_of_rust_without_a_failed_call() {
    hot_swap_in_place_of_rust("c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zig_hot_swaps_in_place_of_rust_without_a_failed_call() {
    hot_swap_in_place_of_rust("zig").await;
}

/// Tasks calling the plugin during a swap.
const CALLERS: usize = 4;

/// Registers the Rust plugin as `tracking`, has 4 tasks call it continuously, swaps in
/// `language`'s component, and checks that every call succeeded with the expected result
/// and that every call started after the swap ran the new version.
async fn hot_swap_in_place_of_rust(language: &str) {
    let fixture = fixture();
    let components = components();
    let (old, new) = (
        PluginVersion::of(&components["rust"]),
        PluginVersion::of(&components[language]),
    );
    let registry = Arc::new(PluginRegistry::new(engine().clone()));
    let plugin = registry
        .register("tracking", settings(), &components["rust"])
        .expect("the Rust plugin registers");
    let core_data = Arc::new(StaticCoreData::new(fixture.core_data.clone()));
    let chain = PluginChain::new(engine().clone(), vec![plugin], core_data);
    let (index, probe) = fixture
        .cases
        .iter()
        .enumerate()
        .find(|(_, case)| {
            matches!(case.expect, Expected::Accepted { .. })
                && case.config.is_empty()
                && case.core_data_error.is_none()
        })
        .expect("the fixture has an accepted case");
    let probe = Arc::new((input(index, probe), probe));

    let swapped = Arc::new(AtomicBool::new(false));
    let callers_started = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for _ in 0..CALLERS {
        let (chain, swapped, probe) = (chain.clone(), swapped.clone(), probe.clone());
        let callers_started = callers_started.clone();
        callers.push(tokio::spawn(async move {
            let (event, case) = &*probe;
            let mut seen = Vec::new();
            let mut calls_after_swap = 0;
            while calls_after_swap < 20 {
                let was_swapped = swapped.load(Ordering::SeqCst);
                let outcome = chain.process_one(event.clone()).await;
                let version = outcome.processed_by[0].version;
                if let Err(disagreement) = check(event, case, &outcome, version) {
                    panic!("a call failed during the swap (version {version}): {disagreement}");
                }
                if was_swapped {
                    calls_after_swap += 1;
                }
                if seen.is_empty() {
                    callers_started.fetch_add(1, Ordering::SeqCst);
                }
                seen.push((was_swapped, version));
            }
            seen
        }));
    }
    // Swap only once every caller has finished a call on the Rust plugin.
    while callers_started.load(Ordering::SeqCst) < CALLERS {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let report = registry
        .swap("tracking", &components[language])
        .unwrap_or_else(|error| panic!("swapping in the {language} plugin failed: {error}"));
    swapped.store(true, Ordering::SeqCst);
    assert_eq!((report.previous, report.active), (old, new));

    for caller in callers {
        let seen = caller.await.expect("caller task");
        assert!(
            seen.iter().any(|(_, version)| *version == old),
            "no call ran on the Rust plugin before the swap"
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
}

/// Whether `outcome` is what `case` expects of a plugin at `version` fed `input`.
fn check(
    input: &Event,
    case: &Case,
    outcome: &ChainOutcome,
    version: PluginVersion,
) -> Result<(), String> {
    let processed_by: Vec<PluginVersion> = outcome.processed_by.iter().map(|p| p.version).collect();
    if processed_by != [version] {
        return Err(format!(
            "processed by {processed_by:?}, expected only {version}"
        ));
    }
    match (&case.expect, &outcome.outcome) {
        (Expected::Accepted { attributes }, Outcome::Accepted(events)) => {
            let expected = Event {
                attributes: attributes.clone(),
                ..input.clone()
            };
            if events.as_slice() == [expected.clone()] {
                Ok(())
            } else {
                Err(format!("accepted as {events:?}, expected [{expected:?}]"))
            }
        }
        (Expected::Rejected { reason }, Outcome::Rejected { reason: got, .. })
        | (Expected::Retry { reason }, Outcome::Retry { reason: got, .. })
            if got == reason =>
        {
            Ok(())
        }
        (expected, got) => Err(format!("got {got:?}, expected {expected:?}")),
    }
}

/// The event of case `index`, with the defaults the fixture describes.
fn input(index: usize, case: &Case) -> Event {
    let spec = &case.event;
    Event {
        id: spec.id.clone().unwrap_or_else(|| format!("case-{index}")),
        key: spec.key.clone().unwrap_or_else(|| format!("case-{index}")),
        timestamp_ms: spec.timestamp_ms.unwrap_or(1_700_000_000_000),
        content_type: spec
            .content_type
            .clone()
            .unwrap_or_else(|| "application/json".to_owned()),
        payload: hex::decode(&spec.payload_hex)
            .unwrap_or_else(|error| panic!("case {index}: bad payloadHex: {error}")),
        attributes: spec.attributes.clone(),
    }
}

/// The distinct plugin setups (config, core-data failure) the cases use, in first-use order.
fn setups(fixture: &Fixture) -> Vec<(BTreeMap<String, String>, Option<String>)> {
    let mut setups = Vec::new();
    for case in &fixture.cases {
        let setup = (case.config.clone(), case.core_data_error.clone());
        if !setups.contains(&setup) {
            setups.push(setup);
        }
    }
    setups
}

/// Limits for the tests: the default limits with a time budget generous enough for a
/// loaded 2-core CI machine; these tests check behaviour, not speed.
fn settings() -> PluginSettings {
    PluginSettings {
        limits: PluginLimits {
            timeout: Duration::from_secs(2),
            ..PluginLimits::default()
        },
        ..PluginSettings::default()
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conformance.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("{} is malformed: {error}", path.display()))
    })
}

/// One engine for the whole test binary, caching compiled code in `target/plugin-artifacts/`.
fn engine() -> &'static PluginEngine {
    static ENGINE: OnceLock<PluginEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        PluginEngine::new(EngineConfig {
            artifact_cache_dir: Some(repo_root().join("target/plugin-artifacts")),
            ..EngineConfig::default()
        })
        .expect("engine")
    })
}

/// Every language's component, compiled once (into the artifact cache) before any test
/// uses it. Panics naming every missing component.
fn components() -> &'static BTreeMap<&'static str, Vec<u8>> {
    static COMPONENTS: OnceLock<BTreeMap<&'static str, Vec<u8>>> = OnceLock::new();
    COMPONENTS.get_or_init(|| {
        let mut components = BTreeMap::new();
        let mut missing = Vec::new();
        for language in LANGUAGES {
            let component = format!("target/plugins/tracking-{language}.wasm");
            match std::fs::read(repo_root().join(&component)) {
                Ok(bytes) => {
                    components.insert(language, bytes);
                }
                Err(error) => missing.push(format!("  {component} ({error})")),
            }
        }
        assert!(
            missing.is_empty(),
            "the conformance suite needs every language's tracking plugin, and these are \
             missing:\n{}\nbuild them with `cargo xtask plugins` (`cargo xtask test` does it first)",
            missing.join("\n")
        );
        for (language, bytes) in &components {
            engine()
                .compile(&format!("tracking-{language}"), bytes, &BTreeSet::new())
                .unwrap_or_else(|error| panic!("the {language} plugin does not load: {error}"));
        }
        components
    })
}
