//! Swapping a plugin through the admin API while a load loop runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::common::*;

/// `tagger` starts as the `filter` component (passes browsers through unchanged) and is
/// swapped for `validate-tracking`, which marks enriched events `valid`.
const PIPELINE: &str = r#"
[plugins.enrich]
path = "{plugins}/enrich.wasm"

[plugins.tagger]
path = "{plugins}/filter.wasm"

[pipeline]
host = ["enrich", "tagger"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_under_load_fails_no_request_and_the_new_behaviour_shows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = write_pipeline(dir.path(), PIPELINE);
    let host = Arc::new(start_host(&[("PIPELINE_FILE", pipeline.to_str().unwrap())]).await);
    host.get("/cache/fill").await;
    let (_, body) = host.get("/event/212313").await;
    assert_eq!(body["valid"], false, "the filter plugin does not validate");

    let swapped = Arc::new(AtomicBool::new(false));
    let after_swap_valid = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let host = host.clone();
        let swapped = swapped.clone();
        let after_swap_valid = after_swap_valid.clone();
        load.push(tokio::spawn(async move {
            let mut requests = 0;
            let mut after = 0;
            while after < 25 {
                let was_swapped = swapped.load(Ordering::SeqCst);
                let (status, body) = host.get("/event/212313").await;
                assert_eq!(status, 200, "request failed during the swap: {body}");
                requests += 1;
                if was_swapped {
                    after += 1;
                    assert_eq!(
                        body["valid"], true,
                        "a request after the swap ran the old plugin"
                    );
                    after_swap_valid.fetch_add(1, Ordering::SeqCst);
                }
            }
            requests
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let response = host
        .client
        .put(host.at("/admin/plugins/tagger"))
        .bearer_auth(ADMIN_TOKEN)
        .body(std::fs::read(plugin_path("validate-tracking")).expect("component"))
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 200);
    let report: serde_json::Value = response.json().await.expect("json");
    swapped.store(true, Ordering::SeqCst);

    let mut total = 0;
    for task in load {
        total += task.await.expect("load task");
    }
    assert!(total >= 100, "the load loop ran {total} requests");
    assert_eq!(after_swap_valid.load(Ordering::SeqCst), 100);

    let (_, plugins) = {
        let response = host
            .client
            .get(host.at("/admin/plugins"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("list");
        (
            response.status(),
            response.json::<serde_json::Value>().await.expect("json"),
        )
    };
    let tagger = plugins["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .find(|plugin| plugin["name"] == "tagger")
        .expect("tagger listed")
        .clone();
    assert_eq!(tagger["version"], report["active"]);
    assert_eq!(tagger["previous"][0], report["previous"]);

    let rollback = host
        .client
        .post(host.at("/admin/plugins/tagger/rollback"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("rollback");
    assert_eq!(rollback.status(), 200);
    let (_, body) = host.get("/event/212313").await;
    assert_eq!(body["valid"], false, "rollback restores the filter plugin");
}
