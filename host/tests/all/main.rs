//! Integration tests of the host: the real `adtrack-host` binary against redis-server and kinesalite, the author CLI, bad input and hot swap under load.
//!
//! One test binary per crate (one link of wasmtime and the AWS SDK); each module is
//! one behaviour.

mod bad_input;
mod bounded_resources;
mod candidates;
mod common;
mod embedded_mode;
mod fault_suite;
mod fleet_releases;
mod hot_swap;
mod kinesis_stream;
mod language_hot_swap;
mod plugin_cli;
mod plugin_replay;
mod precompiled_artifacts;
mod redis_core_data;
