//! Precompiled `.cwasm` artifacts on disk, keyed by plugin version and engine settings,
//! so that a cold start (e.g. a Lambda init) skips compilation.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::version::PluginVersion;

/// A directory of precompiled plugin artifacts. Only this process (or a trusted
/// build step) may write to it: artifacts are native code loaded without validation.
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    engine_fingerprint: String,
}

impl ArtifactCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir,
            engine_fingerprint: format!("{:016x}", hasher.finish()),
        }
    }

    fn path(&self, version: PluginVersion) -> PathBuf {
        self.dir
            .join(format!("{version}-{}.cwasm", self.engine_fingerprint))
    }

    /// The cached artifact for `version`, if one exists and this engine accepts it.
    pub(crate) fn load(&self, engine: &Engine, version: PluginVersion) -> Option<Component> {
        let path = self.path(version);
        if !path.exists() {
            return None;
        }
        // The one unsafe call of the workspace (`unsafe_code` is denied elsewhere).
        // SAFETY: the cache directory is written only by `store` below (or a trusted
        // build step) with artifacts that this engine configuration produced;
        // wasmtime still checks the engine compatibility header before use.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %format!("{error:#}"), "ignoring unusable cached artifact");
                None
            }
        }
    }

    /// Saves `component` as the artifact of `version`; failures are logged, not fatal.
    pub(crate) fn store(&self, version: PluginVersion, component: &Component) {
        let path = self.path(version);
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let bytes = component
                .serialize()
                .map_err(|error| std::io::Error::other(format!("{error:#}")))?;
            let partial = path.with_extension(format!("cwasm.{}.partial", std::process::id()));
            std::fs::write(&partial, bytes)?;
            std::fs::rename(&partial, &path)
        };
        if let Err(error) = write() {
            tracing::warn!(path = %path.display(), %error, "cannot cache precompiled plugin");
        }
    }
}
