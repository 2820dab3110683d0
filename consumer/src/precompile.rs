//! `adtrack-consumer precompile`: compiles every plugin a pipeline file declares into
//! `.cwasm` artifacts with the consumer's own engine configuration, at packaging time,
//! so that a cold start with an empty `/tmp` loads native code instead of compiling.
//! The artifacts are named by plugin version and engine fingerprint; an engine of
//! another configuration (or another wasmtime) does not use them and compiles.

use std::path::{Path, PathBuf};

use plugin_engine::{EngineError, PipelineFile, PluginVersion};

use crate::init::consumer_engine;

/// One plugin compiled into an artifact.
#[derive(Clone, Debug)]
pub struct Precompiled {
    /// Plugin name.
    pub name: String,
    /// Its version (sha256 of the component).
    pub version: PluginVersion,
    /// The artifact written.
    pub artifact: PathBuf,
}

/// Precompiling failed; the package must not be built without its artifacts.
#[derive(Debug, thiserror::Error)]
pub enum PrecompileError {
    /// The pipeline file or a plugin could not be read or compiled.
    #[error(transparent)]
    Plugins(#[from] EngineError),
    /// A compiled plugin's artifact could not be written.
    #[error("no artifact for plugin {name} was written to {dir} (see the log)")]
    NotWritten {
        /// Plugin name.
        name: String,
        /// The output directory.
        dir: String,
    },
}

/// Compiles every plugin of the pipeline file at `pipeline_path` into `out`, by default
/// the directory the function looks in first (`plugin-artifacts/` beside the file).
pub fn precompile(
    pipeline_path: &Path,
    out: Option<PathBuf>,
) -> Result<Vec<Precompiled>, PrecompileError> {
    let pipeline = PipelineFile::load(pipeline_path)?;
    let out = out.unwrap_or_else(|| pipeline.packaged_artifact_dir());
    let engine = consumer_engine(&pipeline, None, Some(out.clone()))?;
    let mut done = Vec::new();
    for (name, plugin) in &pipeline.plugins {
        let bytes = std::fs::read(&plugin.path).map_err(|source| EngineError::Read {
            path: plugin.path.clone(),
            source,
        })?;
        let version = engine
            .compile(name, &bytes, &plugin.settings.grants)?
            .version();
        let artifact =
            written_artifact(&out, version).ok_or_else(|| PrecompileError::NotWritten {
                name: name.clone(),
                dir: out.display().to_string(),
            })?;
        done.push(Precompiled {
            name: name.clone(),
            version,
            artifact,
        });
    }
    Ok(done)
}

/// The artifact of `version` in `dir`, if one is there.
fn written_artifact(dir: &Path, version: PluginVersion) -> Option<PathBuf> {
    let prefix = format!("{version}-");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(".cwasm")
        })
}
