//! The JavaScript and Python toolchains of the plugins: npm packages from the lock file in
//! `plugins/js/`, and the PyPI tools of `plugins/requirements.txt` in a virtualenv.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::{python_venv, run};

/// The pinned Python-distributed tools: componentize-py, ziglang and wasm-tools.
pub const REQUIREMENTS: &str = "plugins/requirements.txt";

/// The virtualenv `target/venv-plugins` with [`REQUIREMENTS`] installed.
pub fn ensure_venv(root: &Path) -> Result<PathBuf> {
    python_venv::ensure(root, "target/venv-plugins", REQUIREMENTS)
}

/// Runs `npm ci` in `dir` unless `node_modules` holds exactly the locked packages.
pub fn ensure_npm_packages(dir: &Path) -> Result<()> {
    let lock = dir.join("package-lock.json");
    let stamp = dir.join("node_modules/.xtask-package-lock.json");
    if same_contents(&lock, &stamp) {
        return Ok(());
    }
    eprintln!(
        "xtask: installing npm packages in {} (npm ci)",
        dir.display()
    );
    run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir),
        "npm ci",
    )?;
    std::fs::copy(&lock, &stamp).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(())
}

fn same_contents(a: &Path, b: &Path) -> bool {
    match (std::fs::read(a), std::fs::read(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
