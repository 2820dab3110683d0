//! Installing the language toolchains from the package registries: Debian packages, npm
//! packages from a lock file, and Python packages into a virtualenv. Each install is
//! skipped when what it would install is already there.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::run;

/// The pinned Python-distributed tools: componentize-py, ziglang and wasm-tools.
pub fn requirements(root: &Path) -> PathBuf {
    root.join("plugins/requirements.txt")
}

/// The virtualenv `target/venv-plugins`, created if missing, with `plugins/requirements.txt`
/// installed (again whenever that file changes).
pub fn ensure_venv(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target/venv-plugins");
    let requirements = requirements(root);
    if !venv.join("bin/python").exists() {
        ensure_command(
            "python3",
            &["-c", "import venv"],
            &["python3", "python3-venv"],
        )?;
        eprintln!("xtask: creating the virtualenv {}", venv.display());
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv",
        )?;
    }
    let stamp = venv.join(".xtask-requirements.txt");
    if !same_contents(&requirements, &stamp) {
        eprintln!(
            "xtask: installing {} into {}",
            requirements.display(),
            venv.display()
        );
        run(
            Command::new(venv.join("bin/python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .arg("--requirement")
                .arg(&requirements),
            "pip install",
        )?;
        std::fs::copy(&requirements, &stamp)
            .with_context(|| format!("cannot write {}", stamp.display()))?;
    }
    Ok(venv)
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

/// Checks that `command` runs, installing `debian_packages` once if it does not.
pub fn ensure_command(command: &str, args: &[&str], debian_packages: &[&str]) -> Result<()> {
    let runs = || {
        Command::new(command)
            .args(args)
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if runs() {
        return Ok(());
    }
    ensure_debian_packages(debian_packages)?;
    if !runs() {
        bail!("{command} does not run even after installing {debian_packages:?}");
    }
    Ok(())
}

/// Installs the Debian packages that are not installed yet (the machine runs as root).
pub fn ensure_debian_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| !debian_package_installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages {}", missing.join(" "));
    let install = || {
        Command::new("apt-get")
            .args(["install", "--yes", "--quiet", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    if !install().is_ok_and(|status| status.success()) {
        // A fresh machine has no package lists yet.
        run(
            Command::new("apt-get").args(["update", "--quiet"]),
            "apt-get update",
        )?;
        let status = install().with_context(|| {
            format!(
                "cannot run apt-get; install these Debian packages: {}",
                missing.join(" ")
            )
        })?;
        crate::check(status, "apt-get install")?;
    }
    Ok(())
}

fn debian_package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["--show", "--showformat=${Status}", package])
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains("ok installed"))
}

fn same_contents(a: &Path, b: &Path) -> bool {
    match (std::fs::read(a), std::fs::read(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
