//! What a binary declares to the deployment that runs it: the environment variables it
//! reads (taken from its clap command, so the list cannot drift from the code) and the
//! CloudWatch metrics it writes. The binaries print it as JSON (`describe-deployment`),
//! and the infrastructure tests check the templates against it.

use serde::Serialize;

/// Everything a deployment of one binary must agree with.
#[derive(Clone, Debug, Serialize)]
pub struct DeploymentDescription {
    /// Every environment variable the binary reads, by name.
    pub environment: Vec<EnvironmentVariable>,
    /// The CloudWatch metrics the binary writes.
    pub metrics: Vec<MetricDescription>,
}

/// One environment variable a binary reads.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct EnvironmentVariable {
    /// Its name.
    pub name: String,
    /// Whether the binary refuses to start without it.
    pub required: bool,
}

/// One CloudWatch metric a binary writes.
#[derive(Clone, Debug, Serialize)]
pub struct MetricDescription {
    /// The environment variable that names the metric's namespace.
    pub namespace_variable: &'static str,
    /// The metric's name.
    pub name: &'static str,
    /// The dimension sets it is written with.
    pub dimension_sets: Vec<Vec<&'static str>>,
    /// Fixed dimension values of this binary (e.g. `Side`).
    pub fixed_dimensions: Vec<(&'static str, &'static str)>,
}

impl DeploymentDescription {
    /// The description of a binary whose configuration is `command`, that also reads the
    /// variables in `read_elsewhere` (by its logger or the AWS SDK, outside clap), and
    /// writes `metrics`.
    pub fn new(
        command: &clap::Command,
        read_elsewhere: &[&str],
        metrics: Vec<MetricDescription>,
    ) -> Self {
        let mut environment: Vec<EnvironmentVariable> = command
            .get_arguments()
            .filter_map(|arg| {
                Some(EnvironmentVariable {
                    name: arg.get_env()?.to_string_lossy().into_owned(),
                    required: arg.is_required_set(),
                })
            })
            .chain(read_elsewhere.iter().map(|name| EnvironmentVariable {
                name: (*name).to_owned(),
                required: false,
            }))
            .collect();
        environment.sort();
        environment.dedup_by(|a, b| a.name == b.name);
        Self {
            environment,
            metrics,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{Arg, Command};

    use super::*;

    #[test]
    fn lists_the_variables_of_the_command_and_those_read_elsewhere() {
        let command = Command::new("x")
            .arg(Arg::new("table").long("table").env("TABLE").required(true))
            .arg(Arg::new("url").long("url").env("URL"))
            .arg(Arg::new("flag").long("flag"));
        let description = DeploymentDescription::new(&command, &["RUST_LOG"], Vec::new());
        let listed: Vec<(&str, bool)> = description
            .environment
            .iter()
            .map(|variable| (variable.name.as_str(), variable.required))
            .collect();
        assert_eq!(
            listed,
            [("RUST_LOG", false), ("TABLE", true), ("URL", false)]
        );
    }
}
