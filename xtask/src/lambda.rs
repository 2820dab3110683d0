//! The consumer's Lambda package, and the tools for it and for the local Lambda emulator:
//! `cargo-lambda` (installed from PyPI with `ziglang`, which it uses to link for Amazon
//! Linux 2023, into `target/venv-lambda`).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::{pipeline_file, python_venv};

/// The pinned cargo-lambda and Zig.
const REQUIREMENTS: &str = "xtask/requirements/lambda.txt";

/// The package built into the function.
pub const PACKAGE: &str = "adtrack-consumer";

/// Where the package carries the precompiled plugins: beside the pipeline file, where
/// the function looks for them first (`PipelineFile::packaged_artifact_dir`).
pub const ARTIFACT_DIR: &str = "plugin-artifacts";

/// The installed tools.
pub struct LambdaTools {
    /// The `cargo-lambda` binary.
    pub cargo_lambda: PathBuf,
    /// The virtualenv's `bin`, which must come first on `PATH` so cargo-lambda finds zig.
    pub bin_dir: PathBuf,
}

/// Installs `cargo-lambda` and `ziglang` into `target/venv-lambda` if missing.
pub fn install_tools(root: &Path) -> Result<LambdaTools> {
    let bin_dir = python_venv::ensure(root, "target/venv-lambda", REQUIREMENTS)?.join("bin");
    Ok(LambdaTools {
        cargo_lambda: bin_dir.join("cargo-lambda"),
        bin_dir,
    })
}

/// The CPU architecture of a deployment: the consumer's Lambda package and the host's
/// container image are built for the same one, and the templates' `Architecture`
/// parameter names it the same way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Architecture {
    /// Intel and AMD (Lambda `x86_64`, ECS `X86_64`).
    #[default]
    #[value(name = "x86-64")]
    X86_64,
    /// Graviton (Lambda and Docker `arm64`, ECS `ARM64`).
    Arm64,
}

impl Architecture {
    /// The value of the templates' `Architecture` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86-64",
            Architecture::Arm64 => "arm64",
        }
    }

    /// The platform of the container image, as `docker buildx --platform` takes it.
    pub fn docker_platform(self) -> &'static str {
        match self {
            Architecture::X86_64 => "linux/amd64",
            Architecture::Arm64 => "linux/arm64",
        }
    }

    /// The architecture of the machine running xtask, if it is one of the two.
    pub fn of_this_machine() -> Option<Self> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Architecture::X86_64),
            "aarch64" => Some(Architecture::Arm64),
            _ => None,
        }
    }

    fn cargo_lambda_flag(self) -> &'static str {
        match self {
            Architecture::X86_64 => "--x86-64",
            Architecture::Arm64 => "--arm64",
        }
    }
}

impl std::str::FromStr for Architecture {
    type Err = anyhow::Error;

    fn from_str(name: &str) -> Result<Self> {
        <Self as clap::ValueEnum>::from_str(name, false)
            .map_err(|_| anyhow::anyhow!("unknown architecture {name:?} (x86-64 or arm64)"))
    }
}

/// Which binary goes into the package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// Optimised and linked by zig against the glibc of Amazon Linux 2023 for the given
    /// architecture, into `target/lambda/` (what `cargo xtask deploy` uploads).
    Release(Architecture),
    /// The binary of the workspace's debug build (`cargo build --workspace`, which must
    /// have run), into `target/lambda-test/`: the test suite's copy of the package, made
    /// without compiling the consumer a second time.
    Test,
}

/// Builds the consumer's Lambda package for `provided.al2023`: a zip holding the
/// executable `bootstrap`, `pipeline.toml` and the plugin components it names, at the same
/// relative paths (Lambda unpacks it into `/var/task`, so the function runs with
/// `PIPELINE_FILE=/var/task/pipeline.toml`), and `plugin-artifacts/` beside it: the
/// plugins precompiled by `bootstrap precompile` itself (under qemu for the other
/// architecture), so the artifacts match the engine configuration the function runs
/// with and a cold start with an empty `/tmp` compiles nothing. Returns
/// `<dir>/adtrack-consumer/bootstrap.zip`.
pub fn package(root: &Path, build: Build) -> Result<PathBuf> {
    let (binary, dir, architecture) = match build {
        Build::Release(architecture) => {
            let tools = install_tools(root)?;
            eprintln!(
                "xtask: cargo lambda build --release --package {PACKAGE} ({}, provided.al2023)",
                architecture.name()
            );
            let status = cargo_lambda(&tools, root)
                .args([
                    "lambda",
                    "build",
                    "--release",
                    architecture.cargo_lambda_flag(),
                ])
                .args(["--output-format", "binary", "--package", PACKAGE])
                .status()
                .context("cannot run cargo-lambda")?;
            crate::check(status, "cargo lambda build")?;
            (
                root.join("target/lambda").join(PACKAGE).join("bootstrap"),
                root.join("target/lambda").join(PACKAGE),
                architecture,
            )
        }
        Build::Test => (
            root.join("target/debug").join(PACKAGE),
            root.join("target/lambda-test").join(PACKAGE),
            Architecture::of_this_machine().unwrap_or_default(),
        ),
    };
    let artifacts = dir.join(ARTIFACT_DIR);
    precompile(root, &launcher(architecture)?, &binary, &artifacts)?;
    let zip = dir.join("bootstrap.zip");
    write_zip(root, &binary, &artifacts, &zip)?;
    eprintln!("xtask: packaged {}", zip.display());
    Ok(zip)
}

/// Compiles the plugins of the repository's pipeline file into `out` with the packaged
/// `binary`'s own engine (`bootstrap precompile`), replacing what was there.
fn precompile(root: &Path, launcher: &Launcher, binary: &Path, out: &Path) -> Result<()> {
    match std::fs::remove_dir_all(out) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).with_context(|| format!("cannot empty {}", out.display()));
        }
        _ => {}
    }
    eprintln!(
        "xtask: precompiling the plugins with the packaged bootstrap into {}",
        out.display()
    );
    let mut command = launcher.command(binary);
    command
        .arg("precompile")
        .arg("--pipeline")
        .arg(root.join(pipeline_file::PIPELINE_FILE))
        .arg("--out")
        .arg(out)
        .env_remove("PIPELINE_FILE");
    crate::run(&mut command, "bootstrap precompile")
}

/// Writes the package at `zip`: `binary` as `bootstrap`, executable, as Lambda requires,
/// then the pipeline file, its plugins and their precompiled `artifacts`.
fn write_zip(root: &Path, binary: &Path, artifacts: &Path, zip: &Path) -> Result<()> {
    let plugins = pipeline_file::plugin_paths(root)?;
    let mut precompiled = Vec::new();
    for entry in std::fs::read_dir(artifacts)
        .with_context(|| format!("cannot read {}", artifacts.display()))?
    {
        let entry = entry?;
        let name = format!("{ARTIFACT_DIR}/{}", entry.file_name().to_string_lossy());
        precompiled.push((name, entry.path()));
    }
    precompiled.sort();
    if let Some(dir) = zip.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file =
        std::fs::File::create(zip).with_context(|| format!("cannot create {}", zip.display()))?;
    let mut writer = ZipWriter::new(file);
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    let entries = std::iter::once(("bootstrap", binary.to_path_buf(), 0o755))
        .chain(std::iter::once((
            pipeline_file::PIPELINE_FILE,
            root.join(pipeline_file::PIPELINE_FILE),
            0o644,
        )))
        .chain(
            plugins
                .iter()
                .map(|path| (path.as_str(), root.join(path), 0o644)),
        )
        .chain(
            precompiled
                .iter()
                .map(|(name, path)| (name.as_str(), path.clone(), 0o644)),
        );
    for (name, source, mode) in entries {
        let bytes =
            std::fs::read(&source).with_context(|| format!("cannot read {}", source.display()))?;
        writer.start_file(name, options.unix_permissions(mode))?;
        writer.write_all(&bytes)?;
    }
    writer
        .finish()
        .with_context(|| format!("cannot write {}", zip.display()))?;
    Ok(())
}

/// How the bootstrap is started: directly, or under qemu for the other architecture.
pub enum Launcher {
    /// The binary runs on this machine.
    Native,
    /// The binary runs under qemu's user-mode emulation.
    Qemu {
        emulator: &'static str,
        sysroot: &'static str,
    },
}

/// How to start a binary built for `architecture` here (installing qemu if needed).
pub fn launcher(architecture: Architecture) -> Result<Launcher> {
    if Architecture::of_this_machine() == Some(architecture) {
        return Ok(Launcher::Native);
    }
    let (emulator, sysroot, packages): (_, _, &[&str]) = match architecture {
        Architecture::Arm64 => (
            "qemu-aarch64",
            "/usr/aarch64-linux-gnu",
            &["qemu-user", "libc6-arm64-cross", "libgcc-s1-arm64-cross"],
        ),
        Architecture::X86_64 => (
            "qemu-x86_64",
            "/usr/x86_64-linux-gnu",
            &["qemu-user", "libc6-amd64-cross", "libgcc-s1-amd64-cross"],
        ),
    };
    crate::debian::ensure_packages(packages)?;
    Ok(Launcher::Qemu { emulator, sysroot })
}

impl Launcher {
    /// A command running `bootstrap`.
    pub fn command(&self, bootstrap: &Path) -> Command {
        match self {
            Launcher::Native => Command::new(bootstrap),
            Launcher::Qemu { emulator, sysroot } => {
                let mut command = Command::new(emulator);
                command.args(["-L", sysroot]).arg(bootstrap);
                command
            }
        }
    }
}

/// A `cargo-lambda` command run from the workspace root with the venv first on `PATH`.
pub fn cargo_lambda(tools: &LambdaTools, root: &Path) -> Command {
    let mut path = OsString::from(&tools.bin_dir);
    if let Some(existing) = std::env::var_os("PATH") {
        path.push(":");
        path.push(existing);
    }
    let mut command = Command::new(&tools.cargo_lambda);
    command.current_dir(root).env("PATH", path);
    crate::without_cargo_run_env(&mut command);
    command
}
