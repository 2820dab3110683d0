//! Every outcome of the example plugins, through the engine.

use std::path::Path;
use std::sync::Arc;

use crate::common::*;
use async_trait::async_trait;
use plugin_engine::{
    CoreDataLookup, CoreRecord, LookupError, NoCoreData, Outcome, PipelineFile, PluginSettings,
    Side,
};

fn accepted(outcome: Outcome) -> Vec<plugin_engine::Event> {
    match outcome {
        Outcome::Accepted(events) => events,
        other => panic!("expected the event to be accepted, got {other:?}"),
    }
}

fn rejection(outcome: Outcome) -> String {
    match outcome {
        Outcome::Rejected { reason, .. } => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn settings(config: &[(&str, &str)]) -> PluginSettings {
    PluginSettings {
        config: config
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
        ..PluginSettings::default()
    }
}

#[tokio::test]
async fn validate_tracking_accepts_complete_events_and_marks_them_valid() {
    let (_, chain) = single_plugin_chain(
        &engine(),
        "validate-tracking",
        PluginSettings::default(),
        Arc::new(NoCoreData),
    );
    let result = chain.process_one(complete_tracking_event("m1")).await;
    let events = accepted(result.outcome);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].attribute("valid"), Some("true"));
    assert_eq!(events[0].attribute("programId"), Some("212313"));
    assert_eq!(&*result.processed_by[0].name, "validate-tracking");
}

#[tokio::test]
async fn validate_tracking_rejects_missing_or_invalid_fields_with_the_field_named() {
    let (_, chain) = single_plugin_chain(
        &engine(),
        "validate-tracking",
        PluginSettings::default(),
        Arc::new(NoCoreData),
    );
    let cases = [
        (
            event("a", &[("checksum", "ab12"), ("customerId", "1")]),
            "programId",
        ),
        (
            event(
                "b",
                &[
                    ("programId", "21x3"),
                    ("checksum", "ab12"),
                    ("customerId", "1"),
                ],
            ),
            "programId",
        ),
        (
            event("c", &[("programId", "1"), ("customerId", "1")]),
            "checksum",
        ),
        (
            event(
                "d",
                &[
                    ("programId", "1"),
                    ("checksum", "ab12"),
                    ("customerId", "abc"),
                ],
            ),
            "customerId",
        ),
    ];
    let (events, fields): (Vec<_>, Vec<_>) = cases.into_iter().unzip();
    let outcomes = chain.process(events).await;
    for (outcome, field) in outcomes.into_iter().zip(fields) {
        let reason = rejection(outcome.outcome);
        assert!(reason.contains(field), "{reason:?} should name {field}");
    }
}

#[tokio::test]
async fn enrich_adds_the_programs_core_data() {
    let (_, chain) = single_plugin_chain(
        &engine(),
        "enrich",
        PluginSettings::default(),
        sample_core_data(),
    );
    let event = event("m1", &[("programId", "212313"), ("userAgent", "Mozilla")]);
    let events = accepted(chain.process_one(event).await.outcome);
    let enriched = &events[0];
    assert_eq!(
        enriched.attribute("programName"),
        Some("Summer Video Preroll")
    );
    assert_eq!(enriched.attribute("checksum"), Some("b84e02d7"));
    assert_eq!(enriched.attribute("customerId"), Some("4712"));
    assert_eq!(enriched.attribute("customerName"), Some("Globex Travel"));
}

#[tokio::test]
async fn enrich_copies_only_the_configured_fields() {
    let (_, chain) = single_plugin_chain(
        &engine(),
        "enrich",
        settings(&[("fields", "programName")]),
        sample_core_data(),
    );
    let events = accepted(
        chain
            .process_one(event("m1", &[("programId", "212313")]))
            .await
            .outcome,
    );
    assert_eq!(
        events[0].attribute("programName"),
        Some("Summer Video Preroll")
    );
    assert_eq!(events[0].attribute("customerName"), None);
}

#[tokio::test]
async fn enrich_rejects_unknown_programs() {
    let (_, chain) = single_plugin_chain(
        &engine(),
        "enrich",
        PluginSettings::default(),
        sample_core_data(),
    );
    let reason = rejection(
        chain
            .process_one(event("m1", &[("programId", "999999")]))
            .await
            .outcome,
    );
    assert!(reason.contains("unknown program 999999"), "{reason}");
}

struct UnreachableCoreData;

#[async_trait]
impl CoreDataLookup for UnreachableCoreData {
    async fn lookup(&self, _key: &str) -> Result<Option<CoreRecord>, LookupError> {
        Err(LookupError::from_message(
            "redis at 10.0.0.1:6379 refused the connection",
        ))
    }
}

#[tokio::test]
async fn enrich_asks_for_a_retry_when_core_data_is_unreachable() {
    let (_, chain) = single_plugin_chain(
        &engine(),
        "enrich",
        PluginSettings::default(),
        Arc::new(UnreachableCoreData),
    );
    match chain
        .process_one(event("m1", &[("programId", "212313")]))
        .await
        .outcome
    {
        Outcome::Retry { by, reason } => {
            assert_eq!(&*by.name, "enrich");
            assert!(reason.contains("refused the connection"), "{reason}");
        }
        other => panic!("expected a retry, got {other:?}"),
    }
}

#[tokio::test]
async fn filter_drops_bots_and_keeps_browsers() {
    let (_, chain) = single_plugin_chain(
        &engine(),
        "filter",
        PluginSettings::default(),
        Arc::new(NoCoreData),
    );
    let outcomes = chain
        .process(vec![
            event(
                "bot",
                &[("userAgent", "Mozilla/5.0 (compatible; Googlebot/2.1)")],
            ),
            event("human", &[("userAgent", "Mozilla/5.0 Firefox/128.0")]),
            event("anonymous", &[]),
        ])
        .await;
    let kept: Vec<usize> = outcomes
        .into_iter()
        .map(|outcome| accepted(outcome.outcome).len())
        .collect();
    assert_eq!(kept, [0, 1, 1]);
}

#[tokio::test]
async fn filter_patterns_come_from_config() {
    let (_, chain) = single_plugin_chain(
        &engine(),
        "filter",
        settings(&[("bot-patterns", "firefox")]),
        Arc::new(NoCoreData),
    );
    let outcomes = chain
        .process(vec![
            event("bot", &[("userAgent", "Googlebot/2.1")]),
            event("human", &[("userAgent", "Mozilla/5.0 Firefox/128.0")]),
        ])
        .await;
    let kept: Vec<usize> = outcomes
        .into_iter()
        .map(|outcome| accepted(outcome.outcome).len())
        .collect();
    assert_eq!(kept, [1, 0]);
}

#[tokio::test]
async fn fan_out_splits_json_arrays_into_one_event_per_item() {
    let (_, chain) = single_plugin_chain(
        &engine(),
        "fan-out",
        PluginSettings::default(),
        Arc::new(NoCoreData),
    );
    let mut batch = event("batch", &[("programId", "212313")]);
    batch.payload = br#"[{"click":1},{"click":2},{"click":3}]"#.to_vec();
    let mut single = event("single", &[]);
    single.payload = br#"{"click":9}"#.to_vec();

    let outcomes = chain.process(vec![batch, single]).await;
    let mut outcomes = outcomes.into_iter();
    let split = accepted(outcomes.next().unwrap().outcome);
    let ids: Vec<&str> = split.iter().map(|event| event.id.as_str()).collect();
    assert_eq!(ids, ["batch-0", "batch-1", "batch-2"]);
    assert_eq!(split[1].payload, br#"{"click":2}"#);
    assert_eq!(split[2].attribute("fanOutIndex"), Some("2"));
    assert_eq!(split[2].attribute("programId"), Some("212313"));
    let unchanged = accepted(outcomes.next().unwrap().outcome);
    assert_eq!(unchanged.len(), 1);
    assert_eq!(unchanged[0].payload, br#"{"click":9}"#);
}

#[tokio::test]
async fn fan_out_rejects_invalid_json_and_oversized_batches() {
    let (_, chain) = single_plugin_chain(
        &engine(),
        "fan-out",
        settings(&[("max-items", "2")]),
        Arc::new(NoCoreData),
    );
    let mut broken = event("broken", &[]);
    broken.payload = b"[1, 2".to_vec();
    let mut too_big = event("big", &[]);
    too_big.payload = b"[1, 2, 3]".to_vec();
    let outcomes = chain.process(vec![broken, too_big]).await;
    let reasons: Vec<String> = outcomes
        .into_iter()
        .map(|outcome| rejection(outcome.outcome))
        .collect();
    assert!(reasons[0].contains("not valid JSON"), "{}", reasons[0]);
    assert!(reasons[1].contains('2'), "{}", reasons[1]);
}

#[tokio::test]
async fn the_repository_pipeline_runs_the_host_chain_end_to_end() {
    let file = PipelineFile::load(&repo_root().join("pipeline.toml")).expect("pipeline.toml");
    let registry = plugin_engine::PluginRegistry::new(engine());
    let chain = file
        .build_chain(Side::Host, &registry, sample_core_data())
        .expect("host chain builds");
    let human = event(
        "m1",
        &[("programId", "212313"), ("userAgent", "Mozilla/5.0")],
    );
    let bot = event(
        "m2",
        &[("programId", "212313"), ("userAgent", "Googlebot/2.1")],
    );
    let unknown = event(
        "m3",
        &[("programId", "999999"), ("userAgent", "Mozilla/5.0")],
    );
    let outcomes = chain.process(vec![human, bot, unknown]).await;

    let enriched = accepted(outcomes[0].outcome.clone());
    assert_eq!(enriched[0].attribute("customerName"), Some("Globex Travel"));
    assert_eq!(enriched[0].attribute("valid"), Some("true"));
    let names: Vec<&str> = outcomes[0]
        .processed_by
        .iter()
        .map(|plugin| &*plugin.name)
        .collect();
    assert_eq!(names, ["filter", "enrich", "validate-tracking", "fan-out"]);
    assert!(
        accepted(outcomes[1].outcome.clone()).is_empty(),
        "bots are filtered"
    );
    assert!(rejection(outcomes[2].outcome.clone()).contains("unknown program"));
    assert!(Path::new(&file.plugins["enrich"].path).exists());
}
