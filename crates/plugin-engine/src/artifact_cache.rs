//! Precompiled `.cwasm` artifacts on disk, keyed by plugin version and engine settings,
//! so that a cold start (e.g. a Lambda init) skips compilation: a read-only directory
//! shipped with the binary (the Lambda package, the container image), then a writable
//! cache directory that this process fills.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::version::PluginVersion;

/// Where a precompiled artifact was loaded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArtifactSource {
    /// The read-only directory shipped with the binary
    /// ([`crate::EngineConfig::packaged_artifact_dir`]).
    Package,
    /// The writable cache ([`crate::EngineConfig::artifact_cache_dir`]).
    Cache,
}

/// The artifact directories of an engine. Only this process (or a trusted build step)
/// may write to them: artifacts are native code loaded without validation.
pub(crate) struct ArtifactCache {
    packaged: Option<PathBuf>,
    writable: Option<PathBuf>,
    engine_fingerprint: String,
}

impl ArtifactCache {
    /// `None` when neither directory is set.
    pub(crate) fn new(
        packaged: Option<PathBuf>,
        writable: Option<PathBuf>,
        engine: &Engine,
    ) -> Option<Self> {
        if packaged.is_none() && writable.is_none() {
            return None;
        }
        Some(Self {
            packaged,
            writable,
            engine_fingerprint: engine_fingerprint(engine),
        })
    }

    fn path(&self, dir: &Path, version: PluginVersion) -> PathBuf {
        artifact_path(dir, version, &self.engine_fingerprint)
    }

    /// The artifact for `version` that this engine accepts, from the package first,
    /// then from the cache. An artifact of another engine configuration has another
    /// name and is not looked at; one whose header wasmtime refuses is skipped.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        version: PluginVersion,
    ) -> Option<(Component, ArtifactSource)> {
        let layers = [
            (&self.packaged, ArtifactSource::Package),
            (&self.writable, ArtifactSource::Cache),
        ];
        layers.into_iter().find_map(|(dir, source)| {
            let path = self.path(dir.as_deref()?, version);
            Some((load_file(engine, &path)?, source))
        })
    }

    /// Saves `component` as the artifact of `version` in the writable cache (if any);
    /// failures are logged, not fatal.
    pub(crate) fn store(&self, version: PluginVersion, component: &Component) {
        let Some(dir) = &self.writable else { return };
        let path = self.path(dir, version);
        if let Err(error) = write_artifact(&path, component) {
            tracing::warn!(path = %path.display(), %error, "cannot cache precompiled plugin");
        }
    }
}

/// What names the engine configuration in artifact file names: wasmtime's own
/// compatibility hash (its version, compiler settings and enabled features).
fn engine_fingerprint(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Where the artifact of `version` for the engine `fingerprint` lives in `dir`.
fn artifact_path(dir: &Path, version: PluginVersion, fingerprint: &str) -> PathBuf {
    dir.join(format!("{version}-{fingerprint}.cwasm"))
}

/// Where `engine` looks for the artifact of `version` in `dir`.
pub(crate) fn artifact_path_for(engine: &Engine, dir: &Path, version: PluginVersion) -> PathBuf {
    artifact_path(dir, version, &engine_fingerprint(engine))
}

/// Writes `component`'s artifact to `path` atomically (a partial file, then a rename),
/// creating the directory.
pub(crate) fn write_artifact(path: &Path, component: &Component) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let bytes = component
        .serialize()
        .map_err(|error| std::io::Error::other(format!("{error:#}")))?;
    let partial = path.with_extension(format!("cwasm.{}.partial", std::process::id()));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}

/// The artifact at `path`, if it exists and wasmtime accepts its header.
fn load_file(engine: &Engine, path: &Path) -> Option<Component> {
    if !path.exists() {
        return None;
    }
    // One of the two unsafe calls of the workspace (`unsafe_code` is denied elsewhere;
    // the other reads an ASCII string field in `plugin-batch`).
    // SAFETY: the artifact directories are written only by `store` above (or a trusted
    // build step running it) with artifacts that this engine configuration produced;
    // wasmtime still checks the engine compatibility header before use.
    #[allow(unsafe_code)]
    let loaded = unsafe { Component::deserialize_file(engine, path) };
    match loaded {
        Ok(component) => Some(component),
        Err(error) => {
            tracing::warn!(path = %path.display(), error = %format!("{error:#}"), "ignoring unusable precompiled artifact");
            None
        }
    }
}
