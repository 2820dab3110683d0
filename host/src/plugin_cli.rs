//! Commands for plugin authors: `plugin new`, `plugin check`, `plugin run`, `plugin test`,
//! `plugin replay`, `pipeline run` and `pipeline precompile`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use plugin_engine::{
    CoreDataLookup, EngineConfig, Event, Grant, LoadOrigin, NoCoreData, PipelineFile, PluginChain,
    PluginEngine, PluginLimits, PluginRegistry, PluginSettings, Side, contract_version,
};

use crate::plugin_new::{self, TemplateLanguage};
use crate::plugin_test;
use crate::release_cli::{self, ReleaseCommand};
use crate::replay::{self, ReplayArgs};
use crate::service;
use crate::trace::{self, PluginLogs};
use crate::views::{EventInput, LineResult, OutcomeView};

/// Work on a single plugin component.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Create a plugin project NAME from a template: source, build script (with the WIT
    /// bindings step), a copy of the contract, a README and golden cases.
    New {
        /// The plugin name (lowercase letters, digits, inner hyphens).
        name: String,
        /// The language of the project.
        #[arg(long = "lang", value_enum)]
        language: TemplateLanguage,
        /// Where to create it (missing or empty; default `./NAME`).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Compile a component and report its world, imports, size, compile time and version.
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
        /// Capabilities to grant beyond the default sandbox (wall-clock, network).
        #[arg(long = "grant")]
        grants: Vec<Grant>,
    },
    /// Run a component over JSON-lines events from stdin; print one JSON outcome per event.
    Run {
        /// The component (`.wasm`).
        file: PathBuf,
        /// A config value the plugin reads with `config.get` (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
        /// Capabilities to grant beyond the default sandbox (wall-clock, network).
        #[arg(long = "grant")]
        grants: Vec<Grant>,
        #[command(flatten)]
        run: RunOptions,
        /// Per-call time limit in milliseconds.
        #[arg(long, default_value_t = 100)]
        timeout_ms: u64,
        /// Memory limit in MiB.
        #[arg(long, default_value_t = 64)]
        memory_mib: usize,
        /// Instruction budget per call (enables fuel metering).
        #[arg(long)]
        fuel: Option<u64>,
    },
    /// Run golden cases (JSON lines: an input event, optional config and core data, the
    /// expected outcome); print a diff for each failing case and a one-line summary.
    Test {
        /// The component (`.wasm`).
        file: PathBuf,
        /// The cases file.
        #[arg(long, default_value = "cases.jsonl")]
        cases: PathBuf,
        /// JSON file of core data for cases that bring none: {"key": {"field": "value"}}.
        #[arg(long)]
        core_data: Option<PathBuf>,
        /// Write the actual outcomes into the cases file instead of comparing.
        #[arg(long)]
        update: bool,
    },
    /// Run a candidate (a plugin, a chain or a release candidate) and the active version
    /// side by side over captured events: counts per outcome, events whose outputs
    /// differ, and the first differences.
    Replay(Box<ReplayArgs>),
    /// Fleet releases: publish, rollback, releases, status.
    #[command(flatten)]
    Release(ReleaseCommand),
}

/// Work on a whole pipeline file.
#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Run one side's chain over JSON-lines events from stdin; print one JSON outcome per event.
    Run {
        /// The pipeline file.
        #[arg(long, env = "PIPELINE_FILE", default_value = "pipeline.toml")]
        pipeline: PathBuf,
        /// Which chain to run.
        #[arg(long, value_enum, default_value = "host")]
        side: SideArg,
        #[command(flatten)]
        run: RunOptions,
        /// Print each plugin's input, outcome, log lines and time per event (one JSON
        /// line per event) instead of the chain's outcome.
        #[arg(long)]
        trace: bool,
    },
    /// Compile every plugin of the pipeline file into precompiled artifacts (`.cwasm`)
    /// for this binary's serving engine, so `serve` loads them instead of compiling (the
    /// container image's build step). Prints one line per artifact.
    Precompile {
        /// The pipeline file.
        #[arg(long, env = "PIPELINE_FILE", default_value = "pipeline.toml")]
        pipeline: PathBuf,
        /// Where the artifacts go; by default `plugin-artifacts/` beside the pipeline
        /// file, where `serve` looks for them first.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Which chain of the pipeline file to run.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SideArg {
    /// The HTTP host's chain.
    Host,
    /// The stream consumer's chain.
    Consumer,
}

/// Options shared by the commands that run events.
#[derive(Debug, Args)]
pub struct RunOptions {
    /// JSON file of core data for `lookup`: {"key": {"field": "value", ...}, ...}.
    #[arg(long)]
    core_data: Option<PathBuf>,
    /// Events per batch (one plugin instance serves a batch).
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
}

/// Runs a `plugin` subcommand.
pub async fn plugin(command: PluginCommand) -> Result<()> {
    match command {
        PluginCommand::New {
            name,
            language,
            dir,
        } => new_project(&name, language, dir.as_deref()),
        PluginCommand::Check { file, grants } => check(&file, grants),
        PluginCommand::Replay(args) => replay::run(*args).await,
        PluginCommand::Release(command) => release_cli::run(command).await,
        PluginCommand::Test {
            file,
            cases,
            core_data,
            update,
        } => test(&file, &cases, core_data.as_deref(), update).await,
        PluginCommand::Run {
            file,
            config,
            grants,
            run,
            timeout_ms,
            memory_mib,
            fuel,
        } => {
            let engine = PluginEngine::new(EngineConfig {
                fuel_metering: fuel.is_some(),
                ..EngineConfig::default()
            })?;
            let registry = PluginRegistry::new(engine.clone());
            let settings = PluginSettings {
                config: config.into_iter().collect(),
                limits: PluginLimits {
                    memory_bytes: memory_mib << 20,
                    timeout: Duration::from_millis(timeout_ms),
                    fuel,
                    ..PluginLimits::default()
                },
                grants: grants.into_iter().collect(),
            };
            let bytes = read(&file)?;
            let name = plugin_name(&file);
            let plugin = registry.register(&name, settings, &bytes)?;
            let chain = PluginChain::new(engine, vec![plugin], core_data(&run)?);
            run_events(&chain, run.batch_size).await
        }
    }
}

/// Runs a `pipeline` subcommand; `plugin_logs` holds the plugins' log lines for
/// `--trace`.
pub async fn pipeline(command: PipelineCommand, plugin_logs: PluginLogs) -> Result<()> {
    let (pipeline, side, run, trace) = match command {
        PipelineCommand::Run {
            pipeline,
            side,
            run,
            trace,
        } => (pipeline, side, run, trace),
        PipelineCommand::Precompile { pipeline, out } => return precompile(&pipeline, out),
    };
    let file = PipelineFile::load(&pipeline)?;
    let engine = PluginEngine::new(EngineConfig {
        fuel_metering: file.needs_fuel(),
        ..EngineConfig::default()
    })?;
    let registry = PluginRegistry::new(engine.clone());
    let lookup = core_data(&run)?;
    let chain = file.build_chain(Side::from(side), &registry, lookup.clone())?;
    if trace {
        return trace_events(&engine, &chain, lookup, &plugin_logs).await;
    }
    run_events(&chain, run.batch_size).await
}

/// Writes the artifacts of every plugin of the pipeline file for the serving engine.
fn precompile(pipeline: &Path, out: Option<PathBuf>) -> Result<()> {
    let file = PipelineFile::load(pipeline)?;
    let out = out.unwrap_or_else(|| file.packaged_artifact_dir());
    let engine = PluginEngine::new(service::serving_engine(&file))?;
    for plugin in file.precompile(&engine, &out)? {
        let (name, version) = (plugin.name, plugin.version.short());
        println!("{name} {version} {}", plugin.artifact.display());
    }
    Ok(())
}

/// Reads JSON-lines events from stdin and prints one trace line per event.
async fn trace_events(
    engine: &PluginEngine,
    chain: &PluginChain,
    lookup: Arc<dyn CoreDataLookup>,
    plugin_logs: &PluginLogs,
) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    for (index, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.context("cannot read stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let line_number = index + 1;
        let traced = match parse_event(&line, line_number) {
            Ok(event) => {
                let steps = trace::trace(engine, chain, lookup.clone(), event, plugin_logs).await;
                serde_json::json!({"line": line_number, "steps": steps})
            }
            Err(reason) => serde_json::json!({
                "line": line_number,
                "outcome": OutcomeView::InvalidInput { reason },
            }),
        };
        writeln!(stdout, "{traced}")?;
    }
    stdout.flush()?;
    Ok(())
}

/// `plugin test`: runs the cases, prints the failures and a summary; fails when a case
/// fails.
async fn test(file: &Path, cases: &Path, core_data: Option<&Path>, update: bool) -> Result<()> {
    let lookup = core_data.map(load_core_data).transpose()?;
    let summary = plugin_test::run_cases(file, cases, lookup, update).await?;
    for failure in &summary.failed {
        println!("FAILED {failure}");
    }
    let mut line = format!(
        "plugin test: {} passed, {} failed",
        summary.passed,
        summary.failed.len()
    );
    if update {
        line.push_str(&format!(", {} updated", summary.updated));
    }
    println!("{line} ({})", cases.display());
    if summary.failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} of the cases failed", summary.failed.len())
    }
}

/// `plugin new`: writes the project and says what to do next.
fn new_project(name: &str, language: TemplateLanguage, dir: Option<&Path>) -> Result<()> {
    let (dir, files) = plugin_new::create(name, language, dir)?;
    println!(
        "created the {} plugin {name} in {}: {}",
        language.name(),
        dir.display(),
        files.join(", ")
    );
    println!("next: cd {} && sh build.sh", dir.display());
    println!("      adtrack-host plugin test {name}.wasm --cases cases.jsonl");
    Ok(())
}

fn check(file: &Path, grants: Vec<Grant>) -> Result<()> {
    let engine = PluginEngine::new(EngineConfig::default())?;
    let bytes = read(file)?;
    let name = plugin_name(file);
    let compiled = engine.compile(&name, &bytes, &grants.into_iter().collect())?;
    let report = compiled.report();
    let compile_time = match report.origin {
        LoadOrigin::Compiled(elapsed) => format!("compiled in {elapsed:.1?}"),
        LoadOrigin::Precompiled(elapsed) => format!("loaded precompiled in {elapsed:.1?}"),
    };
    println!("plugin:   {name} ({})", file.display());
    println!("version:  {}", report.version);
    println!("size:     {} bytes", report.size_bytes);
    let world = if report.handles_batches {
        "batch-plugin"
    } else {
        "plugin"
    };
    println!(
        "world:    {}/{world} (exports {})",
        contract_version::CONTRACT_PACKAGE,
        report.exports.join(", ")
    );
    if let Some(target) = &report.contract {
        println!(
            "contract: built for {}@{target}; this host implements {} and accepts {}",
            contract_version::CONTRACT_PACKAGE,
            contract_version::CONTRACT_VERSION,
            contract_version::accepted_range()
        );
    }
    println!("imports:  {}", report.imports.join(", "));
    println!("compile:  {compile_time}");
    println!("verdict:  ok, the host can load this plugin");
    Ok(())
}

/// Reads JSON-lines events from stdin in batches and prints one outcome line per
/// input line, in input order.
async fn run_events(chain: &PluginChain, batch_size: usize) -> Result<()> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines().enumerate();
    let mut stdout = std::io::stdout().lock();
    loop {
        let mut batch: Vec<(usize, Result<Event, String>)> = Vec::new();
        for (index, line) in lines.by_ref() {
            let line = line.context("cannot read stdin")?;
            if line.trim().is_empty() {
                continue;
            }
            batch.push((index + 1, parse_event(&line, index + 1)));
            if batch.len() >= batch_size.max(1) {
                break;
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        let events: Vec<Event> = batch
            .iter()
            .filter_map(|(_, event)| event.as_ref().ok().cloned())
            .collect();
        let mut outcomes = chain.process(events).await.into_iter();
        for (line_number, event) in batch {
            let outcome = match event {
                Ok(_) => outcomes
                    .next()
                    .map(|outcome| OutcomeView::new(&outcome, true))
                    .context("the chain returned fewer outcomes than events")?,
                Err(reason) => OutcomeView::InvalidInput { reason },
            };
            let result = LineResult {
                line: line_number,
                outcome,
            };
            writeln!(stdout, "{}", serde_json::to_string(&result)?)?;
        }
        stdout.flush()?;
    }
}

fn parse_event(line: &str, line_number: usize) -> Result<Event, String> {
    let input: EventInput =
        serde_json::from_str(line).map_err(|error| format!("not an event: {error}"))?;
    input
        .into_event(format!("line-{line_number}"))
        .map_err(|error| error.to_string())
}

fn core_data(options: &RunOptions) -> Result<Arc<dyn CoreDataLookup>> {
    match &options.core_data {
        Some(path) => load_core_data(path),
        None => Ok(Arc::new(NoCoreData)),
    }
}

/// Core data from a JSON file: {"key": {"field": "value", ...}, ...}.
pub(crate) fn load_core_data(path: &Path) -> Result<Arc<dyn CoreDataLookup>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read core data {}", path.display()))?;
    let records: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON object of records", path.display()))?;
    Ok(plugin_test::static_core_data(&records))
}

fn read(file: &Path) -> Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}

fn plugin_name(file: &Path) -> String {
    file.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_owned())
}

pub(crate) fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}
