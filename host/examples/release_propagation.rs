//! How long a publish takes to reach the fleet: two `adtrack-host serve` processes sharing
//! a registry in S3 (moto) and announcements on redis-server, and a consumer that checks
//! the registry before every batch. Each round publishes the other of two components as
//! `tagger` through the first host's admin API and times, from the moment the publish
//! was sent, when each host's `/health/check` and the consumer report the new release.
//!
//! `cargo xtask release-bench [--rounds N]` starts the services and runs it; by hand:
//! `ADTRACK_HOST_BIN=target/debug/adtrack-host S3_ENDPOINT_URL=… REDIS_URL=… \
//!  cargo run -p adtrack-host --example release_propagation -- 20`

use std::sync::Arc;
use std::time::{Duration, Instant};

use adtrack_consumer::ChainSource;
use adtrack_consumer::releases::RegistryChains;
use plugin_engine::{EngineConfig, NoCoreData, PluginEngine, Side};
use releases::{ReleaseRegistry, ReleaseRuntime, S3Store};
use test_support::{ADMIN_TOKEN, Host, plugin_bytes, service_env, unique, write_pipeline};

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

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(20);
    let binary = service_env("ADTRACK_HOST_BIN");
    let s3_endpoint = service_env("S3_ENDPOINT_URL");
    let redis_url = service_env("REDIS_URL");
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = write_pipeline(dir.path(), PIPELINE);
    let bucket = unique("propagation").to_lowercase();
    test_support::create_bucket(&bucket).await;
    let env = [
        ("PIPELINE_FILE", pipeline.to_str().expect("utf-8 path")),
        ("PLUGIN_BUCKET", bucket.as_str()),
        ("S3_ENDPOINT_URL", s3_endpoint.as_str()),
        ("REDIS_URL", redis_url.as_str()),
        ("RELEASE_POLL_SECS", "30"),
    ];
    let hosts = [
        Host::start(&binary, &env).await,
        Host::start(&binary, &env).await,
    ];
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
    let consumer = RegistryChains::new(runtime, Duration::ZERO).expect("consumer chain");

    let components = [plugin_bytes("validate-tracking"), plugin_bytes("filter")];
    let mut host_times = Vec::new();
    let mut consumer_times = Vec::new();
    for round in 0..rounds {
        let sent = Instant::now();
        let response = hosts[0]
            .client
            .put(hosts[0].at("/admin/plugins/tagger"))
            .bearer_auth(ADMIN_TOKEN)
            .body(components[round % 2].clone())
            .send()
            .await
            .expect("publish");
        assert_eq!(response.status(), 200, "publish refused");
        let release: serde_json::Value = response.json().await.expect("json");
        let release = release["release"].as_u64().expect("release number");
        let answered = sent.elapsed();
        let (first, second, consumer_seen) = tokio::join!(
            until(|| async { hosts[0].release().await == release }),
            until(|| async { hosts[1].release().await == release }),
            until(|| async { consumer.next_batch().await.release == release }),
        );
        let last_host = first.max(second) - sent;
        let consumer_seen = consumer_seen - sent;
        host_times.push(last_host);
        consumer_times.push(consumer_seen);
        eprintln!(
            "round {round}: release {release}: publish answered {:.1} ms, last host {:.1} ms, consumer {:.1} ms",
            ms(answered),
            ms(last_host),
            ms(consumer_seen)
        );
    }
    println!("| from publish sent to | p50 | max | rounds |");
    println!("|---|---:|---:|---:|");
    for (what, times) in [
        ("the last host task runs it", &mut host_times),
        ("the consumer's next batch runs it", &mut consumer_times),
    ] {
        times.sort();
        println!(
            "| {what} | {:.1} ms | {:.1} ms | {} |",
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
            times.len()
        );
    }
}

/// The moment `reached` holds, checked every 5 ms (at most 60 s).
async fn until<F, Fut>(mut reached: F) -> Instant
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !reached().await {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no convergence within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Instant::now()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
