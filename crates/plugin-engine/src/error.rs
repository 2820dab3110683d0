//! Errors of the plugin engine: loading and managing plugins, and failed calls.

use std::path::PathBuf;
use std::time::Duration;

/// Loading, checking or managing plugins failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The wasmtime engine could not be configured.
    #[error("cannot configure the wasm engine: {0}")]
    Setup(String),
    /// A plugin or pipeline file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error, kept as the source.
        source: std::io::Error,
    },
    /// A precompiled artifact could not be written.
    #[error("cannot write the precompiled artifact {path}: {source}")]
    ArtifactWrite {
        /// The artifact's path.
        path: PathBuf,
        /// The underlying error, kept as the source.
        source: std::io::Error,
    },
    /// The pipeline file is malformed or inconsistent.
    #[error("invalid pipeline file {path}: {reason}")]
    Pipeline {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The component is larger than the engine accepts.
    #[error("plugin {name} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Plugin name.
        name: String,
        /// Component size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not a valid component for this engine.
    #[error("plugin {name} does not compile: {reason}")]
    Compile {
        /// Plugin name.
        name: String,
        /// Compiler message.
        reason: String,
    },
    /// The component imports a capability the sandbox does not grant it.
    #[error("plugin {name} imports {import}, which is not granted to it")]
    DeniedImport {
        /// Plugin name.
        name: String,
        /// The import, e.g. `wasi:sockets/tcp@0.2.6`.
        import: String,
    },
    /// Compiling the component took longer than the engine allows.
    #[error("plugin {name} did not compile within {limit:?}; try again when the host is less busy")]
    CompileTimeout {
        /// Plugin name.
        name: String,
        /// The time limit.
        limit: Duration,
    },
    /// The component does not implement the `adtrack:plugin/plugin` world.
    #[error("plugin {name} does not match the adtrack:plugin world: {reason}")]
    WorldMismatch {
        /// Plugin name.
        name: String,
        /// What does not match.
        reason: String,
    },
    /// The component targets a contract version this host does not accept.
    #[error(
        "plugin {name} targets {package}@{target}; this host implements {package}@{host} and accepts {accepted}"
    )]
    IncompatibleContract {
        /// Plugin name.
        name: String,
        /// The contract package.
        package: &'static str,
        /// The version the component was built for.
        target: String,
        /// The version the host implements.
        host: String,
        /// The versions the host accepts.
        accepted: String,
    },
    /// A plugin limit is outside what the engine allows.
    #[error("plugin {name}: {reason}")]
    InvalidLimits {
        /// Plugin name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// No plugin of that name is registered.
    #[error("no plugin named {0}")]
    UnknownPlugin(String),
    /// A plugin of that name is registered already.
    #[error("a plugin named {0} is registered already")]
    DuplicatePlugin(String),
    /// Rollback was asked for a plugin that has no earlier version.
    #[error("plugin {0} has no earlier version to roll back to")]
    NothingToRollBack(String),
}

/// One call into a plugin failed; the plugin, not the event, is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// The call ran past its time limit and was interrupted.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The plugin tried to grow its memory past its limit.
    #[error("exceeded its memory limit of {0} bytes")]
    MemoryLimit(usize),
    /// The call used up its fuel.
    #[error("ran out of fuel ({0} units)")]
    FuelExhausted(u64),
    /// The guest trapped (panic, unreachable, bad memory access...).
    #[error("trapped: {0}")]
    Trap(String),
    /// `transform` returned more than the limits allow.
    #[error("returned too much output: {0}")]
    OutputTooLarge(String),
    /// No instance could be created (e.g. its start trapped); a pool in full use is
    /// an `Outcome::Retry` instead.
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    /// The plugin itself reported a `fail` error.
    #[error("reported failure: {0}")]
    Reported(String),
}

impl CallFailure {
    /// A short machine-readable name, used as a metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            CallFailure::Timeout(_) => "timeout",
            CallFailure::MemoryLimit(_) => "memory_limit",
            CallFailure::FuelExhausted(_) => "fuel_exhausted",
            CallFailure::Trap(_) => "trap",
            CallFailure::OutputTooLarge(_) => "output_too_large",
            CallFailure::Instantiate(_) => "instantiate",
            CallFailure::Reported(_) => "reported",
        }
    }
}
