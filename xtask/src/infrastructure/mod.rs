//! The CloudFormation deployment in `infrastructure/`: `cargo xtask infrastructure test`
//! checks the templates (cfn-lint, then the pytest suite: template settings, checkov and
//! cfn-guard against the reviewed allow-list, the stacks deployed in moto and checked
//! against what the binaries read and write); `deploy` creates or updates a deployment.

mod deploy;
mod guard;
mod step;

use std::path::Path;
use std::process::Command as Process;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

pub use deploy::{DeployArgs, deploy};

/// The Python tools the checks need live here, away from the system Python.
const VENV: &str = "target/venv";
/// The pinned Python requirements of the checks.
const REQUIREMENTS: &str = "infrastructure/requirements.txt";
/// checkov pins its own libraries, so it has a virtualenv of its own.
const CHECKOV_VENV: &str = "target/venv-checkov";
/// checkov's pinned requirements.
const CHECKOV_REQUIREMENTS: &str = "infrastructure/requirements-checkov.txt";
/// The root template; the nested ones are in `infrastructure/stacks/`.
const ROOT_TEMPLATE: &str = "infrastructure/adtrack.yaml";
/// The stack `deploy` creates before the root stack (ECR repository, artifact bucket).
const BOOTSTRAP_TEMPLATE: &str = "infrastructure/bootstrap.yaml";

/// `cargo xtask infrastructure …`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run cfn-lint over every template, then the template tests (checkov, cfn-guard,
    /// moto).
    Test,
}

/// Runs one `cargo xtask infrastructure` command.
pub fn run(root: &Path, command: Command) -> Result<()> {
    match command {
        Command::Test => test(root),
    }
}

/// Installs the tools if needed, lints every template and runs the template tests. The
/// tests ask the debug binaries what they read and write, so the workspace is built first
/// (nothing to do when `cargo xtask test` has just built it).
pub fn test(root: &Path) -> Result<()> {
    let venv = crate::python_venv::ensure(root, VENV, REQUIREMENTS)?;
    let checkov = crate::python_venv::ensure(root, CHECKOV_VENV, CHECKOV_REQUIREMENTS)?;
    let guard = guard::install(root)?;
    crate::build_workspace(root)?;
    let templates = templates(root)?;
    eprintln!(
        "xtask: infrastructure: cfn-lint over {} templates",
        templates.len()
    );
    let status = Process::new(venv.join("bin/cfn-lint"))
        .current_dir(root)
        .args(&templates)
        .status()
        .context("cannot start cfn-lint")?;
    crate::check(status, "cfn-lint")?;
    eprintln!(
        "xtask: infrastructure: pytest (template settings, checkov, cfn-guard, the stacks in moto)"
    );
    let status = Process::new(venv.join("bin/python"))
        .current_dir(root.join("infrastructure"))
        .args(["-m", "pytest"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("CHECKOV", checkov.join("bin/checkov"))
        .envs(guard::env(&guard))
        .env("ADTRACK_HOST_BIN", root.join("target/debug/adtrack-host"))
        .env(
            "ADTRACK_CONSUMER_BIN",
            root.join("target/debug/adtrack-consumer"),
        )
        .env("AWS_CLI", venv.join("bin/aws"))
        .status()
        .context("cannot start pytest")?;
    crate::check(status, "the infrastructure tests")
}

/// The root template, the bootstrap template and every nested template, as paths
/// relative to the root.
fn templates(root: &Path) -> Result<Vec<String>> {
    let stacks = root.join("infrastructure/stacks");
    let mut nested = Vec::new();
    for entry in
        std::fs::read_dir(&stacks).with_context(|| format!("cannot list {}", stacks.display()))?
    {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") {
            nested.push(format!("infrastructure/stacks/{name}"));
        }
    }
    if nested.is_empty() {
        bail!("no templates in {}", stacks.display());
    }
    nested.sort();
    Ok([ROOT_TEMPLATE.to_owned(), BOOTSTRAP_TEMPLATE.to_owned()]
        .into_iter()
        .chain(nested)
        .collect())
}
