//! Project automation: `cargo xtask run`, `cargo xtask test`, `cargo xtask plugins`.

mod infrastructure;
mod lambda;
mod load_bench;
mod plugins;
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
    /// Build the example plugins and run the pipeline on its embedded defaults.
    Run,
    /// Install what the tests need, start services, run every check and test, stop what was started.
    Test,
    /// Build every plugin component into target/plugins/.
    Plugins,
    /// Check the CloudFormation templates: `cargo xtask infrastructure test`.
    #[command(subcommand)]
    Infrastructure(infrastructure::Command),
    /// Build the consumer's Lambda zip (target/lambda/adtrack-consumer/bootstrap.zip).
    Package,
    /// Load-test `GET /event/{id}` against a bare axum handler with wrk (release builds).
    LoadBench(load_bench::LoadBenchArgs),
    /// Upload the consumer package and plugins, then deploy the CloudFormation stack.
    Deploy(infrastructure::DeployArgs),
}

fn main() -> ExitCode {
    let root = workspace_root();
    let result = match Cli::parse().command {
        Task::Plugins => plugins::build(&root),
        Task::Run => run(&root),
        Task::Test => test(&root),
        Task::Infrastructure(command) => infrastructure::run(&root, command),
        Task::Deploy(args) => infrastructure::deploy(&root, &args),
        Task::LoadBench(args) => load_bench::run(&root, &args),
        Task::Package => lambda::package(&root).map(|zip| println!("{}", zip.display())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(root: &Path) -> Result<()> {
    plugins::build(root)?;
    let events = std::fs::File::open(root.join("host/samples/events.jsonl"))
        .context("cannot open host/samples/events.jsonl")?;
    eprintln!(
        "xtask: running the host plugin chain from pipeline.toml over host/samples/events.jsonl"
    );
    let status = cargo(root)
        .args([
            "run",
            "--quiet",
            "--package",
            "adtrack-host",
            "--",
            "pipeline",
            "run",
        ])
        .args([
            "--pipeline",
            "pipeline.toml",
            "--core-data",
            "host/samples/core-data.json",
        ])
        .stdin(events)
        .status()
        .context("cannot start cargo")?;
    check(status, "adtrack-host pipeline run")
}

fn test(root: &Path) -> Result<()> {
    plugins::build(root)?;
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
    )?;
    step(
        root,
        "build",
        &["build", "--workspace", "--all-targets"],
        &[],
    )?;
    let services = services::Services::start(root)?;
    step(
        root,
        "tests",
        &["test", "--workspace", "--all-targets"],
        &services.env(),
    )?;
    drop(services);
    infrastructure::test(root)?;
    Ok(())
}

/// Runs one cargo step of the test task, failing the task if it fails.
fn step(root: &Path, name: &str, args: &[&str], env: &[(String, String)]) -> Result<()> {
    eprintln!("xtask: {name}: cargo {}", args.join(" "));
    let status = cargo(root)
        .args(args)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .status()
        .with_context(|| format!("cannot start cargo for {name}"))?;
    check(status, name)
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
    command
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
