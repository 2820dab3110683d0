//! The operator's release commands: `plugin publish | rollback | releases | status`.
//! They talk to the registry directly and find it from the same settings as `serve`
//! (`DATA_DIR`, or `PLUGIN_BUCKET` with AWS credentials), and announce a new current
//! release on Redis when `REDIS_URL` is set.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use core_data::{RedisConfig, RedisCoreData};
use plugin_engine::{EngineConfig, PluginEngine, Side};
use releases::{
    AbortPolicy, CandidateMode, Publish, RegistryConfig, Release, ReleaseRegistry, TrialSpec,
};

use crate::announce::announce;
use crate::plugin_cli::SideArg;

/// How recent a heartbeat must be for `status` to count its instance as live.
const LIVE_HEARTBEAT: Duration = Duration::from_secs(90);

/// Release commands.
#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Publish a component as plugin NAME for the whole fleet (checked first, refused if
    /// it does not compile, match the world or stay within its grants).
    Publish {
        /// The plugin name.
        name: String,
        /// The component (`.wasm`).
        file: PathBuf,
        /// Which chain the plugin belongs to.
        #[arg(long, value_enum, default_value = "host")]
        side: SideArg,
        /// Add the plugin at the end of the chain if the current release does not have it.
        #[arg(long)]
        new: bool,
        /// Try it first as a canary on this share of events (percent), beside the active
        /// version; `promote` or `abort` ends the trial (a failing canary is aborted by the
        /// fleet on its own).
        #[arg(long, value_name = "PERCENT", conflicts_with = "shadow", value_parser = clap::value_parser!(u8).range(1..=100))]
        canary: Option<u8>,
        /// Try it first as a shadow on this share of events (percent): it runs beside the
        /// active version, its outputs are compared and discarded.
        #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
        shadow: Option<u8>,
        /// Canary: calls before the fleet judges it.
        #[arg(long, default_value_t = AbortPolicy::default().min_calls)]
        min_calls: u64,
        /// Canary: tolerated excess of its failure rate over the active version's, in points.
        #[arg(long, default_value_t = AbortPolicy::default().max_failure_margin_percent)]
        max_failure_margin: u8,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Make the side's candidate (canary or shadow) the active version, fleet-wide.
    Promote {
        /// Which chain's candidate.
        #[arg(long, value_enum, default_value = "host")]
        side: SideArg,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Drop the side's candidate, fleet-wide.
    Abort {
        /// Which chain's candidate.
        #[arg(long, value_enum, default_value = "host")]
        side: SideArg,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Make an earlier release current again (default: the one before the current one).
    Rollback {
        /// The release to make current.
        #[arg(long)]
        to: Option<u64>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// List every release, oldest first.
    Releases {
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Show the current release and which release the live hosts and consumers run.
    Status {
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

/// Where the registry is, as `serve` finds it.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// The data directory holding the local registry (`DATA_DIR/registry`).
    #[arg(long, env = "DATA_DIR", default_value = ".adtrack")]
    data_dir: PathBuf,
    #[command(flatten)]
    registry: RegistryConfig,
    /// Redis, to announce a new current release to running hosts at once.
    #[command(flatten)]
    redis: RedisConfig,
}

impl RegistryArgs {
    async fn open(&self) -> Result<ReleaseRegistry> {
        self.registry.validate()?;
        self.registry
            .open(&self.data_dir)
            .await
            .context("cannot open the plugin registry")
    }

    async fn announce(&self, release: &Release) -> Result<()> {
        self.redis.validate()?;
        let redis = RedisCoreData::from_config(&self.redis)?;
        announce(redis.as_ref(), release.number).await;
        Ok(())
    }
}

/// Runs a release command, printing what it did.
pub async fn run(command: ReleaseCommand) -> Result<()> {
    match command {
        ReleaseCommand::Publish {
            name,
            file,
            side,
            new,
            canary,
            shadow,
            min_calls,
            max_failure_margin,
            registry: args,
        } => {
            let abort = AbortPolicy {
                min_calls,
                max_failure_margin_percent: max_failure_margin,
            };
            let trial = match (canary, shadow) {
                (Some(percent), _) => Some((CandidateMode::Canary, percent)),
                (_, Some(percent)) => Some((CandidateMode::Shadow, percent)),
                (None, None) => None,
            }
            .map(|(mode, percent)| TrialSpec {
                mode,
                percent,
                abort,
            });
            let registry = args.open().await?;
            let component =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let engine = PluginEngine::new(EngineConfig::default())?;
            let (release, _) = registry
                .publish(
                    &engine,
                    Publish {
                        side: Side::from(side),
                        plugin: &name,
                        component: &component,
                        new,
                        trial,
                    },
                )
                .await?;
            args.announce(&release).await?;
            println!("release {}: {}", release.number, release.summary);
        }
        ReleaseCommand::Promote {
            side,
            registry: args,
        } => {
            let release = args.open().await?.promote(Side::from(side)).await?;
            args.announce(&release).await?;
            println!("release {}: {}", release.number, release.summary);
        }
        ReleaseCommand::Abort {
            side,
            registry: args,
        } => {
            let release = args
                .open()
                .await?
                .abort(Side::from(side), None, "aborted by an operator")
                .await?;
            args.announce(&release).await?;
            println!("release {}: {}", release.number, release.summary);
        }
        ReleaseCommand::Rollback { to, registry: args } => {
            let release = args.open().await?.rollback(to).await?;
            args.announce(&release).await?;
            println!(
                "release {} is current again: {}",
                release.number, release.summary
            );
        }
        ReleaseCommand::Releases { registry: args } => {
            let registry = args.open().await?;
            let current = registry
                .store()
                .current()
                .await?
                .map(|pointer| pointer.release);
            for release in registry.releases().await? {
                let marker = if Some(release.number) == current {
                    "*"
                } else {
                    " "
                };
                println!("{marker} {:>4}  {}", release.number, release.summary);
                for (side, chain) in [("host", &release.host), ("consumer", &release.consumer)] {
                    let plugins: Vec<String> = chain
                        .chain
                        .iter()
                        .filter_map(|name| {
                            let plugin = chain.plugins.get(name)?;
                            Some(format!("{name}@{}", plugin.version.short()))
                        })
                        .collect();
                    println!("        {side:<8} {}", plugins.join(" > "));
                    if let Some(candidate) = &chain.candidate {
                        println!(
                            "        {:<8} {:?} {}@{} at {} %",
                            "",
                            candidate.mode,
                            candidate.plugin,
                            candidate.pinned.version.short(),
                            candidate.percent
                        );
                    }
                }
            }
        }
        ReleaseCommand::Status { registry: args } => {
            let status = args.open().await?.status(LIVE_HEARTBEAT).await?;
            println!("{}", status.summary());
        }
    }
    Ok(())
}

impl From<SideArg> for Side {
    fn from(side: SideArg) -> Self {
        match side {
            SideArg::Host => Side::Host,
            SideArg::Consumer => Side::Consumer,
        }
    }
}
