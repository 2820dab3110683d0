//! The adtrack host binary: the event-processing service and the plugin author tools.

mod announce;
mod cache;
mod config;
mod deployment;
mod http;
mod plugin_cli;
mod plugin_new;
mod plugin_test;
mod recorders;
mod release_cli;
mod replay;
mod samples;
mod service;
mod stream;
mod trace;
mod views;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::ServeConfig;
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
    /// Serve the tracking API and the generic pipeline (the Fargate service).
    Serve(Box<ServeConfig>),
    /// Plugin author tools: check a component, run it over events.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run a pipeline file's chain over events.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Print the environment variables `serve` reads and the metrics it writes (JSON).
    #[command(hide = true)]
    DescribeDeployment,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let plugin_logs = trace::PluginLogs::default();
    init_logging(&cli.command, &plugin_logs);
    let result = match cli.command {
        Command::Serve(config) => service::serve(*config).await,
        Command::Plugin(command) => plugin_cli::plugin(command).await,
        Command::Pipeline(command) => plugin_cli::pipeline(command, plugin_logs).await,
        Command::DescribeDeployment => deployment::print(&Cli::command()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// JSON log lines for the service (CloudWatch parses them), plain text for the CLI;
/// `RUST_LOG` sets the level. `pipeline` commands also keep the plugins' log lines in
/// `plugin_logs`, whatever the level, for `--trace`.
fn init_logging(command: &Command, plugin_logs: &trace::PluginLogs) {
    let level = |default: &str| {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
    };
    let text = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match command {
        Command::Serve(_) => tracing_subscriber::registry()
            .with(text.json().with_filter(level("info")))
            .init(),
        Command::Pipeline(_) => tracing_subscriber::registry()
            .with(text.with_filter(level("warn")))
            .with(plugin_logs.clone())
            .init(),
        Command::Plugin(_) | Command::DescribeDeployment => tracing_subscriber::registry()
            .with(text.with_filter(level("warn")))
            .init(),
    }
}
