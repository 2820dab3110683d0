//! `plugin replay`: a candidate (a plugin, a chain, or a release candidate) and the
//! version running today, side by side over captured real events: a range of the
//! embedded stream log, dead letters, or a capture. `--save-capture` writes the events
//! with every core-data lookup answered during the run, so replaying the capture later
//! gives the same report.

mod capture;
mod kinesis;
mod report;
mod source;
mod subjects;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use core_data::{RedisConfig, RedisCoreData};
use plugin_engine::{CoreDataLookup, NoCoreData, PluginChain, RegisteredPlugin};
use releases::RegistryConfig;

use self::capture::{CapturedCoreData, RecordingCoreData, ReplayEvent};
use self::kinesis::ShardRange;
use self::report::{ReplayReport, ReportBuilder};
use self::source::Source;
use self::subjects::{SubjectSpec, Subjects};
use crate::plugin_cli::{SideArg, load_core_data, parse_key_value};
use crate::views::OutcomeView;

/// Events run through both versions at a time (one instance per plugin per batch).
const BATCH: usize = 100;

/// `plugin replay` arguments.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["log", "kinesis_stream", "dead_letters", "capture"])))]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["active", "pipeline", "release"])))]
pub struct ReplayArgs {
    /// The candidate component (`.wasm`); with `--release`, leave it out to try the
    /// release's own canary or shadow.
    candidate: Option<PathBuf>,
    /// Compare with this component, the version running today.
    #[arg(long, value_name = "FILE")]
    active: Option<PathBuf>,
    /// Compare chains: this pipeline file's chain, and the same chain with the candidate
    /// in place of `--plugin`.
    #[arg(long, value_name = "FILE")]
    pipeline: Option<PathBuf>,
    /// Compare chains: the current release's chain, and the same chain with its candidate
    /// (or CANDIDATE in place of `--plugin`).
    #[arg(long)]
    release: bool,
    /// Which chain (`--pipeline`, `--release`).
    #[arg(long, value_enum, default_value = "host")]
    side: SideArg,
    /// The plugin the candidate replaces in the chain, and the name both components run
    /// under with `--active` (default: the candidate's file name).
    #[arg(long)]
    plugin: Option<String>,
    /// Config for both components with `--active` (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    config: Vec<(String, String)>,
    /// Replay the records of this embedded stream log (`DATA_DIR/stream-log`, with the
    /// host stopped).
    #[arg(long, value_name = "DIR")]
    log: Option<PathBuf>,
    /// First sequence number of the log range.
    #[arg(long, default_value_t = 1, requires = "log")]
    from: u64,
    /// Last sequence number of the log range (default: the last record).
    #[arg(long, requires = "log")]
    to: Option<u64>,
    /// Replay a range of this Kinesis stream's shard `--shard`.
    #[arg(long, value_name = "STREAM")]
    kinesis_stream: Option<String>,
    /// The shard of `--kinesis-stream`.
    #[arg(
        long,
        default_value = "shardId-000000000000",
        requires = "kinesis_stream"
    )]
    shard: String,
    /// First sequence number of the shard range (default: the oldest record).
    #[arg(long, value_name = "SEQUENCE", requires = "kinesis_stream")]
    from_sequence: Option<String>,
    /// Last sequence number of the shard range (default: the newest record).
    #[arg(long, value_name = "SEQUENCE", requires = "kinesis_stream")]
    to_sequence: Option<String>,
    /// Kinesis endpoint override (emulators).
    #[arg(long, env = "KINESIS_ENDPOINT_URL")]
    kinesis_endpoint_url: Option<String>,
    /// Replay the events of a dead-letter file (`DATA_DIR/dead-letters.jsonl`).
    #[arg(long, value_name = "FILE")]
    dead_letters: Option<PathBuf>,
    /// Replay a capture written by `--save-capture`, with the core data it recorded.
    #[arg(long, value_name = "FILE")]
    capture: Option<PathBuf>,
    /// Core data for lookups, JSON: {"key": {"field": "value"}} (not with `--capture`);
    /// without it, lookups go to Redis when `REDIS_URL` is set.
    #[arg(long, value_name = "FILE", conflicts_with = "capture")]
    core_data: Option<PathBuf>,
    /// Live core data from Redis, when neither `--core-data` nor `--capture` is given.
    #[command(flatten)]
    redis: RedisConfig,
    /// Write the events and every lookup answered during this run to FILE.
    #[arg(long, value_name = "FILE")]
    save_capture: Option<PathBuf>,
    /// Differences shown, at most.
    #[arg(long, default_value_t = 10)]
    max_diffs: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// The data directory holding the local registry, for `--release`.
    #[arg(long, env = "DATA_DIR", default_value = ".adtrack")]
    data_dir: PathBuf,
    /// The registry, for `--release`.
    #[command(flatten)]
    registry: RegistryConfig,
}

/// Runs the replay and prints its report.
pub async fn run(args: ReplayArgs) -> Result<()> {
    let source = args.source();
    let loaded = source.load().await?;
    let (lookup, recording): (Arc<dyn CoreDataLookup>, Option<Arc<RecordingCoreData>>) =
        match (&loaded.lookups, &args.core_data) {
            (Some(recorded), _) => (Arc::new(CapturedCoreData::new(recorded.clone())), None),
            (None, core_data) => {
                let live = args.live_core_data(core_data.as_deref())?;
                let recording = Arc::new(RecordingCoreData::new(live));
                (recording.clone(), Some(recording))
            }
        };
    let subjects = args.subjects().await?.build(lookup).await?;
    let mut builder = ReportBuilder::new(
        source.describe(),
        loaded.skipped,
        plugins(&subjects.active),
        plugins(&subjects.candidate),
        args.max_diffs,
    );
    compare(&subjects, &loaded.events, &mut builder).await?;
    let report = builder.finish();
    if let Some(path) = &args.save_capture {
        let lookups = match (&loaded.lookups, &recording) {
            (Some(recorded), _) => recorded.clone(),
            (None, Some(recording)) => recording.recorded(),
            (None, None) => BTreeMap::new(),
        };
        capture::write(path, &loaded.events, &lookups)?;
    }
    print(&report, args.json)
}

/// Runs every event through both versions, in batches, in source order.
async fn compare(
    subjects: &Subjects,
    events: &[ReplayEvent],
    builder: &mut ReportBuilder,
) -> Result<()> {
    for batch in events.chunks(BATCH) {
        let inputs: Vec<_> = batch
            .iter()
            .map(|replayed| replayed.event.clone())
            .collect();
        let active = subjects.active.process(inputs.clone()).await;
        let candidate = subjects.candidate.process(inputs).await;
        if active.len() != batch.len() || candidate.len() != batch.len() {
            bail!("a chain returned a different number of outcomes than events");
        }
        for ((replayed, active), candidate) in batch.iter().zip(&active).zip(&candidate) {
            builder.add(
                &replayed.at,
                &replayed.event.id,
                &OutcomeView::new(active, true),
                &OutcomeView::new(candidate, true),
            )?;
        }
    }
    Ok(())
}

fn print(report: &ReplayReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

/// A chain's plugins as `name@version` (12 hex digits of the version).
fn plugins(chain: &PluginChain) -> Vec<String> {
    chain.steps().iter().map(|plugin| label(plugin)).collect()
}

fn label(plugin: &RegisteredPlugin) -> String {
    let version = plugin.active().version().to_string();
    format!("{}@{}", plugin.name(), &version[..version.len().min(12)])
}

impl ReplayArgs {
    fn source(&self) -> Source {
        if let Some(path) = &self.log {
            Source::Log {
                path: path.clone(),
                from: self.from,
                to: self.to.unwrap_or(u64::MAX),
            }
        } else if let Some(stream) = &self.kinesis_stream {
            Source::Kinesis {
                range: ShardRange {
                    stream: stream.clone(),
                    shard: self.shard.clone(),
                    from: self.from_sequence.clone(),
                    to: self.to_sequence.clone(),
                },
                endpoint: self.kinesis_endpoint_url.clone(),
            }
        } else if let Some(path) = &self.dead_letters {
            Source::DeadLetters(path.clone())
        } else {
            Source::Capture(self.capture.clone().unwrap_or_default())
        }
    }

    /// Where a live source's lookups go: the file, else Redis, else nowhere.
    fn live_core_data(&self, file: Option<&Path>) -> Result<Arc<dyn CoreDataLookup>> {
        if let Some(path) = file {
            return load_core_data(path);
        }
        self.redis.validate()?;
        Ok(match RedisCoreData::from_config(&self.redis)? {
            Some(redis) => Arc::new(redis),
            None => Arc::new(NoCoreData),
        })
    }

    async fn subjects(&self) -> Result<SubjectSpec> {
        let stem = |file: &PathBuf| {
            file.file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_else(|| "plugin".to_owned())
        };
        let candidate = || {
            self.candidate
                .clone()
                .context("give the candidate component (.wasm) to replay")
        };
        let plugin = |file: &PathBuf| self.plugin.clone().unwrap_or_else(|| stem(file));
        if let Some(active) = &self.active {
            let candidate = candidate()?;
            return Ok(SubjectSpec::Components {
                name: plugin(&candidate),
                active: active.clone(),
                candidate,
                config: self.config.iter().cloned().collect(),
            });
        }
        if let Some(file) = &self.pipeline {
            let candidate = candidate()?;
            return Ok(SubjectSpec::Pipeline {
                file: file.clone(),
                side: self.side.into(),
                plugin: plugin(&candidate),
                candidate,
            });
        }
        self.registry.validate()?;
        let registry = self
            .registry
            .open(&self.data_dir)
            .await
            .context("cannot open the plugin registry")?;
        Ok(SubjectSpec::Release {
            registry,
            side: self.side.into(),
            candidate: self
                .candidate
                .as_ref()
                .map(|file| (plugin(file), file.clone())),
        })
    }
}
