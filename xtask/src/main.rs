//! Project automation: `cargo xtask run`, `cargo xtask check`, `cargo xtask test`,
//! `cargo xtask plugins`, `cargo xtask templates` and the packaging, deployment and
//! benchmark tasks.

mod cold_start_bench;
mod debian;
mod fault_suite;
mod infrastructure;
mod lambda;
mod languages;
mod load_bench;
mod package_check;
mod pipeline_file;
mod plugins;
mod python_venv;
mod release_bench;
mod services;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// Project automation for the adtrack workspace.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Build the example plugins and serve the whole pipeline on its embedded defaults
    /// (no AWS, no Redis) at LISTEN_ADDR (127.0.0.1:8080).
    Run,
    /// The quick loop: format, lint and unit tests, with no plugins built and no services.
    Check,
    /// Install what the tests need, start services, run every check and test, stop what was started.
    Test,
    /// Build every plugin component into target/plugins/, with the `tracking` plugin in
    /// every language.
    Plugins {
        /// Only the Rust plugins: what the default pipeline and the container image need.
        #[arg(long)]
        rust_only: bool,
    },
    /// Build the `tracking` plugin of one language (installing its tools if missing).
    Language {
        #[arg(value_enum)]
        language: languages::Language,
    },
    /// Hold the `plugin new` templates to working: for every language, scaffold a plugin
    /// into an empty directory, build it with its own build script and run its cases.
    Templates,
    /// Check the CloudFormation templates: `cargo xtask infrastructure test`.
    #[command(subcommand)]
    Infrastructure(infrastructure::Command),
    /// Build the consumer's release Lambda zip (target/lambda/adtrack-consumer/bootstrap.zip)
    /// and check it: its `bootstrap` must handle a Kinesis batch under the Lambda emulator
    /// before `deploy` accepts it.
    Package {
        /// CPU architecture of the function (the deploy's --architecture must match).
        #[arg(long, value_enum, default_value_t)]
        architecture: lambda::Architecture,
    },
    /// Load-test `GET /event/{id}` against a bare axum handler with wrk (release builds).
    LoadBench(load_bench::LoadBenchArgs),
    /// Lambda init of the packaged consumer under the Runtime API emulator with three
    /// plugins: from the package's precompiled artifacts against compiling at init.
    ColdStartBench(cold_start_bench::ColdStartArgs),
    /// Time from a plugin publish to the last host task and the consumer running it
    /// (two hosts, moto's S3 and redis-server; p50 and max over the rounds).
    ReleaseBench {
        /// Publishes to time.
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
    /// Create or update the whole deployment: the bootstrap stack (ECR repository, artifact
    /// bucket), the host image, the checked consumer package, the stack and the plugins.
    Deploy(infrastructure::DeployArgs),
}

fn main() -> ExitCode {
    let root = workspace_root();
    let result = match Cli::parse().command {
        Task::Plugins { rust_only: true } => plugins::build(&root),
        Task::Plugins { rust_only: false } => {
            plugins::build(&root).and_then(|()| languages::build(&root))
        }
        Task::Language { language } => {
            plugins::build(&root).and_then(|()| languages::build_one(&root, language))
        }
        Task::Templates => plugins::build(&root)
            .and_then(|()| build_workspace(&root))
            .and_then(|()| languages::templates::check(&root)),
        Task::Run => run_pipeline(&root),
        Task::Check => quick_check(&root),
        Task::Test => test(&root),
        Task::Infrastructure(command) => infrastructure::run(&root, command),
        Task::Deploy(args) => infrastructure::deploy(&root, &args),
        Task::LoadBench(args) => load_bench::run(&root, &args),
        Task::ReleaseBench { rounds } => release_bench::run(&root, rounds),
        Task::ColdStartBench(args) => cold_start_bench::run(&root, &args),
        Task::Package { architecture } => {
            lambda::package(&root, lambda::Build::Release(architecture))
                .and_then(|zip| package_check::verify(&root, &zip, architecture).map(|()| zip))
                .map(|zip| println!("{}", zip.display()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the Rust plugins and serves the whole pipeline on its embedded defaults (HTTP,
/// in-process core data, plugin chain, local stream log, in-process consumer and store)
/// until interrupted.
fn run_pipeline(root: &Path) -> Result<()> {
    plugins::build(root)?;
    let listen = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let url = format!("http://{}", listen.replace("0.0.0.0", "localhost"));
    build_workspace(root)?;
    eprintln!(
        "xtask: serving pipeline.toml on its embedded defaults at {url} (Ctrl-C stops)\n\
         xtask:   curl {url}/cache/fill && curl {url}/event/212313"
    );
    let status = Command::new(root.join("target/debug/adtrack-host"))
        .arg("serve")
        .current_dir(root)
        .env("LISTEN_ADDR", &listen)
        .status()
        .context("cannot start target/debug/adtrack-host")?;
    check(status, "adtrack-host serve")
}

/// Format, lint and unit tests (each crate's `src/` tests): no plugins, no services.
fn quick_check(root: &Path) -> Result<()> {
    format_and_lint(root)?;
    step(
        root,
        "unit tests",
        &["test", "--workspace", "--lib", "--bins"],
        &[],
    )
}

/// Everything: the plugins in every language, format and lint (the Rust plugins' too,
/// with their unit tests), the Lambda package, the services, every test of the workspace
/// (unit and integration, the fault suite among them, whose table is printed after
/// them), then the CloudFormation templates. The
/// `plugin new` templates are built and tested in every language once the host is built.
fn test(root: &Path) -> Result<()> {
    plugins::build(root)?;
    languages::build(root)?;
    format_and_lint(root)?;
    plugins::check(root)?;
    build_workspace(root)?;
    languages::templates::check(root)?;
    let package = lambda::package(root, lambda::Build::Test)?;
    let services = services::Services::start(root)?;
    let mut env = services.env();
    env.push(("LAMBDA_PACKAGE".to_owned(), package.display().to_string()));
    let fault_report = fault_suite::prepare(root)?;
    env.push((
        "FAULT_SUITE_REPORT".to_owned(),
        fault_report.display().to_string(),
    ));
    let tests = step(
        root,
        "tests",
        &["test", "--workspace", "--all-targets"],
        &env,
    );
    fault_suite::print(&fault_report);
    tests?;
    drop(services);
    infrastructure::test(root)?;
    Ok(())
}

/// `cargo fmt --check` and `cargo clippy -D warnings` over every target of the workspace.
fn format_and_lint(root: &Path) -> Result<()> {
    step(root, "format", &["fmt", "--all", "--", "--check"], &[])?;
    step(
        root,
        "lint",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )
}

/// Builds the workspace with its test targets: the one build that `run` and `test` share
/// (features unify over the whole workspace and its test targets, so running one command
/// after the other rebuilds nothing).
pub(crate) fn build_workspace(root: &Path) -> Result<()> {
    step(
        root,
        "build",
        &["build", "--workspace", "--all-targets"],
        &[],
    )
}

/// Runs one cargo step of the test task, failing the task if it fails.
pub(crate) fn step(root: &Path, name: &str, args: &[&str], env: &[(String, String)]) -> Result<()> {
    eprintln!("xtask: {name}: cargo {}", args.join(" "));
    let status = cargo(root)
        .args(args)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .status()
        .with_context(|| format!("cannot start cargo for {name}"))?;
    check(status, name)
}

/// Runs `command`, failing with `what` if it cannot start or exits unsuccessfully.
pub(crate) fn run(command: &mut Command, what: &str) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {what}"))?;
    check(status, what)
}

fn check(status: std::process::ExitStatus, what: &str) -> Result<()> {
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// A cargo command run from the workspace root.
pub(crate) fn cargo(root: &Path) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root);
    without_cargo_run_env(&mut command);
    command
}

/// Removes the variables `cargo run` set for xtask itself (`CARGO_PKG_NAME`,
/// `CARGO_MANIFEST_DIR`, …) from a command that builds: build scripts such as ring's rerun
/// when they differ from the last build, and that would rebuild a good part of the
/// dependency graph whenever a build alternates between xtask and a plain `cargo`.
pub(crate) fn without_cargo_run_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_by_cargo_run = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            );
        if set_by_cargo_run {
            command.env_remove(name);
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
