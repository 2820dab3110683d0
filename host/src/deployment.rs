//! `adtrack-host describe-deployment`: the environment variables `serve` reads and the
//! CloudWatch metrics it writes, as JSON, for the infrastructure tests.

use anyhow::{Context, Result};
use settings::deployment::DeploymentDescription;

/// Variables read outside clap: the log filter (`init_logging`) and the AWS SDK's Region.
const READ_ELSEWHERE: [&str; 2] = ["RUST_LOG", "AWS_REGION"];

/// Prints the deployment description of the `serve` subcommand of `command`.
pub fn print(command: &clap::Command) -> Result<()> {
    let serve = command
        .find_subcommand("serve")
        .context("adtrack-host has no serve command")?;
    let description =
        DeploymentDescription::new(serve, &READ_ELSEWHERE, plugin_metrics::described("host"));
    println!("{}", serde_json::to_string_pretty(&description)?);
    Ok(())
}
