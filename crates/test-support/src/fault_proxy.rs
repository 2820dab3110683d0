//! A TCP fault proxy for the fault suite: it listens on a free loopback port, forwards
//! every connection to a target, and injects a [`Fault`] that can be switched while
//! connections are open, so a process under test sees its backend slow down, reset,
//! vanish or go half-open without the backend itself being touched.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does to the traffic it forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything as it comes.
    Pass,
    /// Forward everything, each chunk delayed by this much.
    Latency(Duration),
    /// Close every open connection with a TCP RST, and reset new ones as they arrive.
    Reset,
    /// Keep connections open but drop every byte in both directions. A connection that
    /// lost bytes stays silent after the fault ends, as after a route that dropped its
    /// packets until the peers gave up; new connections then pass again.
    Blackhole,
    /// Forward requests to the target but silently drop every byte it answers, so the
    /// client waits forever for replies to requests that took effect. A connection that
    /// lost replies stays that way after the fault ends.
    HalfOpen,
}

/// A running proxy; it stops accepting when dropped (open connections end with it).
pub struct FaultProxy {
    address: SocketAddr,
    fault: watch::Sender<Fault>,
    dropped: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `target`, passing traffic.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let (fault, _) = watch::channel(Fault::Pass);
        let dropped = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn(accept_loop(
            listener,
            target,
            fault.clone(),
            dropped.clone(),
        ));
        Ok(Self {
            address,
            fault,
            dropped,
            accept,
        })
    }

    /// Where clients connect instead of the target.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Switches every open and future connection to `fault`.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// Bytes dropped so far by [`Fault::Blackhole`] and [`Fault::HalfOpen`].
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Which way a pump carries bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToTarget,
    ToClient,
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    fault: watch::Sender<Fault>,
    dropped: Arc<AtomicU64>,
) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((client, _)) = listener.accept().await {
        let faults = fault.subscribe();
        if *faults.borrow() == Fault::Reset {
            reset(&client);
            continue;
        }
        connections.spawn(forward(client, target, faults, dropped.clone()));
        while connections.try_join_next().is_some() {}
    }
}

/// Forwards one connection until both sides finish or a reset is ordered.
async fn forward(
    client: TcpStream,
    target: SocketAddr,
    mut faults: watch::Receiver<Fault>,
    dropped: Arc<AtomicU64>,
) {
    let Ok(upstream) = TcpStream::connect(target).await else {
        reset(&client);
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let (to_target, to_client) = (faults.clone(), faults.clone());
    let pumps = async {
        tokio::join!(
            pump(
                &mut client_read,
                &mut upstream_write,
                Direction::ToTarget,
                to_target,
                &dropped,
            ),
            pump(
                &mut upstream_read,
                &mut client_write,
                Direction::ToClient,
                to_client,
                &dropped,
            ),
        )
    };
    let was_reset = tokio::select! {
        _ = pumps => false,
        _ = faults.wait_for(|fault| *fault == Fault::Reset) => true,
    };
    if was_reset {
        reset(client_read.as_ref());
        reset(upstream_read.as_ref());
        // Dropped without a shutdown, so the peers see an RST and no FIN before it.
        client_write.forget();
        upstream_write.forget();
    }
}

/// Copies `from` to `to` under the current fault; returns at end of input.
async fn pump(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    direction: Direction,
    faults: watch::Receiver<Fault>,
    dropped: &AtomicU64,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut silenced = false;
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let fault = *faults.borrow();
        match fault {
            Fault::Blackhole => silenced = true,
            Fault::HalfOpen if direction == Direction::ToClient => silenced = true,
            Fault::Latency(delay) => tokio::time::sleep(delay).await,
            Fault::Pass | Fault::Reset | Fault::HalfOpen => {}
        }
        if silenced {
            dropped.fetch_add(read as u64, Ordering::SeqCst);
            continue;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    if !silenced {
        let _ = to.shutdown().await;
    }
}

/// Makes the coming close of `stream` an RST rather than a FIN.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server that counts the bytes it received.
    async fn echo_server() -> (SocketAddr, Arc<AtomicU64>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    while let Ok(read) = stream.read(&mut buffer).await {
                        if read == 0 {
                            break;
                        }
                        counter.fetch_add(read as u64, Ordering::SeqCst);
                        if stream.write_all(&buffer[..read]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (address, received)
    }

    async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(message).await?;
        let mut answer = vec![0u8; message.len()];
        stream.read_exact(&mut answer).await?;
        Ok(answer)
    }

    async fn wait_until(condition: impl Fn() -> bool) {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn pass_forwards_both_ways() {
        let (target, _) = echo_server().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"ping").await.unwrap(), b"ping");
    }

    #[tokio::test]
    async fn latency_delays_each_chunk() {
        let (target, _) = echo_server().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        proxy.set(Fault::Latency(Duration::from_millis(100)));
        let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
        let started = std::time::Instant::now();
        assert_eq!(round_trip(&mut stream, b"slow").await.unwrap(), b"slow");
        // Once on the way there, once on the way back.
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn reset_closes_open_and_new_connections_with_rst() {
        let (target, _) = echo_server().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        let mut open = TcpStream::connect(proxy.address()).await.unwrap();
        round_trip(&mut open, b"before").await.unwrap();
        proxy.set(Fault::Reset);
        let mut buffer = [0u8; 8];
        let error = open.read(&mut buffer).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);

        let mut new = TcpStream::connect(proxy.address()).await.unwrap();
        let error = round_trip(&mut new, b"again").await.unwrap_err();
        assert!(
            matches!(
                error.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
            "{error}"
        );

        proxy.set(Fault::Pass);
        let mut after = TcpStream::connect(proxy.address()).await.unwrap();
        assert_eq!(round_trip(&mut after, b"after").await.unwrap(), b"after");
    }

    #[tokio::test]
    async fn blackhole_drops_everything_and_the_connection_stays_silent() {
        let (target, received) = echo_server().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        let mut open = TcpStream::connect(proxy.address()).await.unwrap();
        round_trip(&mut open, b"hello").await.unwrap();
        proxy.set(Fault::Blackhole);
        open.write_all(b"lost").await.unwrap();
        wait_until(|| proxy.dropped_bytes() == 4).await;
        assert_eq!(
            received.load(Ordering::SeqCst),
            5,
            "nothing reached the target"
        );

        proxy.set(Fault::Pass);
        let mut new = TcpStream::connect(proxy.address()).await.unwrap();
        assert_eq!(round_trip(&mut new, b"new").await.unwrap(), b"new");
        open.write_all(b"still lost").await.unwrap();
        wait_until(|| proxy.dropped_bytes() == 14).await;
        assert_eq!(received.load(Ordering::SeqCst), 8);
    }

    #[tokio::test]
    async fn half_open_delivers_requests_but_drops_the_answers() {
        let (target, received) = echo_server().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        proxy.set(Fault::HalfOpen);
        let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
        stream.write_all(b"request").await.unwrap();
        wait_until(|| received.load(Ordering::SeqCst) == 7).await;
        wait_until(|| proxy.dropped_bytes() == 7).await;

        proxy.set(Fault::Pass);
        stream.write_all(b"more").await.unwrap();
        wait_until(|| received.load(Ordering::SeqCst) == 11).await;
        wait_until(|| proxy.dropped_bytes() == 11).await;
    }
}
