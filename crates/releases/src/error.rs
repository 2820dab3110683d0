//! Why a registry operation failed.

use plugin_engine::{EngineError, PluginVersion};
use retry_policy::{ClassifiedError, Classify, ErrorKind};

/// A registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Another publisher moved the current release first; read it and try again.
    #[error("conflict: {0}")]
    Conflict(String),
    /// No release with that number exists.
    #[error("release {0} does not exist")]
    UnknownRelease(u64),
    /// No component with that version is stored.
    #[error("component {0} is not in the registry")]
    UnknownComponent(PluginVersion),
    /// The registry holds no release yet.
    #[error("the registry holds no release yet")]
    Empty,
    /// The plugin is not in the release; publishing a new plugin needs `--new`.
    #[error(
        "plugin {name} is not in the {side} chain of release {release} (publish with --new to add it)"
    )]
    UnknownPlugin {
        /// The plugin.
        name: String,
        /// `host` or `consumer`.
        side: &'static str,
        /// The current release.
        release: u64,
    },
    /// The side has no candidate (to promote or abort), or not that version any more.
    #[error("the {side} chain of release {release} has no such candidate")]
    NoCandidate {
        /// `host` or `consumer`.
        side: &'static str,
        /// The current release.
        release: u64,
    },
    /// A stored document cannot be read back.
    #[error("release document {what} is corrupt: {reason}")]
    Corrupt {
        /// Which document.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The candidate does not compile, does not match the world or asks for more than
    /// its grants: refused before anything was stored.
    #[error("candidate refused: {0}")]
    Refused(#[from] EngineError),
    /// The store could not be reached or refused the call.
    #[error("plugin registry: {0}")]
    Store(#[from] ClassifiedError),
}

impl Classify for RegistryError {
    fn kind(&self) -> ErrorKind {
        match self {
            RegistryError::Store(error) => error.kind(),
            RegistryError::Conflict(_)
            | RegistryError::Refused(EngineError::CompileTimeout { .. }) => ErrorKind::Transient,
            RegistryError::Corrupt { .. } | RegistryError::Empty => ErrorKind::AuthOrConfig,
            _ => ErrorKind::Permanent,
        }
    }
}
