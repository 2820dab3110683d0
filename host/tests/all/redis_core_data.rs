//! Core data in the real redis-server: updates published on Redis reach L1 without a
//! restart, and the host keeps serving from L1 while Redis is down.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use contract::redis_names;

use crate::common::*;

async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection")
}

async fn program_name(host: &Host, program: &str) -> (u16, String) {
    let (status, body) = host.get(&format!("/event/{program}")).await;
    (
        status,
        body["programName"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Polls until `check` holds, for at most `limit`.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_core_data_change_published_on_redis_reaches_l1_without_restart() {
    let redis_url = service_env("REDIS_URL");
    let host = start_host(&[("REDIS_URL", &redis_url)]).await;
    let program = format!("77{}", std::process::id());
    let key = redis_names::program_key(&program);
    let mut redis = redis_connection(&redis_url).await;
    let fields = [
        ("programName", "Before"),
        ("checksum", "abc123"),
        ("customerId", "4711"),
        ("customerName", "Acme"),
    ];
    redis::cmd("HSET")
        .arg(&key)
        .arg(&fields[..])
        .query_async::<i64>(&mut redis)
        .await
        .expect("HSET");

    // A bot's request loads the program into L1 and is filtered by the host chain, so no
    // event reaches the embedded consumer, whose count update would notify a change.
    let filtered = host
        .client
        .get(host.at(&format!("/event/{program}")))
        .header("user-agent", "Googlebot/2.1")
        .send()
        .await
        .expect("request");
    assert_eq!(filtered.status(), 204);
    redis::cmd("HSET")
        .arg(&key)
        .arg("programName")
        .arg("After")
        .query_async::<i64>(&mut redis)
        .await
        .expect("HSET");
    assert_eq!(
        program_name(&host, &program).await,
        (200, "Before".to_owned()),
        "without a notification L1 keeps answering"
    );
    // Published until seen: the host's subscription may still be connecting.
    assert!(
        eventually(Duration::from_secs(10), || {
            let mut redis = redis.clone();
            let program = program.clone();
            let host = &host;
            async move {
                redis::cmd("PUBLISH")
                    .arg(redis_names::UPDATES_CHANNEL)
                    .arg(&program)
                    .query_async::<i64>(&mut redis)
                    .await
                    .expect("PUBLISH");
                tokio::time::sleep(Duration::from_millis(100)).await;
                program_name(host, &program).await.1 == "After"
            }
        })
        .await,
        "the published change never reached L1"
    );
    redis::cmd("DEL")
        .arg(&key)
        .query_async::<i64>(&mut redis)
        .await
        .expect("DEL");
}

/// A redis-server of this test's own, so stopping it does not disturb other tests.
struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (cargo xtask test installs it)");
        let own = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        own
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn while_redis_is_down_cached_programs_are_served_and_the_host_recovers() {
    let port = free_port();
    let redis = OwnRedis::start(port);
    let url = redis.url();
    let host = start_host(&[("REDIS_URL", &url)]).await;
    assert_eq!(host.get("/cache/fill").await.0, 200);
    assert_eq!(
        program_name(&host, "212313").await,
        (200, "Summer Video Preroll".to_owned())
    );

    redis.stop();
    for _ in 0..5 {
        assert_eq!(
            program_name(&host, "212313").await,
            (200, "Summer Video Preroll".to_owned()),
            "a cached program is served while Redis is down"
        );
    }
    let (status, _) = host.get("/event/212399").await;
    assert_eq!(
        status, 503,
        "an uncached program cannot be looked up while Redis is down"
    );
    let (status, health) = host.get("/health/check").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["coreData"]["connected"], false);

    let redis = OwnRedis::start(port);
    assert!(
        eventually(Duration::from_secs(15), || async {
            host.get("/cache/fill").await.0 == 200
        })
        .await,
        "the host never reconnected to Redis"
    );
    let mut connection = redis_connection(&redis.url()).await;
    redis::cmd("HSET")
        .arg(redis_names::program_key("212313"))
        .arg("programName")
        .arg("Renamed")
        .query_async::<i64>(&mut connection)
        .await
        .expect("HSET");
    assert!(
        eventually(Duration::from_secs(20), || {
            let mut connection = connection.clone();
            let host = &host;
            async move {
                redis::cmd("PUBLISH")
                    .arg(redis_names::UPDATES_CHANNEL)
                    .arg("212313")
                    .query_async::<i64>(&mut connection)
                    .await
                    .expect("PUBLISH");
                tokio::time::sleep(Duration::from_millis(100)).await;
                program_name(host, "212313").await.1 == "Renamed"
            }
        })
        .await,
        "the subscription did not recover after Redis returned"
    );
    let (_, health) = host.get("/health/check").await;
    assert_eq!(health["status"], "ok");
}
