//! A subscription whose connection goes silent (half-open: no error, no data) is found
//! by its keepalive ping and replaced, so core-data updates resume.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use core_data::RedisCoreData;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A TCP proxy to redis-server that can make the connections it holds go silent: they
/// stay open but no byte passes either way, as when a peer vanishes without a reset.
/// Connections made afterwards pass data again.
struct SilencingProxy {
    address: SocketAddr,
    /// Connections numbered below this drop everything.
    silent_below: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
}

impl SilencingProxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let silent_below = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (silent, count) = (silent_below.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let number = count.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(forward(client_read, server_write, number, silent.clone()));
                tokio::spawn(forward(server_read, client_write, number, silent.clone()));
            }
        });
        Self {
            address,
            silent_below,
            accepted,
        }
    }

    /// Every connection open now goes silent.
    fn silence_open_connections(&self) {
        let open = self.accepted.load(Ordering::SeqCst);
        self.silent_below.store(open, Ordering::SeqCst);
    }
}

async fn forward(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    number: usize,
    silent_below: Arc<AtomicUsize>,
) {
    let mut buffer = [0; 4096];
    while let Ok(read) = from.read(&mut buffer).await {
        if read == 0 {
            return;
        }
        if number >= silent_below.load(Ordering::SeqCst)
            && to.write_all(&buffer[..read]).await.is_err()
        {
            return;
        }
    }
}

async fn next_update(updates: &mut mpsc::Receiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(20), updates.recv())
        .await
        .expect("an update within 20 s")
        .expect("the subscription is followed")
}

#[tokio::test]
async fn a_subscription_gone_silent_is_replaced_and_updates_resume() {
    let url = test_support::service_env("REDIS_URL");
    let server = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let target = tokio::net::lookup_host(server)
        .await
        .expect("REDIS_URL names a host")
        .next()
        .expect("an address");
    let proxy = SilencingProxy::start(target).await;
    let proxied = format!("redis://{}", proxy.address);
    let follower = RedisCoreData::new(&proxied.as_str().into(), None, Duration::from_millis(500))
        .expect("client")
        .with_keepalive(Duration::from_millis(200));
    let publisher = RedisCoreData::connect(&url.as_str().into(), None, Duration::from_secs(2))
        .await
        .expect("redis-server answers at REDIS_URL");
    let channel: &'static str = test_support::unique("keepalive").leak();

    let mut updates = follower.follow_channel(channel);
    assert_eq!(next_update(&mut updates).await, "", "subscribed");
    publisher.publish(channel, "before").await.unwrap();
    assert_eq!(next_update(&mut updates).await, "before");

    proxy.silence_open_connections();
    assert_eq!(
        next_update(&mut updates).await,
        "",
        "the silent subscription is replaced by a new one"
    );
    publisher.publish(channel, "after").await.unwrap();
    assert_eq!(next_update(&mut updates).await, "after");
}
