//! The host on its embedded defaults: no Redis, no Kinesis.

use crate::common::*;
use adtrack_consumer::store::EmbeddedStore;
use contract::TrackingEvent;
use embedded_log::EmbeddedLog;

#[tokio::test]
async fn message_ids_are_uuids_in_creation_order() {
    let host = start_host(&[]).await;
    assert_eq!(host.get("/cache/fill").await.0, 200);
    let mut ids = Vec::new();
    for _ in 0..20 {
        let (status, body) = host.get("/event/212313").await;
        assert_eq!(status, 200, "{body}");
        let id = body["messageId"].as_str().expect("messageId").to_owned();
        assert_eq!(id.len(), 36, "a UUID: {id}");
        assert_eq!(&id[14..15], "7", "a time-ordered UUID (version 7): {id}");
        ids.push(id);
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        ids, sorted,
        "ids sort as created, so stores keyed by them append"
    );
}

#[tokio::test]
async fn with_plugin_perf_map_set_the_host_maps_its_plugins_code_for_perf() {
    let mut host = start_host(&[("PLUGIN_PERF_MAP", "true")]).await;
    assert_eq!(host.get("/cache/fill").await.0, 200);
    let (status, body) = host.get("/event/212313").await;
    assert_eq!(status, 200, "{body}");
    let plugin_functions = take_perf_map_functions(host.pid());
    assert!(host.terminate().success());
    assert!(
        plugin_functions > 0,
        "the host's perf map maps no plugin code"
    );
}

#[tokio::test]
async fn fill_then_track_gives_the_enriched_json_and_the_event_is_in_the_log() {
    let mut host = start_host(&[]).await;
    let (status, filled) = host.get("/cache/fill").await;
    assert_eq!(status, 200);
    assert_eq!(
        filled["filled"],
        serde_json::json!(["212312", "212313", "212314"])
    );

    let response = host
        .client
        .get(host.at("/event/212313"))
        .header("user-agent", "Mozilla/5.0 Firefox/128.0")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["programId"], "212313");
    assert_eq!(body["programName"], "Summer Video Preroll");
    assert_eq!(body["checksum"], "b84e02d7");
    assert_eq!(body["customerId"], 4712);
    assert_eq!(body["customerName"], "Globex Travel");
    assert_eq!(body["userAgent"], "Mozilla/5.0 Firefox/128.0");
    assert_eq!(body["valid"], true);
    let message_id = body["messageId"].as_str().expect("messageId").to_owned();
    assert_eq!(message_id.len(), 36, "a UUID: {message_id}");

    assert!(
        host.terminate().success(),
        "the host exits cleanly on SIGTERM"
    );
    let log = EmbeddedLog::open(&host.stream_log()).expect("log opens after the host stopped");
    let records = log.read_after(None, 100).expect("read");
    let stored: Vec<TrackingEvent> = records
        .iter()
        .map(|record| TrackingEvent::from_bytes(&record.data).expect("protobuf"))
        .collect();
    let record = stored
        .iter()
        .find(|record| record.message_id == message_id)
        .expect("the tracked event is in the embedded log");
    assert_eq!(record.program_name, "Summer Video Preroll");
    assert_eq!(record.customer_id, 4712);
    assert!(record.valid);
    let plugins: Vec<&str> = record
        .processed_by
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(
        plugins,
        ["filter", "enrich", "validate-tracking", "fan-out"]
    );

    // The in-process consumer ran the consumer chain and stored the event.
    let store = EmbeddedStore::open(&host.data_dir.path().join("events.redb")).expect("store");
    let stored = store
        .get(&message_id)
        .expect("store read")
        .expect("the in-process consumer stored the tracked event");
    assert_eq!(stored.event.attribute("programId"), Some("212313"));
    assert_eq!(stored.event.attribute("valid"), Some("true"));
}

#[tokio::test]
async fn unknown_programs_are_404_and_bots_are_filtered() {
    let host = start_host(&[]).await;
    host.get("/cache/fill").await;
    let (status, body) = host.get("/event/999999").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "unknown program 999999");

    let response = host
        .client
        .get(host.at("/event/212313"))
        .header("user-agent", "Googlebot/2.1")
        .send()
        .await
        .expect("request");
    assert_eq!(
        response.status(),
        204,
        "bots are filtered, nothing is tracked"
    );
}

#[tokio::test]
async fn post_events_reports_one_result_per_event() {
    let host = start_host(&[]).await;
    host.get("/cache/fill").await;
    let body = concat!(
        r#"{"attributes":{"programId":"212313","userAgent":"Mozilla/5.0"}}"#,
        "\n",
        r#"{"attributes":{"programId":"999999","userAgent":"Mozilla/5.0"}}"#,
        "\n",
        r#"{"attributes":{"programId":"212312","userAgent":"Googlebot"}}"#,
        "\n",
        r#"{"payload":"[1,2]","attributes":{"programId":"212314","userAgent":"Mozilla/5.0"}}"#,
        "\n",
    );
    let response = host
        .client
        .post(host.at("/events"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let json: serde_json::Value = response.json().await.expect("json");
    let outcomes: Vec<&str> = json["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|result| result["outcome"].as_str().expect("outcome"))
        .collect();
    assert_eq!(outcomes, ["accepted", "rejected", "filtered", "accepted"]);
    assert_eq!(json["results"][1]["reason"], "unknown program 999999");
    assert_eq!(json["results"][3]["ids"].as_array().expect("ids").len(), 2);
    assert_eq!(json["accepted"], 3);
}

#[tokio::test]
async fn metrics_expose_requests_plugins_cache_and_stream() {
    let host = start_host(&[]).await;
    host.get("/cache/fill").await;
    host.get("/event/212313").await;
    host.get("/event/212313").await;
    let text = host
        .client
        .get(host.at("/metrics"))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("text");
    for metric in [
        "http_requests_total",
        "http_request_duration_seconds",
        "plugin_calls_total",
        "plugin_call_duration_seconds",
        "core_data_cache_hits_total",
        "stream_records_put_total",
    ] {
        assert!(
            text.contains(metric),
            "{metric} missing from /metrics:\n{text}"
        );
    }
    assert!(text.contains(r#"plugin="enrich""#), "{text}");
    assert!(
        !text.contains("plugin_batch_fallbacks_total"),
        "no batch-handler call failed and was redone through handler:\n{text}"
    );
}

#[tokio::test]
async fn the_example_plugins_are_reported_as_batch_plugins() {
    let host = start_host(&[]).await;
    let (status, body) = host.get("/admin/plugins").await;
    assert_eq!(status, 200, "{body}");
    let plugins = body["plugins"].as_array().expect("plugins");
    assert_eq!(plugins.len(), 4, "{body}");
    for plugin in plugins {
        assert_eq!(plugin["handlesBatches"], true, "{plugin}");
    }
}

/// A batch of 1 000 events goes to the stream in one call: it is acknowledged (on disk,
/// `ACK=stream`) well within the request time limit, not one record after another.
#[tokio::test]
async fn a_batch_of_a_thousand_events_is_acknowledged_within_the_request_time_limit() {
    let host = start_host(&[("REQUEST_TIMEOUT_MS", "10000"), ("ACK", "stream")]).await;
    host.get("/cache/fill").await;
    let events: Vec<serde_json::Value> = (0..1_000)
        .map(|n| {
            serde_json::json!({
                "id": format!("batch-{n}"),
                "attributes": { "programId": "212313", "userAgent": "Mozilla/5.0" },
            })
        })
        .collect();
    let response = host
        .client
        .post(host.at("/events"))
        .json(&events)
        .send()
        .await
        .expect("POST /events");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["accepted"], 1_000, "{body}");
}

/// The host assigns every event its id, from the request: resending the same request
/// (as a client does after a 503) gives its events the same ids, and so the same stored
/// items; the same body under another `Idempotency-Key` is another set of events.
#[tokio::test]
async fn a_resent_batch_gets_the_same_ids_and_another_key_other_ids() {
    let host = start_host(&[]).await;
    host.get("/cache/fill").await;
    let body = r#"[{"attributes":{"programId":"212313"}},{"attributes":{"programId":"212312"}}]"#;
    let ids = |response: serde_json::Value| -> Vec<String> {
        response["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|result| result["ids"][0].as_str().expect("an id").to_owned())
            .collect()
    };
    let mut sent = Vec::new();
    for key in [
        None,
        None,
        Some("order-42"),
        Some("order-42"),
        Some("order-43"),
    ] {
        let mut request = host.client.post(host.at("/events")).body(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("POST /events");
        assert_eq!(response.status(), 200);
        sent.push(ids(response.json().await.expect("json")));
    }
    assert_eq!(sent[0], sent[1], "the same body twice");
    assert_eq!(sent[2], sent[3], "the same Idempotency-Key twice");
    assert_ne!(sent[0], sent[2]);
    assert_ne!(sent[2], sent[4]);
    assert!(
        sent.iter()
            .flatten()
            .all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())),
        "{sent:?}"
    );
}

/// A client's own `id` is kept as `clientEventId`; it does not become the stored
/// identity, so a client that knows another's id cannot overwrite that event, and two
/// clients using the same id both keep their events.
#[tokio::test]
async fn a_client_id_cannot_claim_or_overwrite_another_event() {
    let mut host = start_host(&[]).await;
    host.get("/cache/fill").await;
    let post = |payload: &'static str| {
        let body = format!(
            r#"[{{"id":"order-1","contentType":"text/plain","payload":"{payload}","attributes":{{"programId":"212313"}}}}]"#
        );
        let request = host.client.post(host.at("/events")).body(body);
        async move {
            let response = request.send().await.expect("POST /events");
            assert_eq!(response.status(), 200);
            let body: serde_json::Value = response.json().await.expect("json");
            body["results"][0]["ids"][0]
                .as_str()
                .expect("an id")
                .to_owned()
        }
    };
    let original = post("original").await;
    let forged = post("forged").await;
    assert_ne!(original, forged, "the same client id, two events");

    assert!(host.terminate().success());
    let store = EmbeddedStore::open(&host.data_dir.path().join("events.redb")).expect("store");
    for (id, payload) in [(&original, "original"), (&forged, "forged")] {
        let stored = store
            .get(id)
            .expect("read")
            .expect("both events are stored");
        assert_eq!(stored.event.payload, payload.as_bytes());
        assert_eq!(stored.event.attribute("clientEventId"), Some("order-1"));
    }
}
