//! Building the `tracking` plugin in every supported language into
//! `target/plugins/tracking-<language>.wasm`, installing each language's tools when missing.
//!
//! | language | sources | tools, and where they come from |
//! |---|---|---|
//! | rust | `plugins/rust/tracking/` | rustup target `wasm32-wasip2` (built with the other Rust plugins) |
//! | js | `plugins/js/tracking/` | npm: componentize-js (`plugins/js/package-lock.json`) |
//! | python | `plugins/python/tracking/` | PyPI: componentize-py (`plugins/requirements.txt`) |
//! | c | `plugins/c/tracking/` | Debian: clang, lld, wasi-libc; PyPI: wasm-tools; C bindings from the `wit-bindgen-c` crate |
//! | zig | `plugins/zig/tracking/` | PyPI: ziglang, wasm-tools; the same C bindings |
//!
//! Python tools install into `target/venv-plugins/`, npm packages into
//! `plugins/js/node_modules/`, Debian packages system-wide. An install is skipped when it
//! is current and a build when its component is newer than every input, so a warm run is
//! fast. [`templates`] holds the `plugin new` templates of every language to working.

mod builders;
mod c_bindings;
pub mod templates;
mod toolchains;

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};

/// A language with a `tracking` plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// The reference, with wit-bindgen.
    Rust,
    /// JavaScript, with componentize-js.
    Js,
    /// Python, with componentize-py.
    Python,
    /// C, with clang, wasi-libc and wit-bindgen's C bindings.
    C,
    /// Zig, over the same C bindings.
    Zig,
}

impl Language {
    /// Every language, in build order.
    pub const ALL: [Language; 5] = [
        Language::Rust,
        Language::Js,
        Language::Python,
        Language::C,
        Language::Zig,
    ];

    /// The name in `tracking-<name>.wasm` and `plugins/<name>/`.
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Js => "js",
            Language::Python => "python",
            Language::C => "c",
            Language::Zig => "zig",
        }
    }
}

/// Builds every language's `tracking` plugin into `target/plugins/`. The Rust one must
/// already be built (`plugins::build`).
pub fn build(root: &Path) -> Result<()> {
    let started = Instant::now();
    for language in Language::ALL {
        build_one(root, language)?;
    }
    eprintln!(
        "xtask: every language's tracking plugin is in target/plugins/ ({:.1?})",
        started.elapsed()
    );
    Ok(())
}

/// Installs what `language` needs and builds its plugin into
/// `target/plugins/tracking-<language>.wasm`.
pub fn build_one(root: &Path, language: Language) -> Result<()> {
    let started = Instant::now();
    let output = root
        .join("target/plugins")
        .join(format!("tracking-{}.wasm", language.name()));
    let built = match language {
        Language::Rust => builders::rust(root, &output)?,
        Language::Js => builders::js(root, &output)?,
        Language::Python => builders::python(root, &output)?,
        Language::C => builders::c(root, &output)?,
        Language::Zig => builders::zig(root, &output)?,
    };
    let size = std::fs::metadata(&output)
        .with_context(|| format!("the build did not produce {}", output.display()))?
        .len();
    eprintln!(
        "xtask: tracking-{}.wasm {} ({} bytes, {:.1?})",
        language.name(),
        if built { "built" } else { "is up to date" },
        size,
        started.elapsed()
    );
    Ok(())
}

/// Whether `output` exists and is newer than every file under `inputs`, `wit/` and the
/// build scripts.
fn is_fresh(root: &Path, output: &Path, inputs: &[PathBuf]) -> Result<bool> {
    let Ok(built) = std::fs::metadata(output).and_then(|meta| meta.modified()) else {
        return Ok(false);
    };
    let mut newest = SystemTime::UNIX_EPOCH;
    let common = [root.join("wit"), root.join("xtask/src/languages")];
    for input in inputs.iter().chain(&common) {
        newest = newest.max(newest_modification(input)?);
    }
    Ok(built > newest)
}

fn newest_modification(path: &Path) -> Result<SystemTime> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut newest = meta.modified()?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_name() == "__pycache__" {
                continue;
            }
            newest = newest.max(newest_modification(&entry.path())?);
        }
    }
    Ok(newest)
}
