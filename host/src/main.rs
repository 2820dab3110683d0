//! The adtrack host binary: the event-processing service and the plugin author tools.

mod event_json;
mod plugin_cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::plugin_cli::{PipelineCommand, PluginCommand};

/// WebAssembly plugin event-processing host.
#[derive(Debug, Parser)]
#[command(name = "adtrack-host", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Plugin author tools: check a component, run it over events.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run a pipeline file's chain over events.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Plugin(command) => plugin_cli::plugin(command).await,
        Command::Pipeline(command) => plugin_cli::pipeline(command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
