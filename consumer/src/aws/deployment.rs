//! `adtrack-consumer --describe-deployment`: the environment variables the function reads
//! and the CloudWatch metrics it writes, as JSON, for the infrastructure tests.

use clap::CommandFactory;
use settings::deployment::DeploymentDescription;

use super::ConsumerConfig;

/// The only argument that asks for the description.
pub const FLAG: &str = "--describe-deployment";

/// Variables read outside clap, by the logger (`RUST_LOG`, then Lambda's
/// `AWS_LAMBDA_LOG_LEVEL`). The Region and the Runtime API address are Lambda's own.
const READ_ELSEWHERE: [&str; 2] = ["RUST_LOG", "AWS_LAMBDA_LOG_LEVEL"];

/// The function's deployment description as pretty JSON.
pub fn describe() -> String {
    let description = DeploymentDescription::new(
        &ConsumerConfig::command(),
        &READ_ELSEWHERE,
        plugin_metrics::described("consumer"),
    );
    serde_json::to_string_pretty(&description).unwrap_or_default()
}
