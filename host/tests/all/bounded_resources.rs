//! The host stays bounded under pressure: requests over the concurrency limit are shed
//! with 503 + Retry-After, a full stream buffer makes `/health/check` answer 503, and a
//! shutdown with undeliverable records ends at its drain deadline.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::*;
use test_support::silent_endpoint;

#[tokio::test]
async fn requests_over_the_concurrency_limit_are_shed_with_retry_after() {
    let host = start_host(&[
        ("MAX_CONCURRENT_REQUESTS", "1"),
        ("REQUEST_TIMEOUT_MS", "60000"),
    ])
    .await;
    // POST /events whose bodies never finish hold the only place (and wait for it).
    let address = host.url.trim_start_matches("http://");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(unfinished_post(address).await);
    }

    let mut shed = None;
    for _ in 0..400 {
        // A held request that reached the limit while another request had the place
        // was shed itself: start it again, so one of them ends up holding the place.
        for connection in &mut held {
            if was_answered(connection) {
                *connection = unfinished_post(address).await;
            }
        }
        let response = host
            .client
            .get(host.at("/event/212313"))
            .send()
            .await
            .expect("request");
        if response.status() == 503 {
            shed = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let shed = shed.expect("a request beyond the limit is answered 503");
    assert_eq!(shed.headers()["retry-after"], "1");
    let body: serde_json::Value = shed.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("concurrent requests"),
        "{body}"
    );
    let (status, _) = host.get("/health/check").await;
    assert_eq!(status, 200, "health checks are not shed");
    drop(held);
}

/// A connection whose `POST /events` sent its headers and the first byte of a 1000-byte
/// body, and nothing more.
async fn unfinished_post(address: &str) -> TcpStream {
    let mut connection = TcpStream::connect(address).await.expect("connect");
    connection
        .write_all(
            b"POST /events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n[",
        )
        .await
        .expect("send the start of a request");
    connection
}

/// Whether the host answered (or closed) `connection`.
fn was_answered(connection: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    !matches!(connection.try_read(&mut byte), Err(error) if error.kind() == std::io::ErrorKind::WouldBlock)
}

#[tokio::test]
async fn a_full_stream_buffer_fails_the_health_check_and_shutdown_ends_at_its_deadline() {
    let kinesis = silent_endpoint().await;
    let mut host = start_host(&[
        ("KINESIS_STREAM_NAME", "never-answered"),
        ("KINESIS_ENDPOINT_URL", &kinesis),
        ("ACK", "buffer"),
        ("STREAM_BUFFER_RECORDS", "1"),
        ("SHUTDOWN_DRAIN_SECS", "2"),
    ])
    .await;
    let (status, _) = host.get("/cache/fill").await;
    assert_eq!(status, 200);
    // Deliveries never finish: the buffer of one record fills once the batches in
    // flight hold theirs, and stays full while events keep coming.
    let mut unhealthy = None;
    for _ in 0..100 {
        let (status, _) = host.get("/event/212313").await;
        assert!(status == 200 || status == 503, "{status}");
        let (status, health) = host.get("/health/check").await;
        if status == 503 {
            unhealthy = Some(health);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = unhealthy.expect("the health check fails while the buffer is full");
    assert_eq!(health["status"], "unavailable");
    assert_eq!(health["stream"]["problem"], "the stream buffer is full");

    // Delivering would take minutes of retries; the drain deadline ends it after 2 s.
    let exited = tokio::task::spawn_blocking(move || host.terminate());
    let status = tokio::time::timeout(Duration::from_secs(30), exited)
        .await
        .expect("the host exits at its drain deadline, not after delivery gives up")
        .expect("wait for the host");
    assert!(status.success(), "{status}");
}
