//! What is deployed is what was tested. `cargo xtask package` ends here: the packaged
//! release `bootstrap`, unpacked from the zip as Lambda unpacks it into `/var/task`, runs
//! under the Lambda Runtime API emulator (`cargo lambda watch`) on one Kinesis batch,
//! against moto's DynamoDB and SQS, with an empty plugin cache as on a real cold start; the
//! batch must be stored with nothing to redeliver, the function must write its plugin
//! metrics, and its init report must say that every plugin was loaded from the package's
//! precompiled artifacts. Only then is the package's digest recorded,
//! and `cargo xtask deploy` refuses any package whose digest is not.
//!
//! A package for the other architecture runs under qemu's user-mode emulation.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::lambda::{self, Architecture};
use crate::services;

/// The record of the last verified package, beside it: `DIGEST ARCHITECTURE`.
const RECORD: &str = "verified.txt";
/// How long the function may take from start to its answer (a cold start compiles plugins).
const INVOKE_TIMEOUT: Duration = Duration::from_secs(180);

/// A content digest of a package (64-bit FNV-1a, stable across Rust releases), in hex.
pub fn digest(package: &[u8]) -> String {
    let hash = package
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{hash:016x}")
}

/// Runs the package at `zip` (built for `architecture`) on one Kinesis batch and, if it
/// handles it, records it as verified.
pub fn verify(root: &Path, zip: &Path, architecture: Architecture) -> Result<()> {
    let bytes = std::fs::read(zip).with_context(|| format!("cannot read {}", zip.display()))?;
    let scratch = root.join("target/lambda-check");
    let _ = std::fs::remove_dir_all(&scratch);
    let task_dir = scratch.join("task");
    unpack(&bytes, &task_dir)?;
    let launcher = lambda::launcher(architecture)?;
    let moto = Moto::start(root, &scratch)?;
    let run = Run::new(&moto);
    moto.create_table(&run.table)?;
    let queue_url = moto.create_queue(&run.queue)?;
    let tools = lambda::install_tools(root)?;
    let log_path = scratch.join("function.log");
    let (emulator, lambda_port) =
        start_runtime_emulator(&tools, root, &scratch.join("emulator.log"))?;
    let mut function_command = launcher.command(&task_dir.join("bootstrap"));
    function_command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PIPELINE_FILE", task_dir.join("pipeline.toml"))
        .env("PLUGIN_CACHE_DIR", scratch.join("plugin-cache"))
        .env("DYNAMODB_TABLE", &run.table)
        .env("DEAD_LETTER_QUEUE_URL", &queue_url)
        .env("METRICS_NAMESPACE", "adtrack/package-check")
        .env("AWS_ENDPOINT_URL_DYNAMODB", moto.endpoint())
        .env("AWS_ENDPOINT_URL_SQS", moto.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{lambda_port}/.rt"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", "adtrack-package-check")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024");
    let mut function = Process::spawn(&mut function_command, &log_path)?;
    let event = scratch.join("kinesis-event.json");
    std::fs::write(&event, kinesis_event(&run.message_id))?;
    let answer = invoke(&tools, root, lambda_port, &event, &mut function, &log_path)?;
    drop(function);
    drop(emulator);
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    check_answer(&answer, &log)?;
    if !moto.table_has(&run.table, &run.message_id)? {
        bail!(
            "the packaged bootstrap answered but did not store {} in DynamoDB\n--- function log ---\n{log}",
            run.message_id
        );
    }
    if !log.contains("\"PluginCalls\"") {
        bail!("the packaged bootstrap wrote no plugin metrics\n--- function log ---\n{log}");
    }
    if !log.contains("\"all_from_package\":true") {
        bail!(
            "the packaged bootstrap did not load every plugin from the package's precompiled \
             artifacts (with an empty plugin cache)\n--- function log ---\n{log}"
        );
    }
    std::fs::write(
        zip.with_file_name(RECORD),
        format!("{} {}\n", digest(&bytes), architecture.name()),
    )?;
    eprintln!(
        "xtask: package check: the packaged bootstrap ({}) stored a Kinesis batch under the \
         Lambda emulator; recorded as verified",
        architecture.name()
    );
    Ok(())
}

/// Fails unless `package` (the bytes of the zip at `zip`) is the one `verify` last passed,
/// built for `architecture`.
pub fn ensure_verified(zip: &Path, package: &[u8], architecture: Architecture) -> Result<()> {
    let record = zip.with_file_name(RECORD);
    let rebuild = format!(
        "run `cargo xtask package --architecture {}`, which builds and checks it",
        architecture.name()
    );
    let Ok(recorded) = std::fs::read_to_string(&record) else {
        bail!(
            "{} has not been checked under the Lambda emulator; {rebuild}",
            zip.display()
        );
    };
    let mut fields = recorded.split_whitespace();
    let (Some(digest_seen), Some(architecture_seen)) = (fields.next(), fields.next()) else {
        bail!(
            "{} is not a verification record; {rebuild}",
            record.display()
        );
    };
    if digest_seen != digest(package) {
        bail!("{} changed since it was checked; {rebuild}", zip.display());
    }
    if architecture_seen != architecture.name() {
        bail!(
            "{} was built for {architecture_seen}, not {}; {rebuild}",
            zip.display(),
            architecture.name()
        );
    }
    Ok(())
}

/// Fails unless the function's answer names no record to redeliver.
fn check_answer(answer: &str, log: &str) -> Result<()> {
    let compact: String = answer.chars().filter(|c| !c.is_whitespace()).collect();
    if !compact.contains("\"batchItemFailures\":[]") {
        bail!(
            "the packaged bootstrap asked for records to be redelivered: {answer}\n\
             --- function log ---\n{log}"
        );
    }
    Ok(())
}

/// Unpacks the zip as Lambda does, keeping `bootstrap` executable.
pub(crate) fn unpack(zip: &[u8], dir: &Path) -> Result<()> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(zip)).context("the package is not a zip")?;
    archive
        .extract(dir)
        .with_context(|| format!("cannot unpack the package into {}", dir.display()))?;
    let bootstrap = dir.join("bootstrap");
    let mode = archive
        .by_name("bootstrap")
        .context("the package has no bootstrap")?
        .unix_mode()
        .unwrap_or(0);
    if mode & 0o111 == 0 {
        bail!("bootstrap is not executable in the package (mode {mode:o})");
    }
    std::fs::set_permissions(
        &bootstrap,
        std::os::unix::fs::PermissionsExt::from_mode(mode),
    )?;
    Ok(())
}

/// A child process with its output in a log file, killed on drop.
pub(crate) struct Process(Child);

impl Process {
    pub(crate) fn spawn(command: &mut Command, log: &Path) -> Result<Self> {
        let file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {command:?}"))?;
        Ok(Self(child))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A moto server of this check's own, on a free port.
struct Moto {
    port: u16,
    _process: Process,
}

impl Moto {
    fn start(root: &Path, scratch: &Path) -> Result<Self> {
        let port = free_port()?;
        let log = scratch.join("moto.log");
        let process = Process::spawn(
            Command::new(services::install_moto(root)?).args([
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ]),
            &log,
        )?;
        let moto = Self {
            port,
            _process: process,
        };
        let started = Instant::now();
        while moto
            .call("dynamodb", "DynamoDB_20120810.ListTables", "{}")
            .is_none()
        {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("moto did not answer on port {port}; see {}", log.display());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(moto)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The JSON body of a successful AWS JSON-protocol call.
    fn call(&self, service: &str, target: &str, body: &str) -> Option<serde_json::Value> {
        let answer = services::aws_json_call(self.port, target, service, body)?;
        if !(answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")) {
            return None;
        }
        let (_, body) = answer.split_once("\r\n\r\n")?;
        serde_json::from_str(body).ok()
    }

    fn create_table(&self, table: &str) -> Result<()> {
        let body = format!(
            r#"{{"TableName":"{table}","BillingMode":"PAY_PER_REQUEST",
            "AttributeDefinitions":[{{"AttributeName":"id","AttributeType":"S"}}],
            "KeySchema":[{{"AttributeName":"id","KeyType":"HASH"}}]}}"#
        );
        self.call("dynamodb", "DynamoDB_20120810.CreateTable", &body)
            .map(drop)
            .with_context(|| format!("moto did not create the table {table}"))
    }

    fn create_queue(&self, queue: &str) -> Result<String> {
        let answer = self
            .call(
                "sqs",
                "AmazonSQS.CreateQueue",
                &format!(r#"{{"QueueName":"{queue}"}}"#),
            )
            .with_context(|| format!("moto did not create the queue {queue}"))?;
        answer["QueueUrl"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("moto's CreateQueue answer has no QueueUrl: {answer}"))
    }

    fn table_has(&self, table: &str, id: &str) -> Result<bool> {
        let answer = self
            .call(
                "dynamodb",
                "DynamoDB_20120810.Scan",
                &format!(r#"{{"TableName":"{table}"}}"#),
            )
            .with_context(|| format!("moto could not scan {table}"))?;
        let items = answer["Items"].as_array().cloned().unwrap_or_default();
        Ok(items.iter().any(|item| item["id"]["S"] == id))
    }
}

/// Names unique to one check.
struct Run {
    table: String,
    queue: String,
    message_id: String,
}

impl Run {
    fn new(moto: &Moto) -> Self {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis());
        Self {
            table: format!("package-check-{}-{stamp}", moto.port),
            queue: format!("package-check-{stamp}"),
            message_id: format!("package-check-{stamp}"),
        }
    }
}

/// A Kinesis event of one record: a tracking event in the reference architecture's
/// wire format (`TrackingEvent` fields 1 to 8), as an existing producer writes it.
fn kinesis_event(message_id: &str) -> String {
    let record = tracking_event(&[
        (1, Field::Text("212313")),
        (2, Field::Text("b84e02d7")),
        (3, Field::Number(4712)),
        (4, Field::Text("xtask-package-check/1.0")),
        (5, Field::Text("Summer Video Preroll")),
        (6, Field::Text("Globex Travel")),
        (7, Field::Number(1)),
        (8, Field::Text(message_id)),
    ]);
    format!(
        r#"{{"Records":[{{"kinesis":{{"kinesisSchemaVersion":"1.0","partitionKey":"{message_id}",
        "sequenceNumber":"49590338271490256608559692538361571095921575989136588898",
        "data":"{}","approximateArrivalTimestamp":1700000000.5}},
        "eventSource":"aws:kinesis","eventVersion":"1.0",
        "eventID":"shardId-000000000000:49590338271490256608559692538361571095921575989136588898",
        "eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/consumer",
        "awsRegion":"us-east-1","eventSourceARN":"arn:aws:kinesis:us-east-1:123456789012:stream/events"}}]}}"#,
        base64(&record)
    )
}

/// A protobuf field value: a string or a varint.
enum Field<'a> {
    Text(&'a str),
    Number(u64),
}

fn tracking_event(fields: &[(u64, Field<'_>)]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (number, value) in fields {
        match value {
            Field::Text(text) => {
                varint(&mut bytes, number << 3 | 2);
                varint(&mut bytes, text.len() as u64);
                bytes.extend_from_slice(text.as_bytes());
            }
            Field::Number(value) => {
                varint(&mut bytes, number << 3);
                varint(&mut bytes, *value);
            }
        }
    }
    bytes
}

fn varint(bytes: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        bytes.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::new();
    for chunk in bytes.chunks(3) {
        let word = chunk.iter().enumerate().fold(0u32, |word, (i, byte)| {
            word | u32::from(*byte) << (16 - 8 * i)
        });
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(ALPHABET[(word >> (18 - 6 * i) & 0x3f) as usize] as char);
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// Invokes the function through the emulator, retrying while it starts; its JSON answer.
/// Each attempt is bounded, and the function is watched meanwhile: the emulator would wait
/// for a function that has exited.
fn invoke(
    tools: &lambda::LambdaTools,
    root: &Path,
    port: u16,
    event: &Path,
    function: &mut Process,
    log: &Path,
) -> Result<String> {
    let started = Instant::now();
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    let answer = event.with_file_name("answer.json");
    loop {
        let mut attempt = Process::spawn(
            lambda::cargo_lambda(tools, root)
                .args(["lambda", "invoke", "--invoke-address", "127.0.0.1"])
                .args(["--invoke-port", &port.to_string(), "--data-file"])
                .arg(event)
                .args(["--output-format", "json"]),
            &answer,
        )?;
        let status = loop {
            if let Ok(Some(status)) = function.0.try_wait() {
                bail!(
                    "the packaged bootstrap exited ({status})\n--- function log ---\n{}",
                    log_text()
                );
            }
            if let Some(status) = attempt.0.try_wait()? {
                break status;
            }
            if started.elapsed() > INVOKE_TIMEOUT {
                bail!(
                    "the packaged bootstrap did not answer within {INVOKE_TIMEOUT:?}\n\
                     --- function log ---\n{}",
                    log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let output = std::fs::read_to_string(&answer).unwrap_or_default();
        if status.success() {
            return Ok(output);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Starts the Lambda Runtime API emulator (`cargo lambda watch`) on a free port, its
/// output in `log`, and waits until it listens; the process and its port.
pub(crate) fn start_runtime_emulator(
    tools: &lambda::LambdaTools,
    root: &Path,
    log: &Path,
) -> Result<(Process, u16)> {
    let port = free_port()?;
    let emulator = Process::spawn(
        lambda::cargo_lambda(tools, root)
            .args(["lambda", "watch", "--only-lambda-apis"])
            .args(["--invoke-address", "127.0.0.1", "--invoke-port"])
            .arg(port.to_string()),
        log,
    )?;
    wait_for_port(port, log)?;
    Ok((emulator, port))
}

fn wait_for_port(port: u16, log: &Path) -> Result<()> {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "cargo lambda watch did not listen on {port}; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn the_tracking_event_uses_the_reference_field_numbers_and_wire_types() {
        let bytes = tracking_event(&[(1, Field::Text("ab")), (3, Field::Number(300))]);
        assert_eq!(bytes, [0x0a, 2, b'a', b'b', 0x18, 0xac, 0x02]);
    }

    #[test]
    fn a_package_is_verified_only_with_its_digest_and_architecture() {
        let dir = std::env::temp_dir().join(format!("xtask-verify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let zip = dir.join("bootstrap.zip");
        assert!(ensure_verified(&zip, b"package", Architecture::X86_64).is_err());
        std::fs::write(dir.join(RECORD), format!("{} x86-64\n", digest(b"package"))).unwrap();
        assert!(ensure_verified(&zip, b"package", Architecture::X86_64).is_ok());
        assert!(ensure_verified(&zip, b"other", Architecture::X86_64).is_err());
        assert!(ensure_verified(&zip, b"package", Architecture::Arm64).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_digest_is_stable() {
        assert_eq!(digest(b""), "cbf29ce484222325");
        assert_eq!(digest(b"a"), "af63dc4c8601ec8c");
    }
}
