//! The plugin templates, held to working: for every language, `adtrack-host plugin new`
//! into an empty temporary directory, the project's own `build.sh`, then
//! `adtrack-host plugin test` on the project's cases. The tools are the ones the
//! `tracking` plugins are built with (the venv, `plugins/js/node_modules`, Debian's clang),
//! and the build caches stay under `target/plugin-build/`, so a warm run compiles little.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::{Language, builders, c_bindings, toolchains};
use crate::{debian, run};

/// Scaffolds, builds and tests a plugin project in every language with the host binary
/// `target/debug/adtrack-host`, which must be built.
pub fn check(root: &Path) -> Result<()> {
    let started = Instant::now();
    let host = root.join("target/debug/adtrack-host");
    if !host.exists() {
        bail!(
            "{} is missing: build it first (cargo build -p adtrack-host)",
            host.display()
        );
    }
    let venv = toolchains::ensure_venv(root)?;
    debian::ensure_packages(&builders::C_DEBIAN_PACKAGES)?;
    debian::ensure_command("node", &["--version"], &["nodejs", "npm"])?;
    toolchains::ensure_npm_packages(&root.join("plugins/js"))?;
    let scratch = std::env::temp_dir().join(format!("adtrack-templates-{}", std::process::id()));
    for language in Language::ALL {
        let project = scratch.join(format!("demo-{}", language.name()));
        std::fs::create_dir_all(&project)
            .with_context(|| format!("cannot create {}", project.display()))?;
        check_one(root, &host, &venv, language, &project).with_context(|| {
            format!(
                "the {} template failed (the project is left in {})",
                language.name(),
                project.display()
            )
        })?;
    }
    std::fs::remove_dir_all(&scratch)
        .with_context(|| format!("cannot remove {}", scratch.display()))?;
    eprintln!(
        "xtask: every language's template scaffolds, builds and passes its cases ({:.1?})",
        started.elapsed()
    );
    Ok(())
}

/// `plugin new` → bindings → `build.sh` → `plugin test` for one language in the empty
/// directory `project`.
fn check_one(
    root: &Path,
    host: &Path,
    venv: &Path,
    language: Language,
    project: &Path,
) -> Result<()> {
    let started = Instant::now();
    let name = format!("demo-{}", language.name());
    run(
        Command::new(host)
            .args(["plugin", "new", &name, "--lang", language.name(), "--dir"])
            .arg(project),
        "adtrack-host plugin new",
    )?;
    if matches!(language, Language::C | Language::Zig) {
        // The project's bindings step (`wit-bindgen c wit --world plugin --out-dir
        // bindings`), run through the same library instead of the CLI.
        c_bindings::generate_into(&project.join("wit"), &project.join("bindings"))?;
    }
    let mut build = Command::new("sh");
    build
        .arg(project.join("build.sh"))
        .env("PATH", path_with(&venv.join("bin"))?)
        .env(
            "COMPONENTIZE_JS",
            root.join("plugins/js/node_modules/@bytecodealliance/componentize-js/src/cli.js"),
        )
        .env(
            "ZIG",
            format!("{} -m ziglang", venv.join("bin/python").display()),
        )
        .env(
            "ZIG_LOCAL_CACHE_DIR",
            root.join("target/plugin-build/template-zig-cache"),
        )
        .env(
            "CARGO_TARGET_DIR",
            root.join("target/plugin-build/template-rust"),
        );
    crate::without_cargo_run_env(&mut build);
    run(&mut build, &format!("{name}/build.sh"))?;
    run(
        Command::new(host)
            .args(["plugin", "test"])
            .arg(project.join(format!("{name}.wasm")))
            .arg("--cases")
            .arg(project.join("cases.jsonl")),
        "adtrack-host plugin test",
    )?;
    eprintln!(
        "xtask: template {} ok: plugin new, build.sh, plugin test ({:.1?})",
        language.name(),
        started.elapsed()
    );
    Ok(())
}

/// `PATH` with `dir` first.
fn path_with(dir: &Path) -> Result<std::ffi::OsString> {
    let mut dirs: Vec<PathBuf> = vec![dir.to_path_buf()];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).context("cannot build PATH")
}
