//! Canary and shadow releases: a canary serves its share of events (the same event always
//! takes the same path) and is aborted fleet-wide on its own when it fails; a shadow
//! changes no response or stream record and counts where it differs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use contract::TrackingEvent;
use embedded_log::EmbeddedLog;
use serde_json::{Value, json};

use crate::common::*;

const PIPELINE: &str = r#"
[plugins.enrich]
path = "{plugins}/enrich.wasm"

[plugins.tagger]
path = "{plugins}/filter.wasm"
config = { bot-patterns = "bot" }

[pipeline]
host = ["enrich", "tagger"]
consumer = []
"#;

fn version_of(plugin: &str) -> String {
    plugin_engine::PluginVersion::of(&std::fs::read(plugin_path(plugin)).expect("component"))
        .to_string()
}

async fn admin(host: &Host, method: reqwest::Method, path: &str, body: Vec<u8>) -> Value {
    let response = host
        .client
        .request(method, host.at(path))
        .bearer_auth(ADMIN_TOKEN)
        .body(body)
        .send()
        .await
        .expect("admin request");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// `POST /events` with `events`; the raw response body.
async fn post_events(host: &Host, events: &[Value]) -> String {
    let response = host
        .client
        .post(host.at("/events"))
        .json(events)
        .send()
        .await
        .expect("POST /events");
    assert_eq!(response.status(), 200);
    response.text().await.expect("body")
}

fn event(id: &str, user_agent: &str) -> Value {
    json!({
        "id": id,
        "timestampMs": 1_700_000_000_000_u64,
        "attributes": { "programId": "212313", "userAgent": user_agent },
    })
}

/// Which version of `tagger` decided each event of a `POST /events` answer, by id.
fn tagger_versions(body: &str, ids: &[String]) -> BTreeMap<String, String> {
    let body: Value = serde_json::from_str(body).expect("json");
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|result| {
            let index = result["index"].as_u64().expect("index") as usize;
            let tagger = result["processedBy"]
                .as_array()
                .expect("processedBy")
                .iter()
                .find(|step| step["plugin"] == "tagger")
                .map(|step| step["version"].as_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            (ids[index].clone(), tagger)
        })
        .collect()
}

#[tokio::test]
async fn a_canary_serves_its_share_and_an_event_always_takes_the_same_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = write_pipeline(dir.path(), PIPELINE);
    // Five batches of 1 000 events: acknowledged once buffered, not once per record.
    let host = start_host(&[
        ("PIPELINE_FILE", pipeline.to_str().expect("utf-8 path")),
        ("ACK", "buffer"),
    ])
    .await;
    host.get("/cache/fill").await;
    let candidate = std::fs::read(plugin_path("validate-tracking")).expect("component");
    let published = admin(
        &host,
        reqwest::Method::PUT,
        "/admin/plugins/tagger?canary=10&min-calls=1000000",
        candidate,
    )
    .await;
    assert_eq!(published["release"], 2);
    assert_eq!(
        published["active"],
        version_of("filter"),
        "the active version stays"
    );

    let ids: Vec<String> = (0..5_000).map(|n| format!("evt-{n}")).collect();
    let mut first = BTreeMap::new();
    for batch in ids.chunks(1_000) {
        let events: Vec<Value> = batch.iter().map(|id| event(id, "Mozilla/5.0")).collect();
        first.extend(tagger_versions(&post_events(&host, &events).await, batch));
    }
    let canary = version_of("validate-tracking");
    let on_canary = first.values().filter(|version| **version == canary).count();
    assert!(
        (400..=600).contains(&on_canary),
        "{on_canary} of 5 000 events took the 10 % canary"
    );
    assert!(
        first
            .values()
            .all(|version| *version == canary || *version == version_of("filter"))
    );

    // Redelivered (sent again), every event takes the path it took the first time.
    let mut again = BTreeMap::new();
    for batch in ids.chunks(1_000) {
        let events: Vec<Value> = batch.iter().map(|id| event(id, "Mozilla/5.0")).collect();
        again.extend(tagger_versions(&post_events(&host, &events).await, batch));
    }
    assert_eq!(first, again);

    // Promoting makes the candidate everyone's.
    let promoted = admin(
        &host,
        reqwest::Method::POST,
        "/admin/plugins/tagger/promote",
        Vec::new(),
    )
    .await;
    assert_eq!(
        (promoted["release"].as_u64(), promoted["active"].as_str()),
        (Some(3), Some(canary.as_str()))
    );
    let events: Vec<Value> = ids[..100]
        .iter()
        .map(|id| event(id, "Mozilla/5.0"))
        .collect();
    let after = tagger_versions(&post_events(&host, &events).await, &ids[..100]);
    assert!(after.values().all(|version| *version == canary));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_traps_on_half_its_calls_is_aborted_fleet_wide_and_then_gets_no_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = write_pipeline(dir.path(), PIPELINE);
    let bucket = test_support::unique("canary").to_lowercase();
    let s3_endpoint = service_env("S3_ENDPOINT_URL");
    test_support::create_bucket(&bucket).await;
    let redis_url = service_env("REDIS_URL");
    let env = [
        ("PIPELINE_FILE", pipeline.to_str().expect("utf-8 path")),
        ("PLUGIN_BUCKET", bucket.as_str()),
        ("S3_ENDPOINT_URL", s3_endpoint.as_str()),
        ("REDIS_URL", redis_url.as_str()),
        ("RELEASE_POLL_SECS", "600"),
    ];
    let hosts = [start_host(&env).await, start_host(&env).await];
    hosts[0].get("/cache/fill").await;
    let candidate = std::fs::read(plugin_path("hostile-half-trap")).expect("component");
    let published = admin(
        &hosts[0],
        reqwest::Method::PUT,
        "/admin/plugins/tagger?canary=50&min-calls=40",
        candidate,
    )
    .await;
    let canary_release = published["release"].as_u64().expect("release");
    let trap = version_of("hostile-half-trap");

    // Traffic on both hosts until the fleet has left the canary's release.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut round = 0;
    loop {
        for host in &hosts {
            let ids: Vec<String> = (0..50).map(|n| format!("r{round}-{n}")).collect();
            let events: Vec<Value> = ids.iter().map(|id| event(id, "Mozilla/5.0")).collect();
            post_events(host, &events).await;
        }
        round += 1;
        let (first, second) = (hosts[0].release().await, hosts[1].release().await);
        if first > canary_release && second == first {
            break;
        }
        assert!(Instant::now() < deadline, "the canary was never aborted");
    }
    let releases = admin(
        &hosts[1],
        reqwest::Method::GET,
        "/admin/releases",
        Vec::new(),
    )
    .await;
    let current = releases["releases"]
        .as_array()
        .expect("releases")
        .last()
        .expect("a release")
        .clone();
    let summary = current["summary"].as_str().expect("summary");
    assert!(summary.starts_with("abort tagger"), "{summary}");
    assert!(summary.contains("failed"), "{summary}");
    assert!(current["host"].get("candidate").is_none(), "{current}");

    // Afterwards no event goes to it, on either host.
    for host in &hosts {
        let ids: Vec<String> = (0..200).map(|n| format!("after-{n}")).collect();
        let events: Vec<Value> = ids.iter().map(|id| event(id, "Mozilla/5.0")).collect();
        let versions = tagger_versions(&post_events(host, &events).await, &ids);
        assert!(
            versions.values().all(|version| *version != trap),
            "{versions:?}"
        );
    }
}

#[tokio::test]
async fn a_shadow_changes_no_response_or_record_and_counts_where_it_differs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = write_pipeline(dir.path(), PIPELINE);
    let mut host = start_host(&[
        ("PIPELINE_FILE", pipeline.to_str().expect("utf-8 path")),
        ("RELEASE_POLL_SECS", "1"),
    ])
    .await;
    host.get("/cache/fill").await;
    // The active tagger drops bots; the candidate traps on ids ending in an even digit
    // and lets everything else through, bots included.
    let crafted: Vec<(String, &str)> = (0..40)
        .map(|n| {
            let agent = if n % 4 < 2 {
                "Googlebot/2.1"
            } else {
                "Mozilla/5.0"
            };
            (format!("shadow-{n}"), agent)
        })
        .collect();
    let differing = crafted
        .iter()
        .filter(|(id, agent)| {
            let even = id.bytes().last().is_some_and(|byte| byte % 2 == 0);
            even || agent.contains("bot")
        })
        .count();
    let failed_where_active_succeeded = crafted
        .iter()
        .filter(|(id, _)| id.bytes().last().is_some_and(|byte| byte % 2 == 0))
        .count();
    let events: Vec<Value> = crafted.iter().map(|(id, agent)| event(id, agent)).collect();
    let without_shadow = post_events(&host, &events).await;

    let candidate = std::fs::read(plugin_path("hostile-half-trap")).expect("component");
    admin(
        &host,
        reqwest::Method::PUT,
        "/admin/plugins/tagger?shadow=100",
        candidate,
    )
    .await;
    let with_shadow = post_events(&host, &events).await;
    assert_eq!(
        with_shadow, without_shadow,
        "the shadow changed the response"
    );

    // The shadow's differences, from the heartbeats (every second), add up exactly.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = admin(
            &host,
            reqwest::Method::GET,
            "/admin/releases/status",
            Vec::new(),
        )
        .await;
        let summary = status["summary"].as_str().unwrap_or_default().to_owned();
        let expected = format!(
            "{differing} differing outcomes, {failed_where_active_succeeded} failed where the active version succeeded"
        );
        if summary.contains(&expected) {
            assert!(summary.contains("shadow tagger"), "{summary}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expected {expected:?}, status: {summary}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The stream records of both sends are the same bytes, but for the release stamp.
    assert!(host.terminate().success(), "the host stops cleanly");
    let log = EmbeddedLog::open(&host.stream_log()).expect("log opens after the host stopped");
    let records: Vec<TrackingEvent> = log
        .read_after(None, 1_000)
        .expect("read")
        .into_iter()
        .map(|record| TrackingEvent::from_bytes(&record.data).expect("decode"))
        .collect();
    let accepted = records.len() / 2;
    assert!(
        accepted > 0 && records.len().is_multiple_of(2),
        "{} records",
        records.len()
    );
    for (before, mut after) in records[..accepted]
        .iter()
        .zip(records[accepted..].iter().cloned())
    {
        assert_eq!((before.host_release, after.host_release), (1, 2));
        after.host_release = before.host_release;
        assert_eq!(before.to_bytes(), after.to_bytes());
    }
}
