//! Building plugin components for `wasm32-wasip2` into `target/plugins/`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

const WASM_TARGET: &str = "wasm32-wasip2";

/// Installs the wasm target if missing, builds every Rust plugin and copies the
/// components to `target/plugins/<name>.wasm`.
pub fn build(root: &Path) -> Result<()> {
    ensure_wasm_target()?;
    let manifest = root.join("plugins/rust/Cargo.toml");
    eprintln!("xtask: building Rust plugins for {WASM_TARGET}");
    let status = crate::cargo(root)
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--manifest-path",
        ])
        .arg(&manifest)
        .status()
        .context("cannot start cargo")?;
    crate::check(status, "building the Rust plugins")?;
    let built = root
        .join("plugins/rust/target")
        .join(WASM_TARGET)
        .join("release");
    let out = root.join("target/plugins");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut copied = 0;
    for entry in
        std::fs::read_dir(&built).with_context(|| format!("cannot list {}", built.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "wasm") {
            let stem = path
                .file_stem()
                .map(|stem| stem.to_string_lossy().replace('_', "-"));
            let Some(stem) = stem else { continue };
            std::fs::copy(&path, out.join(format!("{stem}.wasm")))
                .with_context(|| format!("cannot copy {}", path.display()))?;
            copied += 1;
        }
    }
    if copied == 0 {
        bail!("no plugin components found in {}", built.display());
    }
    eprintln!("xtask: {copied} plugin components in {}", out.display());
    Ok(())
}

/// Lints the Rust plugins as they are built (`clippy -D warnings` for the wasm target)
/// and runs their unit tests natively.
pub fn check(root: &Path) -> Result<()> {
    let manifest = root.join("plugins/rust/Cargo.toml");
    let manifest = manifest.to_string_lossy();
    crate::step(
        root,
        "plugin lint",
        &[
            "clippy",
            "--release",
            "--target",
            WASM_TARGET,
            "--all-targets",
            "--manifest-path",
            &manifest,
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    crate::step(
        root,
        "plugin unit tests",
        &["test", "--manifest-path", &manifest],
        &[],
    )
}

fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run rustup (needed to install the wasm32-wasip2 target)")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    eprintln!("xtask: installing the {WASM_TARGET} target");
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .context("cannot run rustup")?;
    crate::check(status, "rustup target add")
}
