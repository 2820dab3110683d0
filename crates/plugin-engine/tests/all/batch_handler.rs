//! The optional `batch-handler` export (contract 0.1.1; events kept in place since
//! 0.1.2): a plugin that exports it is called once for many events, and every event
//! still gets the outcome `handler` would have given it, failures included. The conformance test runs the Rust `tracking`
//! plugin (batch) and the other languages (`handler`) against the same fixture.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use plugin_engine::{
    CallFailure, CoreDataLookup, CoreRecord, Event, LookupError, NoCoreData, Outcome, PluginChain,
    PluginLimits, PluginRegistry, PluginSettings,
};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

use crate::common::*;

/// The `instanceCalls` that `hostile-stateful` stamped on each accepted event (how many
/// events its instance had handled, this one included), or the outcome's kind.
fn stamps(outcomes: &[plugin_engine::ChainOutcome]) -> Vec<String> {
    outcomes
        .iter()
        .map(|outcome| match &outcome.outcome {
            Outcome::Accepted(events) => events[0]
                .attribute("instanceCalls")
                .expect("the plugin stamps every event")
                .to_owned(),
            Outcome::Failed { failure, .. } => format!("failed: {}", failure.kind()),
            other => panic!("unexpected outcome {other:?}"),
        })
        .collect()
}

fn stateful_chain(settings: PluginSettings, core_data: Arc<dyn CoreDataLookup>) -> PluginChain {
    single_plugin_chain(&engine(), "hostile-stateful", settings, core_data).1
}

#[test]
fn the_report_tells_which_plugins_export_batch_handler() {
    let registry = PluginRegistry::new(engine());
    let report = |name: &str| {
        registry
            .register(name, PluginSettings::default(), &plugin_bytes(name))
            .expect("registers")
            .active()
            .report()
            .clone()
    };
    let filter = report("filter");
    assert!(filter.handles_batches);
    assert!(
        filter
            .exports
            .iter()
            .any(|export| export == "adtrack:plugin/batch-handler@0.1.2"),
        "{:?}",
        filter.exports
    );
    assert!(!report("tracking-c").handles_batches);
}

#[tokio::test]
async fn one_instance_handles_a_batch_in_order() {
    let chain = stateful_chain(PluginSettings::default(), Arc::new(NoCoreData));
    let events = (0..100).map(|n| event(&format!("e{n}"), &[])).collect();
    let outcomes = chain.process(events).await;
    let expected: Vec<String> = (1..=100).map(|n| n.to_string()).collect();
    assert_eq!(stamps(&outcomes), expected);
    for (n, outcome) in outcomes.iter().enumerate() {
        let Outcome::Accepted(events) = &outcome.outcome else {
            unreachable!("stamps checked every outcome");
        };
        assert_eq!(events[0].id, format!("e{n}"));
    }
}

#[tokio::test]
async fn a_trap_mid_batch_fails_that_event_alone() {
    let chain = stateful_chain(PluginSettings::default(), Arc::new(NoCoreData));
    let events = vec![
        event("a", &[]),
        event("b", &[("trap", "")]),
        event("c", &[]),
        event("d", &[]),
    ];
    let outcomes = chain.process(events).await;
    // The batch call trapped, so every event went through `handler`: `a` on a fresh
    // instance, `b` trapped it, `c` and `d` on the next fresh one.
    assert_eq!(stamps(&outcomes), ["1", "failed: trap", "1", "2"]);
    let next = chain.process(vec![event("e", &[])]).await;
    assert_eq!(
        stamps(&next),
        ["3"],
        "the next batch is batched again, warm"
    );
}

#[tokio::test]
async fn events_after_a_reported_failure_run_on_a_fresh_instance() {
    let chain = stateful_chain(PluginSettings::default(), Arc::new(NoCoreData));
    let events = vec![
        event("a", &[]),
        event("b", &[("fail", "")]),
        event("c", &[]),
        event("d", &[]),
    ];
    let outcomes = chain.process(events).await;
    assert_eq!(stamps(&outcomes), ["1", "failed: reported", "1", "2"]);
    let Outcome::Failed { failure, .. } = &outcomes[1].outcome else {
        unreachable!("stamps checked it");
    };
    assert_eq!(
        *failure,
        CallFailure::Reported("asked to fail after 2 calls".into())
    );
}

/// Answers lookups of `hang` never, and of anything else with nothing.
struct HangsOn(&'static str);

#[async_trait]
impl CoreDataLookup for HangsOn {
    async fn lookup(&self, key: &str) -> Result<Option<CoreRecord>, LookupError> {
        if key == self.0 {
            std::future::pending().await
        } else {
            Ok(None)
        }
    }
}

#[tokio::test]
async fn a_batch_call_that_runs_out_of_time_loses_no_event() {
    let settings = PluginSettings {
        limits: PluginLimits {
            timeout: Duration::from_millis(50),
            ..PluginLimits::default()
        },
        ..PluginSettings::default()
    };
    let chain = stateful_chain(settings, Arc::new(HangsOn("hang")));
    let events = vec![
        event("a", &[("lookup", "known")]),
        event("b", &[("lookup", "hang")]),
        event("c", &[]),
    ];
    let outcomes = chain.process(events).await;
    assert_eq!(stamps(&outcomes), ["1", "failed: timeout", "1"]);
}

#[tokio::test]
async fn an_event_over_the_output_limits_in_a_batch_fails_alone() {
    let settings = PluginSettings {
        limits: PluginLimits {
            max_output_events: 10,
            ..PluginLimits::default()
        },
        ..PluginSettings::default()
    };
    let chain = stateful_chain(settings, Arc::new(NoCoreData));
    let events = vec![
        event("a", &[]),
        event("b", &[("copies", "11")]),
        event("c", &[("copies", "10")]),
    ];
    let outcomes = chain.process(events).await;
    assert_eq!(stamps(&outcomes), ["1", "failed: output_too_large", "1"]);
    let Outcome::Accepted(copies) = &outcomes[2].outcome else {
        unreachable!("stamps checked it");
    };
    assert_eq!(copies.len(), 10, "ten copies are within the limit");
}

/// Sets attribute `name` as the example plugins' `transform` does: every attribute of
/// that name removed, then the new one appended.
fn set(event: &mut Event, name: &str, value: &str) {
    event.attributes.retain(|(key, _)| key != name);
    event.attributes.push((name.to_owned(), value.to_owned()));
}

/// The value of counter `name` summed over its labels, as `snapshotter` recorded it.
fn counted(snapshotter: &Snapshotter, name: &str) -> u64 {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == name)
        .map(|(.., value)| match value {
            DebugValue::Counter(count) => count,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

#[test]
fn plugins_reading_events_in_place_give_what_transform_gives() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The chain runs on this thread, so the engine's metrics reach `recorder`.
    metrics::with_local_recorder(&recorder, || runtime.block_on(in_place_mixed_batch()));
    // `filter` sees every event, `enrich` the others than bots, `validate-tracking` those
    // of known programs.
    let not_bots = (0..150).filter(|n| n % 5 != 0);
    let known = not_bots.clone().filter(|n| n % 7 != 0);
    let calls = 150 + not_bots.count() + known.count();
    assert_eq!(counted(&snapshotter, "plugin_calls_total"), calls as u64);
    assert_eq!(
        counted(&snapshotter, "plugin_batch_fallbacks_total"),
        0,
        "every event was answered in place, none through handler"
    );
}

/// Runs 150 mixed events through `filter`, `enrich` and `validate-tracking` and checks
/// each outcome against what their `transform`s specify.
async fn in_place_mixed_batch() {
    let engine = engine();
    let registry = PluginRegistry::new(engine.clone());
    let steps = ["filter", "enrich", "validate-tracking"]
        .map(|name| {
            registry
                .register(name, PluginSettings::default(), &plugin_bytes(name))
                .expect("registers")
        })
        .to_vec();
    let chain = PluginChain::new(engine, steps, sample_core_data());
    // 150 events, so the batch spans three calls: every fifth a bot, every seventh of an
    // unknown program, every eleventh with stale values of attributes the plugins set,
    // some repeated, which must be replaced, not added to.
    let events: Vec<Event> = (0..150)
        .map(|n| {
            let mut event = complete_tracking_event(&format!("e{n}"));
            if n % 5 == 0 {
                set(&mut event, "userAgent", "Googlebot/2.1");
            }
            if n % 7 == 0 {
                set(&mut event, "programId", "999");
            }
            if n % 11 == 0 {
                event.attributes.insert(0, ("valid".into(), "no".into()));
                event
                    .attributes
                    .push(("customerName".into(), "stale".into()));
                event.attributes.push(("valid".into(), "maybe".into()));
            }
            event
        })
        .collect();
    let outcomes = chain.process(events.clone()).await;
    for (n, (input, outcome)) in events.into_iter().zip(outcomes).enumerate() {
        if n % 5 == 0 {
            assert_eq!(
                outcome.outcome,
                Outcome::Accepted(Vec::new()),
                "e{n} is a bot"
            );
        } else if n % 7 == 0 {
            let Outcome::Rejected { by, reason } = outcome.outcome else {
                panic!("e{n}: expected a rejection, got {:?}", outcome.outcome);
            };
            assert_eq!(
                (&*by.name, reason.as_str()),
                ("enrich", "unknown program 999")
            );
        } else {
            let mut expected = input;
            set(&mut expected, "programName", "Summer Video Preroll");
            set(&mut expected, "checksum", "b84e02d7");
            set(&mut expected, "customerId", "4712");
            set(&mut expected, "customerName", "Globex Travel");
            set(&mut expected, "valid", "true");
            assert_eq!(outcome.outcome, Outcome::Accepted(vec![expected]), "e{n}");
        }
    }
}

#[tokio::test]
async fn an_event_kept_over_the_output_limits_fails_alone() {
    let settings = PluginSettings {
        limits: PluginLimits {
            max_output_bytes: 1_000,
            ..PluginLimits::default()
        },
        ..PluginSettings::default()
    };
    let (_registry, chain) = single_plugin_chain(
        &engine(),
        "validate-tracking",
        settings,
        Arc::new(NoCoreData),
    );
    // Just under the limit, until `valid` = `true` takes it over.
    let mut large = complete_tracking_event("large");
    set(&mut large, "padding", "");
    let padding = 1_000 - large.approximate_size() - 4;
    set(&mut large, "padding", &"x".repeat(padding));
    assert_eq!(large.approximate_size(), 996);
    let events = vec![
        complete_tracking_event("a"),
        large,
        complete_tracking_event("c"),
    ];
    let outcomes = chain.process(events).await;
    let kinds: Vec<String> = outcomes
        .iter()
        .map(|outcome| match &outcome.outcome {
            Outcome::Accepted(events) => events[0].attribute("valid").unwrap_or("").to_owned(),
            Outcome::Failed { failure, .. } => failure.kind().to_owned(),
            other => panic!("unexpected outcome {other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["true", "output_too_large", "true"]);
}
