//! Helpers shared by the workspace's integration tests (a dev-dependency only): where
//! the repository and the built plugins are, the addresses of the services
//! `cargo xtask test` starts (a missing one fails the test loudly, never skips it),
//! unique names, a harness that runs the real `adtrack-host` binary, and what the fault
//! suite needs: a TCP fault proxy, private service processes and the packaged Lambda
//! function under the Runtime API emulator.
#![deny(missing_docs)]

pub mod dynamodb;
mod fault_proxy;
mod host;
mod lambda;
mod private_services;
mod reference;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use fault_proxy::{Fault, FaultProxy};
pub use host::{ADMIN_TOKEN, Host};
pub use lambda::LambdaFunction;
pub use private_services::{PrivateService, ServiceKind};
pub use reference::{ReferenceTrackingEvent, decode_with_reference_schema, reference_proto};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The path of a plugin component built by `cargo xtask plugins`; panics with the
/// command to run when it is missing.
pub fn plugin_path(name: &str) -> PathBuf {
    let path = repo_root()
        .join("target/plugins")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "plugin component {} is missing: build the plugins with `cargo xtask plugins` \
         (`cargo xtask test` does it first)",
        path.display()
    );
    path
}

/// The bytes of a plugin component built by `cargo xtask plugins`.
pub fn plugin_bytes(name: &str) -> Vec<u8> {
    let path = plugin_path(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// Reads and removes `/tmp/perf-<pid>.map`, the perf map wasmtime writes for process
/// `pid` with `perf_map` on; the number of plugin functions it maps. Each line is
/// `<start> <size> <name>`; a stripped plugin's functions are named by index.
pub fn take_perf_map_functions(pid: u32) -> usize {
    let path = format!("/tmp/perf-{pid}.map");
    let map = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    std::fs::remove_file(&path).unwrap_or_else(|error| panic!("remove {path}: {error}"));
    map.lines()
        .filter(|line| line.contains("wasm[0]::function["))
        .count()
}

/// Writes `body` as `pipeline.toml` into `dir`, with `{plugins}` replaced by the
/// directory of the built components.
pub fn write_pipeline(dir: &Path, body: &str) -> PathBuf {
    let plugins = repo_root().join("target/plugins");
    let path = dir.join("pipeline.toml");
    std::fs::write(
        &path,
        body.replace("{plugins}", &plugins.display().to_string()),
    )
    .expect("write pipeline");
    path
}

/// An environment variable that `cargo xtask test` sets when it starts a service;
/// panics (the test fails, it is never skipped) when it is not set.
pub fn service_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the suite with `cargo xtask test`, which starts the \
             services (redis-server, kinesalite, DynamoDB Local, moto) and sets it"
        )
    })
}

/// Creates `bucket` in the S3 emulator at `S3_ENDPOINT_URL` (moto); panics if it cannot.
pub async fn create_bucket(bucket: &str) {
    let endpoint = service_env("S3_ENDPOINT_URL");
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("CreateBucket on the S3 emulator");
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// A name no other test (in this or another process) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// An endpoint that accepts connections and never sends a byte (a hung backend);
/// returns its URL. It lives as long as the test's runtime.
pub async fn silent_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            held.push(connection);
        }
    });
    format!("http://{address}")
}
