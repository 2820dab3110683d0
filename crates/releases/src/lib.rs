//! The fleet-wide plugin registry.
//!
//! Components are stored content-addressed (their sha256 is their version). A
//! [`Release`] is an immutable, numbered document naming, per side (host, consumer),
//! the chain and each plugin's version, config, limits and grants. One pointer names
//! the current release; it moves only by compare-and-set, so of two concurrent
//! publishes exactly one wins and the other gets [`RegistryError::Conflict`]. Every
//! release stays readable: a rollback moves the pointer back to an earlier one.
//!
//! The store is a local directory ([`LocalStore`], the embedded default) or, with the
//! `s3` feature, the stack's plugin bucket (`S3Store`, conditional writes). Processes
//! report the release they run with heartbeats, which `status` reads.
#![deny(missing_docs)]

mod config;
mod document;
mod error;
mod local;
mod registry;
mod routing;
mod runtime;
#[cfg(feature = "s3")]
mod s3;
mod store;

pub use config::RegistryConfig;
pub use document::{
    AbortPolicy, Candidate, CandidateMode, CandidateReport, Heartbeat, Release, ReleasedPlugin,
    ShadowSample, SideRelease, side_name,
};
pub use error::RegistryError;
pub use local::LocalStore;
pub use registry::{Publish, ReleaseRegistry, Status, TrialSpec};
pub use routing::{ReleaseChain, TrialCounts, canary_verdict, takes_candidate_path};
pub use runtime::{ActiveRelease, Announcer, ReleaseRuntime, instance_id};
#[cfg(feature = "s3")]
pub use s3::S3Store;
pub use store::{Pointer, RegistryStore};
