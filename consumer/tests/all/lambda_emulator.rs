//! The Lambda function binary under a real Lambda Runtime API emulator
//! (`cargo lambda watch --only-lambda-apis`), invoked with Kinesis event payloads
//! (`cargo lambda invoke --data-file`): good records
//! go to DynamoDB, undecodable and rejected ones to the SQS dead-letter queue (moto),
//! and `batchItemFailures` names exactly the records that must be redelivered.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use base64::Engine as _;
use contract::redis_names as names;
use redis::AsyncCommands;
use serde_json::{Value, json};

/// The Lambda Runtime API emulator (`cargo lambda watch --only-lambda-apis`) and the
/// function binary that cargo built for this test, connected to it; both stopped on drop.
struct Watch {
    emulator: Child,
    function: Child,
    log: PathBuf,
}

impl Drop for Watch {
    fn drop(&mut self) {
        for child in [&mut self.function, &mut self.emulator] {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        }
        std::thread::sleep(Duration::from_millis(300));
        for child in [&mut self.function, &mut self.emulator] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn cargo_lambda() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_LAMBDA").unwrap_or_else(|_| {
        panic!(
            "CARGO_LAMBDA is not set: run `cargo xtask test`, which installs cargo-lambda \
             and starts the emulators"
        )
    }))
}

fn cargo_lambda_command() -> Command {
    let tool = cargo_lambda();
    let mut path = std::ffi::OsString::from(tool.parent().unwrap_or(Path::new(".")));
    if let Some(existing) = std::env::var_os("PATH") {
        path.push(":");
        path.push(existing);
    }
    let mut command = Command::new(tool);
    command.current_dir(repo_root()).env("PATH", path);
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Starts the emulator on `port` and the `function` binary with `env` (plus the variables
/// the Lambda service sets), both writing to `log`.
fn start_watch(function: &Path, port: u16, env: &[(&str, String)], log: PathBuf) -> Watch {
    let output = std::fs::File::create(&log).unwrap();
    let emulator = cargo_lambda_command()
        .args([
            "lambda",
            "watch",
            "--only-lambda-apis",
            "--invoke-address",
            "127.0.0.1",
        ])
        .args(["--invoke-port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output.try_clone().unwrap())
        .process_group(0)
        .spawn()
        .expect("start cargo lambda watch");
    // The function exits if the Runtime API is not there yet: wait for the emulator.
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "cargo lambda watch did not listen on {port}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let function = Command::new(function)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .process_group(0)
        .spawn()
        .expect("start the function");
    Watch {
        emulator,
        function,
        log,
    }
}

/// Invokes the function with `payload`, retrying while the emulator is still starting
/// and the function is connecting; returns the function's JSON answer.
fn invoke(watch: &mut Watch, port: u16, payload: &Path) -> Value {
    let started = Instant::now();
    let log = |watch: &Watch| std::fs::read_to_string(&watch.log).unwrap_or_default();
    loop {
        if let Ok(Some(status)) = watch.function.try_wait() {
            panic!(
                "the function exited ({status})\n--- log ---\n{}",
                log(watch)
            );
        }
        let mut command = cargo_lambda_command();
        command
            .args(["lambda", "invoke", "--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            .arg("--data-file")
            .arg(payload)
            .args(["--output-format", "json"]);
        match output_within(command, Duration::from_secs(60)) {
            Some((true, stdout, _)) => {
                return serde_json::from_str(stdout.trim())
                    .unwrap_or_else(|error| panic!("the answer is not JSON ({error}): {stdout}"));
            }
            Some((false, _, stderr)) if started.elapsed() > Duration::from_secs(120) => {
                panic!(
                    "cargo lambda invoke kept failing: {stderr}\n--- log ---\n{}",
                    log(watch)
                )
            }
            None => panic!("cargo lambda invoke hung\n--- log ---\n{}", log(watch)),
            Some(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// Runs `command`, killing it after `limit`; (success, stdout, stderr), or `None` on timeout.
fn output_within(mut command: Command, limit: Duration) -> Option<(bool, String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = command
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("run cargo lambda invoke");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    Some((status.success(), read(&out), read(&err)))
}

/// A Kinesis event as the event source mapping sends it; records are (sequence, key, data).
fn kinesis_event(stream: &str, records: &[(&str, &str, Vec<u8>)]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|(sequence, key, data)| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": key,
                    "sequenceNumber": sequence,
                    "data": base64::engine::general_purpose::STANDARD.encode(data),
                    "approximateArrivalTimestamp": 1_700_000_000.5
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:{sequence}"),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/consumer",
                "awsRegion": "us-east-1",
                "eventSourceARN": format!("arn:aws:kinesis:us-east-1:123456789012:stream/{stream}")
            })
        })
        .collect();
    json!({ "Records": records })
}

fn failures(answer: &Value) -> Vec<String> {
    answer["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("no batchItemFailures in {answer}"))
        .iter()
        .map(|failure| {
            failure["itemIdentifier"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// The backends of one test: a fresh table, dead-letter queue and program, and the
/// function's environment pointing at them.
struct Backends {
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    table: String,
    queue_url: String,
    program_id: String,
    redis: redis::aio::MultiplexedConnection,
    env: Vec<(&'static str, String)>,
}

async fn backends() -> Backends {
    let emulators = emulators();
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config(&emulators.dynamodb).await);
    let sqs = aws_sdk_sqs::Client::new(&sdk_config(&emulators.sqs).await);
    let table = unique("lambda-events");
    create_event_table(&dynamodb, &table).await;
    let queue_url = sqs
        .create_queue()
        .queue_name(unique("dead-letters"))
        .send()
        .await
        .expect("create the dead-letter queue")
        .queue_url()
        .expect("a queue URL")
        .to_owned();
    let program_id = unique_program_id();
    let mut redis = redis::Client::open(emulators.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis
        .hset_multiple(format!("program:{program_id}"), &program_fields())
        .await
        .unwrap();
    let env = vec![
        ("PIPELINE_FILE", pipeline_file().display().to_string()),
        ("DYNAMODB_TABLE", table.clone()),
        ("REDIS_URL", emulators.redis_url.clone()),
        ("DEAD_LETTER_QUEUE_URL", queue_url.clone()),
        (
            "PLUGIN_CACHE_DIR",
            artifact_cache_dir().display().to_string(),
        ),
        ("AWS_ENDPOINT_URL_DYNAMODB", emulators.dynamodb.clone()),
        ("AWS_ENDPOINT_URL_SQS", emulators.sqs.clone()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("LOG_JSON", "false".to_owned()),
    ];
    Backends {
        dynamodb,
        sqs,
        table,
        queue_url,
        program_id,
        redis,
        env,
    }
}

/// Invokes the function under `watch` with a Kinesis event of `records`; the function's
/// JSON answer, and the watch back.
async fn invoke_with(
    watch: Watch,
    port: u16,
    stream: &str,
    records: &[(&str, &str, Vec<u8>)],
) -> (Value, Watch) {
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("event.json");
    std::fs::write(&payload, kinesis_event(stream, records).to_string()).unwrap();
    tokio::task::spawn_blocking(move || {
        let mut watch = watch;
        let answer = invoke(&mut watch, port, &payload);
        (answer, watch)
    })
    .await
    .unwrap()
}

/// A log file for the emulator and the function under `target/tmp/`.
fn watch_log() -> PathBuf {
    let log = repo_root().join(format!("target/tmp/{}.log", unique("lambda-watch")));
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    log
}

/// Sends a batch mixing good, undecodable and rejected records to the function: nothing
/// to redeliver, the good records stored, the others dead-lettered with their reason.
async fn a_mixed_batch_is_stored_or_dead_lettered(
    backends: &mut Backends,
    watch: Watch,
    port: u16,
) -> Watch {
    let table = backends.table.clone();
    let program_id = backends.program_id.clone();
    let good = |n: u32| format!("{table}-good-{n}");
    let rejected = format!("{table}-rejected");
    let (answer, watch) = invoke_with(
        watch,
        port,
        &table,
        &[
            ("1001", &good(1), good_record(&good(1), &program_id)),
            ("1002", "garbage", undecodable_record()),
            ("1003", &rejected, rejected_record(&rejected, &program_id)),
            ("1004", &good(2), good_record(&good(2), &program_id)),
        ],
    )
    .await;
    assert_eq!(failures(&answer), Vec::<String>::new(), "{answer}");
    assert_eq!(
        scan_ids(&backends.dynamodb, &table).await,
        [good(1), good(2)]
    );

    let received = backends
        .sqs
        .receive_message()
        .queue_url(&backends.queue_url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let mut letters: Vec<(String, String, Option<String>)> = received
        .messages()
        .iter()
        .map(|message| {
            let attribute = |name: &str| {
                message
                    .message_attributes()
                    .and_then(|attributes| attributes.get(name))
                    .and_then(|value| value.string_value())
                    .map(str::to_owned)
            };
            (
                attribute("recordId").unwrap_or_default(),
                attribute("kind").unwrap_or_default(),
                attribute("pluginVersion"),
            )
        })
        .collect();
    letters.sort();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(
        (letters[0].0.as_str(), letters[0].1.as_str()),
        ("1002", "undecodable")
    );
    assert_eq!(
        (letters[1].0.as_str(), letters[1].1.as_str()),
        ("1003", "rejected")
    );
    assert_eq!(
        letters[1].2.as_ref().map(String::len),
        Some(64),
        "the plugin version"
    );

    let count: u64 = backends
        .redis
        .hget(names::program_key(&program_id), names::EVENT_COUNT_FIELD)
        .await
        .unwrap();
    assert_eq!(count, 2);
    watch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_reports_exactly_the_records_to_redeliver_as_batch_item_failures() {
    let mut backends = backends().await;
    let port = free_port();
    let function = Path::new(env!("CARGO_BIN_EXE_adtrack-consumer"));
    let watch = start_watch(function, port, &backends.env, watch_log());
    let watch = a_mixed_batch_is_stored_or_dead_lettered(&mut backends, watch, port).await;

    // With the dead-letter queue gone, bad records cannot be parked: exactly they are
    // reported for redelivery, and the good record is stored.
    backends
        .sqs
        .delete_queue()
        .queue_url(&backends.queue_url)
        .send()
        .await
        .unwrap();
    let table = backends.table.clone();
    let program_id = backends.program_id.clone();
    let good = format!("{table}-good-3");
    let rejected = format!("{table}-rejected-2");
    let (answer, watch) = invoke_with(
        watch,
        port,
        &table,
        &[
            ("2001", "garbage", undecodable_record()),
            ("2002", &good, good_record(&good, &program_id)),
            ("2003", &rejected, rejected_record(&rejected, &program_id)),
        ],
    )
    .await;
    assert_eq!(failures(&answer), ["2001", "2003"], "{answer}");
    assert_eq!(
        scan_ids(&backends.dynamodb, &table).await,
        [
            format!("{table}-good-1"),
            format!("{table}-good-2"),
            good.clone()
        ]
    );
    drop(watch);
}

/// The deployable artifact itself: the zip that `cargo xtask package` builds
/// (`LAMBDA_PACKAGE`, set by `cargo xtask test`), unpacked as Lambda unpacks it into
/// `/var/task`, runs `bootstrap` with its own `pipeline.toml` and handles the mixed batch.
/// As on a real cold start the artifact cache (`/tmp`) is empty: every plugin is loaded
/// from the precompiled artifacts in the package, and nothing is compiled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packaged_bootstrap_answers_an_invoke() {
    let package = PathBuf::from(std::env::var("LAMBDA_PACKAGE").unwrap_or_else(|_| {
        panic!(
            "LAMBDA_PACKAGE is not set: run `cargo xtask test`, which builds the Lambda zip \
             and names it here"
        )
    }));
    let task_dir = tempfile::tempdir().unwrap();
    unpack(&package, task_dir.path());
    let empty_tmp = tempfile::tempdir().unwrap();
    let mut backends = backends().await;
    for (name, value) in &mut backends.env {
        match *name {
            "PIPELINE_FILE" => {
                *value = task_dir.path().join("pipeline.toml").display().to_string();
            }
            "PLUGIN_CACHE_DIR" => *value = empty_tmp.path().display().to_string(),
            _ => {}
        }
    }
    let port = free_port();
    let bootstrap = task_dir.path().join("bootstrap");
    let log = watch_log();
    let watch = start_watch(&bootstrap, port, &backends.env, log.clone());
    let watch = a_mixed_batch_is_stored_or_dead_lettered(&mut backends, watch, port).await;
    drop(watch);
    let log = without_colours(&std::fs::read_to_string(&log).unwrap());
    let init = log
        .lines()
        .find(|line| line.contains("consumer initialised"))
        .unwrap_or_else(|| panic!("no init report in the log:\n{log}"));
    assert!(init.contains("all_from_package=true"), "{init}\n{log}");
    let compiled: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("plugin loaded") && !line.contains("origin=\"package\""))
        .collect();
    assert_eq!(
        compiled,
        Vec::<&str>::new(),
        "loaded other than from the package"
    );
    let cached: Vec<_> = std::fs::read_dir(empty_tmp.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "cwasm"))
        .map(|entry| entry.path())
        .collect();
    assert_eq!(
        cached,
        Vec::<std::path::PathBuf>::new(),
        "nothing was compiled into /tmp"
    );
}

/// `text` without the ANSI colour codes of the function's text log.
fn without_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An escape sequence ends with its first letter (`m` for colours).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Unpacks `package` into `dir`, checking that it holds an executable `bootstrap` and the
/// pipeline file with every plugin component the file names.
fn unpack(package: &Path, dir: &Path) {
    let file = std::fs::File::open(package)
        .unwrap_or_else(|error| panic!("cannot open {}: {error}", package.display()));
    let mut archive = zip::ZipArchive::new(file).expect("the package is a zip");
    let names: Vec<String> = archive.file_names().map(str::to_owned).collect();
    assert!(
        names.iter().any(|name| name == "bootstrap")
            && names.iter().any(|name| name == "pipeline.toml"),
        "the package holds bootstrap and pipeline.toml: {names:?}"
    );
    let mode = archive
        .by_name("bootstrap")
        .expect("bootstrap")
        .unix_mode()
        .expect("bootstrap has Unix permissions");
    assert_ne!(mode & 0o111, 0, "bootstrap is executable ({mode:o})");
    archive.extract(dir).expect("the package unpacks");
    std::fs::set_permissions(
        dir.join("bootstrap"),
        std::os::unix::fs::PermissionsExt::from_mode(mode),
    )
    .unwrap();
    let pipeline = std::fs::read_to_string(dir.join("pipeline.toml")).unwrap();
    for line in pipeline.lines() {
        if let Some(path) = line
            .strip_prefix("path = \"")
            .and_then(|rest| rest.split('"').next())
        {
            assert!(
                dir.join(path).is_file(),
                "the package lacks {path}, which its pipeline.toml names: {names:?}"
            );
        }
    }
}
