//! Each language's `tracking` plugin swapped into a running host in place of the Rust one,
//! through the admin API, while a load loop runs: no request fails, every answer is the
//! same enriched JSON, and the new version serves the requests that follow.
//!
//! The components come from `cargo xtask plugins` (`target/plugins/tracking-<language>.wasm`).
//! Compiled code is cached in `target/plugin-artifacts/` (as in the engine's conformance
//! suite), so the large JavaScript and Python components compile once per version.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::*;
use serde_json::json;

/// The deadline is generous: the swap compiles a large component on the same two cores
/// that serve the load, and this test checks behaviour, not latency.
const PIPELINE: &str = r#"
[limits]
timeout-ms = 2000

[plugins.tracking]
path = "{plugins}/tracking-rust.wasm"

[pipeline]
host = ["tracking"]
"#;

/// Concurrent clients during each swap.
const LOADERS: usize = 4;
/// Requests each client makes after a swap answered.
const REQUESTS_AFTER_SWAP: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_swaps_in_under_load_without_a_failed_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = write_pipeline(dir.path(), PIPELINE);
    let artifacts = repo_root().join("target/plugin-artifacts");
    let host = Arc::new(
        start_host(&[
            ("PIPELINE_FILE", pipeline.to_str().expect("utf-8 path")),
            ("PLUGIN_CACHE_DIR", artifacts.to_str().expect("utf-8 path")),
        ])
        .await,
    );
    host.get("/cache/fill").await;
    let (status, expected) = host.get("/event/212313").await;
    assert_eq!(status, 200, "the Rust plugin serves: {expected}");
    assert_eq!(expected["valid"], true);
    assert_eq!(expected["programName"], "Summer Video Preroll");

    for language in ["js", "python", "c", "zig"] {
        let component = std::fs::read(plugin_path(&format!("tracking-{language}")))
            .expect("component readable");
        let before = active_version(&host).await;
        let swapped = Arc::new(AtomicBool::new(false));
        let loaders: Vec<_> = (0..LOADERS)
            .map(|_| tokio::spawn(load(host.clone(), swapped.clone(), expected.clone())))
            .collect();

        tokio::time::sleep(Duration::from_millis(200)).await;
        let report = upload(&host, component).await;
        swapped.store(true, Ordering::SeqCst);
        assert_eq!(
            report["previous"],
            json!(before),
            "{language}: previous version"
        );

        let mut requests = 0;
        for loader in loaders {
            requests += loader
                .await
                .unwrap_or_else(|error| panic!("{language}: {error}"));
        }
        assert!(requests >= LOADERS * REQUESTS_AFTER_SWAP);
        let active = active_version(&host).await;
        assert_eq!(
            json!(active),
            report["active"],
            "{language}: active version"
        );
        let calls = format!(
            "plugin_calls_total{{plugin=\"tracking\",version=\"{}\",outcome=\"accepted\"}}",
            &active[..12]
        );
        assert!(
            metrics(&host).await.contains(&calls),
            "{language}: /metrics shows no accepted call of the new version ({calls})"
        );
    }
}

/// Requests `/event/212313` until `REQUESTS_AFTER_SWAP` requests started after the swap
/// answered; every answer must be 200 with `expected` minus the per-request fields.
async fn load(host: Arc<Host>, swapped: Arc<AtomicBool>, expected: serde_json::Value) -> usize {
    let (mut requests, mut after_swap) = (0, 0);
    while after_swap < REQUESTS_AFTER_SWAP {
        let was_swapped = swapped.load(Ordering::SeqCst);
        let (status, body) = host.get("/event/212313").await;
        assert_eq!(status, 200, "a request failed during the swap: {body}");
        assert_eq!(
            without_message_id(&body),
            without_message_id(&expected),
            "the answer changed during the swap"
        );
        requests += 1;
        after_swap += usize::from(was_swapped);
    }
    requests
}

fn without_message_id(body: &serde_json::Value) -> serde_json::Value {
    let mut body = body.clone();
    if let Some(fields) = body.as_object_mut() {
        fields.remove("messageId");
    }
    body
}

/// `PUT /admin/plugins/tracking`; compiling a JavaScript or Python component takes tens of
/// seconds, so this client waits up to the host's admin timeout.
async fn upload(host: &Host, component: Vec<u8>) -> serde_json::Value {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client");
    let response = client
        .put(host.at("/admin/plugins/tracking"))
        .bearer_auth(ADMIN_TOKEN)
        .body(component)
        .send()
        .await
        .expect("upload answered");
    let status = response.status();
    let report: serde_json::Value = response.json().await.expect("json report");
    assert_eq!(status, 200, "upload refused: {report}");
    report
}

async fn active_version(host: &Host) -> String {
    let plugins: serde_json::Value = host
        .client
        .get(host.at("/admin/plugins"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    plugins["plugins"][0]["version"]
        .as_str()
        .expect("the tracking plugin is listed")
        .to_owned()
}

async fn metrics(host: &Host) -> String {
    host.client
        .get(host.at("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}
