//! Virtualenvs under `target/` for the tools that come from PyPI: one per pinned
//! requirements file, created when missing and installed again whenever the file changes.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::{debian, run};

/// The virtualenv `venv` (relative to `root`) with the requirements file `requirements`
/// (relative to `root`) installed; returns its path.
pub fn ensure(root: &Path, venv: &str, requirements: &str) -> Result<PathBuf> {
    let dir = root.join(venv);
    if !dir.join("bin/python").exists() {
        debian::ensure_command(
            "python3",
            &["-c", "import venv, ensurepip"],
            &["python3", "python3-venv"],
        )?;
        eprintln!("xtask: creating the virtualenv {venv}");
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&dir),
            "python3 -m venv",
        )?;
    }
    let wanted = std::fs::read_to_string(root.join(requirements))
        .with_context(|| format!("cannot read {requirements}"))?;
    let stamp = dir.join(".xtask-installed-requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        eprintln!("xtask: installing {requirements} into {venv}");
        run(
            Command::new(dir.join("bin/python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--requirement",
                ])
                .arg(root.join(requirements)),
            "pip install",
        )?;
        std::fs::write(&stamp, wanted)
            .with_context(|| format!("cannot write {}", stamp.display()))?;
    }
    Ok(dir)
}
