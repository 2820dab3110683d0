//! Sandboxed WebAssembly plugin engine shared by the host and the consumer.
//!
//! Plugins are components targeting the `adtrack:plugin` world in `wit/`. This crate is
//! the only one that touches wasmtime: it compiles and checks plugins, keeps a registry
//! of named plugins with atomic hot swap and rollback, and runs pipelines of them over
//! events with per-plugin memory, time and fuel limits.

#![deny(missing_docs)]

mod artifact_cache;
mod batch;
mod bindings;
mod call_metrics;
mod capabilities;
mod chain;
mod config;
pub mod contract_version;
mod core_data;
mod engine;
mod error;
mod event;
mod instance;
mod instance_pool;
mod pipeline;
mod registry;
mod sandbox;
mod version;

pub use artifact_cache::ArtifactSource;
pub use capabilities::Grant;
pub use chain::{ChainOutcome, Outcome, PluginChain, PluginRef};
pub use config::{EngineConfig, InstanceReuse, PluginLimits};
pub use core_data::{CoreDataLookup, CoreRecord, LookupError, NoCoreData, StaticCoreData};
pub use engine::{CompiledPlugin, LoadOrigin, PluginEngine, PluginReport};
pub use error::{CallFailure, EngineError};
pub use event::Event;
pub use pipeline::{PipelineFile, PluginDeclaration, PrecompiledPlugin, Side};
pub use registry::{PluginRegistry, PluginSettings, PluginStatus, RegisteredPlugin, SwapReport};
pub use version::PluginVersion;
