//! The consumer's deployable Lambda package (`LAMBDA_PACKAGE`, which `cargo xtask test`
//! builds) run under the Lambda Runtime API emulator (`cargo lambda watch
//! --only-lambda-apis`, from `CARGO_LAMBDA`) and invoked with `cargo lambda invoke`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, repo_root};

/// The packaged function connected to its own emulator; both stopped when dropped.
pub struct LambdaFunction {
    emulator: Child,
    function: Child,
    port: u16,
    log: PathBuf,
    task_dir: tempfile::TempDir,
}

impl LambdaFunction {
    /// Unpacks the package as Lambda does into a task directory, starts the emulator
    /// and `bootstrap` with `env` plus what the Lambda service sets; panics (the test
    /// fails) when the package or cargo-lambda is missing.
    pub async fn start(env: &[(&str, String)]) -> Self {
        let task_dir = tempfile::tempdir().expect("temp dir");
        unpack(&package(), task_dir.path());
        let port = free_port();
        let log = task_dir.path().join("lambda.log");
        let output = std::fs::File::create(&log).expect("lambda log");
        let emulator = cargo_lambda()
            .args(["lambda", "watch", "--only-lambda-apis"])
            .args(["--invoke-address", "127.0.0.1", "--invoke-port"])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("lambda log"))
            .stderr(output.try_clone().expect("lambda log"))
            .process_group(0)
            .spawn()
            .expect("cargo lambda watch starts");
        // The function exits when the Runtime API is not there yet.
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "cargo lambda watch did not listen on {port}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let function = Command::new(task_dir.path().join("bootstrap"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PIPELINE_FILE", task_dir.path().join("pipeline.toml"))
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("lambda log"))
            .stderr(output)
            .process_group(0)
            .spawn()
            .expect("bootstrap starts");
        Self {
            emulator,
            function,
            port,
            log,
            task_dir,
        }
    }

    /// Invokes the function with `payload` (retrying while the function connects) and
    /// returns its JSON answer; panics when the function exits or never answers.
    pub async fn invoke(&mut self, payload: &serde_json::Value) -> serde_json::Value {
        let file = self.task_dir.path().join("payload.json");
        std::fs::write(&file, payload.to_string()).expect("write the payload");
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.function.try_wait() {
                panic!("the function exited ({status}):\n{}", self.log());
            }
            let mut command = tokio::process::Command::from(cargo_lambda());
            command
                .args(["lambda", "invoke", "--invoke-address", "127.0.0.1"])
                .args(["--invoke-port", &self.port.to_string()])
                .arg("--data-file")
                .arg(&file)
                .args(["--output-format", "json"])
                .kill_on_drop(true);
            let output = tokio::time::timeout(Duration::from_secs(60), command.output())
                .await
                .unwrap_or_else(|_| panic!("cargo lambda invoke hung:\n{}", self.log()))
                .expect("cargo lambda invoke runs");
            if output.status.success() {
                let stdout = String::from_utf8_lossy(&output.stdout);
                return serde_json::from_str(stdout.trim())
                    .unwrap_or_else(|error| panic!("the answer is not JSON ({error}): {stdout}"));
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "cargo lambda invoke kept failing: {}\n{}",
                String::from_utf8_lossy(&output.stderr),
                self.log()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// What the emulator and the function logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LambdaFunction {
    fn drop(&mut self) {
        for child in [&mut self.function, &mut self.emulator] {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
        }
    }
}

/// The package `cargo xtask test` built.
fn package() -> PathBuf {
    PathBuf::from(std::env::var("LAMBDA_PACKAGE").unwrap_or_else(|_| {
        panic!(
            "LAMBDA_PACKAGE is not set: run `cargo xtask test`, which builds the consumer's \
             Lambda zip and names it here"
        )
    }))
}

/// `cargo-lambda` from `CARGO_LAMBDA`, with its directory first on `PATH`.
fn cargo_lambda() -> Command {
    let tool = PathBuf::from(std::env::var("CARGO_LAMBDA").unwrap_or_else(|_| {
        panic!("CARGO_LAMBDA is not set: run `cargo xtask test`, which installs cargo-lambda")
    }));
    let mut path = OsString::from(tool.parent().unwrap_or(Path::new(".")));
    if let Some(existing) = std::env::var_os("PATH") {
        path.push(":");
        path.push(existing);
    }
    let mut command = Command::new(tool);
    command.current_dir(repo_root()).env("PATH", path);
    command
}

/// Unpacks `package` into `dir`, keeping `bootstrap` executable.
fn unpack(package: &Path, dir: &Path) {
    let file = std::fs::File::open(package)
        .unwrap_or_else(|error| panic!("cannot open {}: {error}", package.display()));
    let mut archive = zip::ZipArchive::new(file).expect("the package is a zip");
    archive.extract(dir).expect("the package unpacks");
    std::fs::set_permissions(
        dir.join("bootstrap"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("bootstrap is executable");
}
