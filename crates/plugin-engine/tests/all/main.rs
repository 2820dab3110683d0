//! Integration tests of the plugin engine: outcomes, limits, hostile plugins, hot swap, the artifact cache and the conformance suite of every language.
//!
//! One test binary per crate (one link of wasmtime and the AWS SDK); each module is
//! one behaviour.

mod artifact_cache;
mod batch_handler;
mod bounded_resources;
mod common;
mod conformance;
mod contract_versions;
mod hostile_plugins;
mod hot_swap;
mod instance_reuse;
mod perf_map;
mod plugin_outcomes;
mod thread_allocations;
