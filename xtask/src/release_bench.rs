//! `cargo xtask release-bench`: how long a publish takes to reach two host processes and
//! the consumer, with the services the tests use (moto's S3, redis-server).

use std::path::Path;

use anyhow::Result;

use crate::services::Services;

/// Builds the workspace and the plugins, starts the services, and runs the
/// `release_propagation` example for `rounds` publishes; it prints a Markdown table.
pub fn run(root: &Path, rounds: usize) -> Result<()> {
    crate::plugins::build(root)?;
    crate::build_workspace(root)?;
    let services = Services::start(root)?;
    let mut env = services.env();
    env.push((
        "ADTRACK_HOST_BIN".to_owned(),
        root.join("target/debug/adtrack-host").display().to_string(),
    ));
    let rounds = rounds.to_string();
    crate::step(
        root,
        "release propagation",
        &[
            "run",
            "-q",
            "-p",
            "adtrack-host",
            "--example",
            "release_propagation",
            "--",
            &rounds,
        ],
        &env,
    )
}
