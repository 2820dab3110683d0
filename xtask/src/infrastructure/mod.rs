//! The CloudFormation deployment in `infrastructure/`: `cargo xtask infrastructure test`
//! checks the templates (cfn-lint, then the pytest suite against moto); `deploy` uploads the
//! artifacts and deploys the stack with the AWS CLI.

mod deploy;

use std::path::Path;
use std::process::Command as Process;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

pub use deploy::{DeployArgs, deploy};

/// The Python tools the checks need live here, away from the system Python.
const VENV: &str = "target/venv";
/// The pinned Python requirements of the checks.
const REQUIREMENTS: &str = "infrastructure/requirements.txt";
/// The root template; the nested ones are in `infrastructure/stacks/`.
const ROOT_TEMPLATE: &str = "infrastructure/adtrack.yaml";

/// `cargo xtask infrastructure …`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run cfn-lint over every template, then the template tests against moto.
    Test,
}

/// Runs one `cargo xtask infrastructure` command.
pub fn run(root: &Path, command: Command) -> Result<()> {
    match command {
        Command::Test => test(root),
    }
}

/// Installs the Python tools if needed, lints every template and runs the template tests.
pub fn test(root: &Path) -> Result<()> {
    let venv = crate::python_venv::ensure(root, VENV, REQUIREMENTS)?;
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
    eprintln!("xtask: infrastructure: pytest (templates, and the stacks deployed in moto)");
    let status = Process::new(venv.join("bin/python"))
        .current_dir(root.join("infrastructure"))
        .args(["-m", "pytest"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .status()
        .context("cannot start pytest")?;
    crate::check(status, "the infrastructure tests")
}

/// The root template and every nested template, as paths relative to the root.
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
    Ok(std::iter::once(ROOT_TEMPLATE.to_owned())
        .chain(nested)
        .collect())
}
