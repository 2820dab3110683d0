//! One plugin set across the fleet: two host processes and the consumer (its Kinesis
//! poller) share a registry in S3 (moto), announcements on redis-server and a stream in
//! kinesalite. A publish reaches all of them under load with no failed request; a host
//! started later comes up on the new release; a host that missed the announcement
//! converges by polling; a corrupt release leaves a host serving its running release.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use adtrack_consumer::Consumer;
use adtrack_consumer::aws::kinesis_poller::KinesisPoller;
use adtrack_consumer::dead_letter::LoggedDeadLetters;
use adtrack_consumer::releases::RegistryChains;
use adtrack_consumer::store::EmbeddedStore;
use core_data::NoCoreDataUpdates;
use plugin_engine::{EngineConfig, NoCoreData, PluginEngine, Side};
use releases::{ReleaseRegistry, ReleaseRuntime, S3Store};

use crate::common::*;

const PIPELINE: &str = r#"
[plugins.enrich]
path = "{plugins}/enrich.wasm"

[plugins.tagger]
path = "{plugins}/filter.wasm"

[plugins.checker]
path = "{plugins}/validate-tracking.wasm"

[pipeline]
host = ["enrich", "tagger"]
consumer = ["checker"]
"#;

async fn wait_for_release(host: &Host, release: u64, within: Duration) -> Duration {
    let started = Instant::now();
    while host.release().await != release {
        assert!(
            started.elapsed() < within,
            "the host did not reach release {release} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

async fn admin_get(host: &Host, path: &str) -> serde_json::Value {
    host.client
        .get(host.at(path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin request")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_reaches_both_hosts_and_the_consumer_under_load_without_a_failed_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = write_pipeline(dir.path(), PIPELINE);
    let bucket = test_support::unique("fleet").to_lowercase();
    test_support::create_bucket(&bucket).await;
    let kinesis_endpoint = service_env("KINESIS_ENDPOINT_URL");
    let kinesis = kinesis_client().await;
    let stream = test_support::unique("fleet-events");
    create_stream(&kinesis, &stream, 1).await;
    let s3_endpoint = service_env("S3_ENDPOINT_URL");
    let redis_url = service_env("REDIS_URL");
    let env = [
        ("PIPELINE_FILE", pipeline.to_str().expect("utf-8 path")),
        ("PLUGIN_BUCKET", bucket.as_str()),
        ("S3_ENDPOINT_URL", s3_endpoint.as_str()),
        ("REDIS_URL", redis_url.as_str()),
        ("KINESIS_STREAM_NAME", stream.as_str()),
        ("KINESIS_ENDPOINT_URL", kinesis_endpoint.as_str()),
        // Polling is only the safety net: the swap must come from the announcement.
        ("RELEASE_POLL_SECS", "600"),
    ];
    let first = Arc::new(start_host(&env).await);
    let second = Arc::new(start_host(&env).await);
    assert_eq!((first.release().await, second.release().await), (1, 1));
    first.get("/cache/fill").await;

    // The consumer: the Kinesis poller over the same registry, checking it every batch.
    let store_dir = tempfile::tempdir().expect("temp dir");
    let registry = ReleaseRegistry::new(Arc::new(
        S3Store::connect(&bucket, "registry/", Some(&s3_endpoint)).await,
    ));
    let engine = PluginEngine::new(EngineConfig::default()).expect("engine");
    let runtime = ReleaseRuntime::start(
        registry,
        engine,
        Arc::new(NoCoreData),
        &[Side::Consumer],
        None,
        None,
    )
    .await
    .expect("the consumer loads the current release");
    let store =
        Arc::new(EmbeddedStore::open(&store_dir.path().join("events.redb")).expect("store"));
    let consumer = Arc::new(Consumer::new(
        Arc::new(RegistryChains::new(runtime, Duration::ZERO).expect("consumer chain")),
        store.clone(),
        Arc::new(LoggedDeadLetters),
        Arc::new(NoCoreDataUpdates),
    ));
    let mut poller = KinesisPoller::new(kinesis.clone(), stream.clone(), consumer);

    let converged = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let after_convergence = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for host in [&first, &second, &first, &second] {
        let (host, converged, stop, after) = (
            host.clone(),
            converged.clone(),
            stop.clone(),
            after_convergence.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut requests = 0;
            while !stop.load(Ordering::SeqCst) {
                let was_converged = converged.load(Ordering::SeqCst);
                let (status, body) = host.get("/event/212313").await;
                assert_eq!(status, 200, "a request failed across the swap: {body}");
                requests += 1;
                if was_converged {
                    assert_eq!(
                        body["valid"], true,
                        "a request after convergence ran the old release"
                    );
                    after.fetch_add(1, Ordering::SeqCst);
                }
            }
            requests
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = first
        .client
        .put(first.at("/admin/plugins/tagger"))
        .bearer_auth(ADMIN_TOKEN)
        .body(std::fs::read(plugin_path("validate-tracking")).expect("component"))
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), 200);
    let published: serde_json::Value = response.json().await.expect("json");
    assert_eq!(published["release"], 2);
    wait_for_release(&first, 2, Duration::from_secs(1)).await;
    wait_for_release(&second, 2, Duration::from_secs(5)).await;
    converged.store(true, Ordering::SeqCst);
    while after_convergence.load(Ordering::SeqCst) < 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for task in load {
        total += task.await.expect("load task");
    }
    assert!(total >= 100, "the load loop ran {total} requests");

    // The consumer reads everything the hosts put on the stream, on the new release.
    let mut stored = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored.len() < total && Instant::now() < deadline {
        poller.poll_once().await.expect("poll");
        stored = store.all().expect("stored events");
    }
    assert_eq!(
        stored.len(),
        total,
        "every acknowledged request is stored once"
    );
    let on_new: Vec<_> = stored
        .iter()
        .filter(|event| event.host_release == 2)
        .collect();
    assert!(
        !on_new.is_empty(),
        "records of the new release reached the consumer"
    );
    assert!(
        stored.iter().all(|event| event.consumer_release == 2),
        "the consumer ran the new release for every batch after the publish"
    );
    assert!(
        on_new.iter().all(|event| event
            .processed_by
            .iter()
            .any(|stamp| stamp.name == "tagger" && stamp.version == published["active"])),
        "stored items name the exact tagger version that handled them"
    );

    // A host started after the publish comes up on it.
    let third = start_host(&env).await;
    assert_eq!(third.release().await, 2);
    let status = admin_get(&first, "/admin/releases/status").await;
    assert_eq!(status["current"], 2);
    assert_eq!(status["hosts"]["2"], 3, "{status}");
    assert_eq!(status["consumers"]["2"], 1, "{status}");
}

#[tokio::test]
async fn a_host_that_missed_the_announcement_converges_by_polling() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = write_pipeline(dir.path(), PIPELINE);
    let host = start_host(&[
        ("PIPELINE_FILE", pipeline.to_str().expect("utf-8 path")),
        ("RELEASE_POLL_SECS", "1"),
    ])
    .await;
    host.get("/cache/fill").await;
    let (_, body) = host.get("/event/212313").await;
    assert_eq!(body["valid"], false);

    // The CLI publishes to the same registry (same DATA_DIR) and, without REDIS_URL,
    // announces nothing: only the host's poll can find the release.
    let data_dir = host
        .data_dir
        .path()
        .to_str()
        .expect("utf-8 path")
        .to_owned();
    let validate = plugin_path("validate-tracking");
    let published = std::process::Command::new(env!("CARGO_BIN_EXE_adtrack-host"))
        .args([
            "plugin",
            "publish",
            "tagger",
            validate.to_str().expect("utf-8 path"),
        ])
        .env("DATA_DIR", &data_dir)
        .env_remove("REDIS_URL")
        .env_remove("PLUGIN_BUCKET")
        .output()
        .expect("plugin publish runs");
    let stdout = String::from_utf8_lossy(&published.stdout);
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    assert!(stdout.starts_with("release 2: publish tagger"), "{stdout}");

    wait_for_release(&host, 2, Duration::from_secs(10)).await;
    let (_, body) = host.get("/event/212313").await;
    assert_eq!(body["valid"], true, "the new release serves");

    let releases = std::process::Command::new(env!("CARGO_BIN_EXE_adtrack-host"))
        .args(["plugin", "releases"])
        .env("DATA_DIR", &data_dir)
        .output()
        .expect("plugin releases runs");
    let listing = String::from_utf8_lossy(&releases.stdout);
    assert!(listing.contains("*    2  publish tagger"), "{listing}");
    assert!(listing.contains("     1  seeded from"), "{listing}");

    // Rolling back with the CLI reaches the host the same way.
    let rollback = std::process::Command::new(env!("CARGO_BIN_EXE_adtrack-host"))
        .args(["plugin", "rollback", "--to", "1"])
        .env("DATA_DIR", &data_dir)
        .output()
        .expect("plugin rollback runs");
    assert!(
        rollback.status.success(),
        "{}",
        String::from_utf8_lossy(&rollback.stderr)
    );
    wait_for_release(&host, 1, Duration::from_secs(10)).await;
    let (_, body) = host.get("/event/212313").await;
    assert_eq!(body["valid"], false, "release 1 serves again");
}

#[tokio::test]
async fn a_corrupt_release_leaves_the_host_serving_and_degraded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = write_pipeline(dir.path(), PIPELINE);
    let host = start_host(&[
        ("PIPELINE_FILE", pipeline.to_str().expect("utf-8 path")),
        ("RELEASE_POLL_SECS", "1"),
    ])
    .await;
    host.get("/cache/fill").await;
    let registry = host.data_dir.path().join("registry");
    std::fs::write(registry.join("releases/0000000009.json"), b"{ not json").expect("write");
    std::fs::write(
        registry.join("current.json"),
        br#"{"release":9,"generation":99}"#,
    )
    .expect("write");

    let deadline = Instant::now() + Duration::from_secs(10);
    let health = loop {
        let (_, health) = host.get("/health/check").await;
        if health["status"] == "degraded" {
            break health;
        }
        assert!(Instant::now() < deadline, "never degraded: {health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health["release"]["number"], 1, "{health}");
    assert!(
        health["release"]["lastError"]
            .as_str()
            .is_some_and(|error| error.contains("release 9 is corrupt")),
        "{health}"
    );
    let (status, body) = host.get("/event/212313").await;
    assert_eq!(status, 200, "the running release keeps serving: {body}");
}

#[tokio::test]
async fn a_host_that_cannot_reach_the_registry_starts_on_the_release_it_ran_last() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = write_pipeline(dir.path(), PIPELINE);
    let bucket = test_support::unique("mirror").to_lowercase();
    test_support::create_bucket(&bucket).await;
    let data_dir = dir.path().join("data");
    let s3_endpoint = service_env("S3_ENDPOINT_URL");
    let pipeline = pipeline.to_str().expect("utf-8 path");
    let data = data_dir.to_str().expect("utf-8 path");
    let mut first = start_host(&[
        ("PIPELINE_FILE", pipeline),
        ("DATA_DIR", data),
        ("PLUGIN_BUCKET", &bucket),
        ("S3_ENDPOINT_URL", &s3_endpoint),
    ])
    .await;
    let response = first
        .client
        .put(first.at("/admin/plugins/tagger"))
        .bearer_auth(ADMIN_TOKEN)
        .body(std::fs::read(plugin_path("validate-tracking")).expect("component"))
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), 200);
    assert!(first.terminate().success());

    // Nothing listens on port 1: the registry is unreachable.
    let unreachable = [
        ("PIPELINE_FILE", pipeline),
        ("PLUGIN_BUCKET", bucket.as_str()),
        ("S3_ENDPOINT_URL", "http://127.0.0.1:1"),
    ];
    let mut env = unreachable.to_vec();
    env.push(("DATA_DIR", data));
    let second = start_host(&env).await;
    let (_, health) = second.get("/health/check").await;
    assert_eq!(health["release"]["number"], 2, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    second.get("/cache/fill").await;
    let (status, body) = second.get("/event/212313").await;
    assert_eq!(
        (status, &body["valid"]),
        (200, &serde_json::json!(true)),
        "{body}"
    );

    // Without a release it ran before, a host fails at start and says why.
    let fresh = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_adtrack-host"))
        .arg("serve")
        .envs(unreachable)
        .env("DATA_DIR", fresh.path())
        .env("LISTEN_ADDR", format!("127.0.0.1:{}", free_port()))
        .output()
        .expect("adtrack-host runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot load the current plugin release"),
        "{stderr}"
    );
}
