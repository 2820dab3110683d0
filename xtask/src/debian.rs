//! Debian packages the tools need, installed with apt when missing (the machines this
//! project builds on run as root).

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::run;

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
    ensure_packages(debian_packages)?;
    if !runs() {
        bail!("{command} does not run even after installing {debian_packages:?}");
    }
    Ok(())
}

/// Installs the Debian packages that are not installed yet (the machine runs as root).
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
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
