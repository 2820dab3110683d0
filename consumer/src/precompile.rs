//! `adtrack-consumer precompile`: compiles every plugin a pipeline file declares into
//! `.cwasm` artifacts with the consumer's own engine configuration, at packaging time,
//! so that a cold start with an empty `/tmp` loads native code instead of compiling.
//! The artifacts are named by plugin version and engine fingerprint; an engine of
//! another configuration (or another wasmtime) does not use them and compiles.

use std::path::{Path, PathBuf};

use plugin_engine::{EngineError, PipelineFile, PrecompiledPlugin};

use crate::init::consumer_engine;

/// Compiles every plugin of the pipeline file at `pipeline_path` into `out`, by default
/// the directory the function looks in first (`plugin-artifacts/` beside the file).
pub fn precompile(
    pipeline_path: &Path,
    out: Option<PathBuf>,
) -> Result<Vec<PrecompiledPlugin>, EngineError> {
    let pipeline = PipelineFile::load(pipeline_path)?;
    let out = out.unwrap_or_else(|| pipeline.packaged_artifact_dir());
    let engine = consumer_engine(&pipeline, None, None)?;
    pipeline.precompile(&engine, &out)
}
