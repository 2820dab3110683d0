//! Bad input gets a clear 4xx and the host keeps serving.

use crate::common::*;

async fn still_serving(host: &Host) {
    let (status, body) = host.get("/event/212313").await;
    assert_eq!(status, 200, "the host must keep serving: {body}");
}

#[tokio::test]
async fn malformed_oversized_and_non_utf8_requests_are_refused_clearly() {
    let host = start_host(&[("MAX_BODY_BYTES", "4096")]).await;
    host.get("/cache/fill").await;

    let post = |body: Vec<u8>, content_type: &'static str| {
        host.client
            .post(host.at("/events"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    let malformed = post(b"[{\"attributes\": ".to_vec(), "application/json")
        .await
        .expect("request");
    assert_eq!(malformed.status(), 400);
    let body: serde_json::Value = malformed.json().await.expect("json");
    assert!(
        body["error"].as_str().unwrap_or_default().contains("JSON"),
        "{body}"
    );

    let bad_line = post(
        b"{\"id\":\"a\"}\nnot json\n".to_vec(),
        "application/x-ndjson",
    )
    .await
    .expect("request");
    assert_eq!(bad_line.status(), 400);
    let body: serde_json::Value = bad_line.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("line 2"),
        "{body}"
    );

    let oversized = post(vec![b' '; 10_000], "application/json")
        .await
        .expect("request");
    assert_eq!(oversized.status(), 413);

    let not_utf8 = post(vec![b'[', 0xff, 0xfe, b']'], "application/json")
        .await
        .expect("request");
    assert_eq!(not_utf8.status(), 400);
    let body: serde_json::Value = not_utf8.json().await.expect("json");
    assert!(
        body["error"].as_str().unwrap_or_default().contains("UTF-8"),
        "{body}"
    );

    let (status, _) = host.get("/event/%FF%FE").await;
    assert_eq!(status, 400, "a program id that is not UTF-8 is refused");

    let (status, body) = host.get("/event/424242").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "unknown program 424242");

    let (status, _) = host.get("/nowhere").await;
    assert_eq!(status, 404);

    still_serving(&host).await;
}

#[tokio::test]
async fn the_admin_api_refuses_missing_tokens_and_broken_plugins() {
    let host = start_host(&[]).await;
    host.get("/cache/fill").await;
    let unauthorised = host
        .client
        .get(host.at("/admin/plugins"))
        .send()
        .await
        .expect("request");
    assert_eq!(unauthorised.status(), 401);

    let broken = host
        .client
        .put(host.at("/admin/plugins/enrich"))
        .bearer_auth(ADMIN_TOKEN)
        .body(b"not a component".to_vec())
        .send()
        .await
        .expect("request");
    assert_eq!(broken.status(), 422);
    let body: serde_json::Value = broken.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("does not compile"),
        "{body}"
    );

    let sneaky = host
        .client
        .put(host.at("/admin/plugins/enrich"))
        .bearer_auth(ADMIN_TOKEN)
        .body(std::fs::read(plugin_path("hostile-denied-import")).expect("component"))
        .send()
        .await
        .expect("request");
    assert_eq!(sneaky.status(), 422);

    let unknown = host
        .client
        .post(host.at("/admin/plugins/ghost/rollback"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(unknown.status(), 404);

    still_serving(&host).await;
}

/// The cache routes change Redis: with an admin token configured, they need it.
#[tokio::test]
async fn cache_routes_need_the_admin_token_when_one_is_configured() {
    let host = start_host(&[]).await;
    for path in ["/cache/fill", "/cache/purge"] {
        let anonymous = host
            .client
            .get(host.at(path))
            .send()
            .await
            .expect("request");
        assert_eq!(anonymous.status(), 401, "{path} without the token");
        let wrong = host
            .client
            .get(host.at(path))
            .bearer_auth("not-the-admin-token-at-all")
            .send()
            .await
            .expect("request");
        assert_eq!(wrong.status(), 401, "{path} with a wrong token");
        let (status, _) = host.get(path).await;
        assert_eq!(status, 200, "{path} with the token");
    }
}

/// The event-count limit is enforced while the body is parsed: a batch one event over
/// the limit is refused with 413 before the parser reaches the rest of the body.
#[tokio::test]
async fn a_batch_over_the_event_limit_is_refused_before_the_rest_is_parsed() {
    let host = start_host(&[("MAX_BATCH_EVENTS", "3")]).await;
    host.get("/cache/fill").await;
    for (body, content_type) in [
        ("[{},{},{},{}, this is never read", "application/json"),
        ("{}\n{}\n{}\n{}\n", "application/x-ndjson"),
    ] {
        let response = host
            .client
            .post(host.at("/events"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 413, "{content_type}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["error"], "more than 3 events in one request");
    }
    still_serving(&host).await;
}

/// A partition key Kinesis would refuse (empty, or over 256 characters) is a 400 at the
/// edge naming the event; it never reaches the stream.
#[tokio::test]
async fn partition_keys_the_stream_would_refuse_are_a_400_naming_the_event() {
    let host = start_host(&[]).await;
    host.get("/cache/fill").await;
    let long = "k".repeat(257);
    for (key, problem) in [
        ("", "the partition key is empty"),
        (long.as_str(), "the partition key has 257 characters"),
    ] {
        let body = format!(r#"[{{"key":"ok"}},{{"key":"{key}"}}]"#);
        let response = host
            .client
            .post(host.at("/events"))
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 400);
        let body: serde_json::Value = response.json().await.expect("json");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("event 1: "), "{error}");
        assert!(error.contains(problem), "{error}");
    }
    // 256 characters of any script are fine.
    let body = format!(r#"[{{"key":"{}"}}]"#, "é".repeat(256));
    let response = host
        .client
        .post(host.at("/events"))
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    still_serving(&host).await;
}
