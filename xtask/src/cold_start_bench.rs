//! `cargo xtask cold-start-bench`: the Lambda init of the packaged `bootstrap` under the
//! Runtime API emulator (`cargo lambda watch`), with a consumer chain of three plugins
//! and an empty plugin cache (a real cold start's empty `/tmp`), loading the plugins from
//! the package's precompiled artifacts against the same package without them (init
//! compiles), alternating in the same run. The parts come from the function's own init
//! report (`consumer initialised`: chain, warm-up, backends, total); the process column
//! is the time from spawning `bootstrap` to that log line.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::lambda::{self, ARTIFACT_DIR, Architecture};
use crate::package_check::{Process, start_runtime_emulator, unpack};
use crate::services;

/// The consumer chain measured: three of the packaged pipeline's plugins.
const CHAIN: [&str; 3] = ["filter", "enrich", "validate-tracking"];
/// How long one init may take before the bench gives up.
const INIT_TIMEOUT: Duration = Duration::from_secs(120);

/// What the bench runs.
#[derive(Debug, clap::Args)]
pub struct ColdStartArgs {
    /// Cold starts per variant.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// The package to start (built by `cargo xtask package` for this machine).
    #[arg(long, default_value = "target/lambda/adtrack-consumer/bootstrap.zip")]
    package: PathBuf,
}

/// One variant of the package: where it is unpacked and what it is called.
struct Variant {
    name: &'static str,
    task_dir: PathBuf,
    /// The origin every plugin must report (`package` or `compiled`).
    origin: &'static str,
}

/// The parts of one init, in milliseconds.
#[derive(Clone, Copy, Debug, Default)]
struct Init {
    chain: f64,
    warm_up: f64,
    backends: f64,
    total: f64,
    process: f64,
}

/// Unpacks the package twice (with and without its artifacts), starts the emulator and
/// times `rounds` cold starts of each, then prints the medians and their ratio.
pub fn run(root: &Path, args: &ColdStartArgs) -> Result<()> {
    let package = root.join(&args.package);
    let bytes = std::fs::read(&package).with_context(|| {
        format!(
            "cannot read {}: run `cargo xtask package` first",
            package.display()
        )
    })?;
    if Architecture::of_this_machine().is_none() {
        bail!("the cold-start bench runs the package natively, on x86-64 or arm64");
    }
    let scratch = root.join("target/cold-start-bench");
    let _ = std::fs::remove_dir_all(&scratch);
    let variants = [
        Variant {
            name: "plugins from the package's .cwasm",
            task_dir: scratch.join("precompiled"),
            origin: "package",
        },
        Variant {
            name: "plugins compiled at init",
            task_dir: scratch.join("compiles"),
            origin: "compiled",
        },
    ];
    for variant in &variants {
        unpack(&bytes, &variant.task_dir)?;
        with_chain(&variant.task_dir.join("pipeline.toml"))?;
    }
    std::fs::remove_dir_all(variants[1].task_dir.join(ARTIFACT_DIR))
        .context("the package carries no precompiled plugins: rebuild it")?;
    let redis = services::redis_ready();
    if !redis {
        eprintln!("xtask: redis-server is not on 127.0.0.1:6379: init connects to no Redis");
    }
    let tools = lambda::install_tools(root)?;
    let (_emulator, port) = start_runtime_emulator(&tools, root, &scratch.join("emulator.log"))?;
    let mut inits: Vec<Vec<Init>> = vec![Vec::new(); variants.len()];
    for round in 0..args.rounds {
        for (variant, times) in variants.iter().zip(&mut inits) {
            let dir = scratch.join(format!("round-{round}-{}", variant.origin));
            times.push(cold_start(variant, &dir, port, redis)?);
        }
    }
    print_table(&variants, &inits, args.rounds, redis);
    Ok(())
}

/// Sets the consumer chain of the pipeline file at `path` to [`CHAIN`].
fn with_chain(path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let mut pipeline: toml::Table = toml::from_str(&text)?;
    let sides = pipeline
        .get_mut("pipeline")
        .and_then(toml::Value::as_table_mut)
        .context("the packaged pipeline file has no [pipeline] table")?;
    sides.insert(
        "consumer".into(),
        CHAIN
            .iter()
            .map(|name| name.to_string())
            .collect::<Vec<_>>()
            .into(),
    );
    std::fs::write(path, toml::to_string(&pipeline)?)?;
    Ok(())
}

/// Starts `bootstrap` of `variant` with an empty plugin cache in `dir`, waits for its init
/// report and stops it.
fn cold_start(variant: &Variant, dir: &Path, port: u16, redis: bool) -> Result<Init> {
    let cache = dir.join("tmp");
    std::fs::create_dir_all(&cache)?;
    let log = dir.join("function.log");
    let mut command = Command::new(variant.task_dir.join("bootstrap"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PIPELINE_FILE", variant.task_dir.join("pipeline.toml"))
        .env("PLUGIN_CACHE_DIR", &cache)
        .env("DYNAMODB_TABLE", "cold-start-bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", "adtrack-cold-start-bench")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024");
    if redis {
        command.env(
            "REDIS_URL",
            format!("redis://127.0.0.1:{}", services::REDIS_PORT),
        );
    }
    let started = Instant::now();
    let _function = Process::spawn(&mut command, &log)?;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(init) = init_report(&text, variant.origin)? {
            let process = started.elapsed().as_secs_f64() * 1e3;
            return Ok(Init { process, ..init });
        }
        if started.elapsed() > INIT_TIMEOUT {
            bail!("no init report within {INIT_TIMEOUT:?}\n--- function log ---\n{text}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The init report in the function's JSON log, once it is there; fails when a plugin was
/// loaded otherwise than `origin` says.
fn init_report(log: &str, origin: &str) -> Result<Option<Init>> {
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let fields = |line: &serde_json::Value| line["fields"].clone();
    let Some(report) = lines
        .iter()
        .map(fields)
        .find(|fields| fields["message"] == "consumer initialised")
    else {
        return Ok(None);
    };
    let plugins: Vec<serde_json::Value> = lines
        .iter()
        .map(fields)
        .filter(|fields| fields["message"] == "plugin loaded")
        .collect();
    if plugins.len() != CHAIN.len() || plugins.iter().any(|plugin| plugin["origin"] != origin) {
        bail!(
            "expected {} plugins loaded from {origin}:\n{log}",
            CHAIN.len()
        );
    }
    let ms = |name: &str| report[name].as_f64().unwrap_or_default();
    Ok(Some(Init {
        chain: ms("chain_ms"),
        warm_up: ms("warm_up_ms"),
        backends: ms("backends_ms"),
        total: ms("init_ms"),
        process: 0.0,
    }))
}

/// Reads one part of an init.
type Part = fn(&Init) -> f64;

fn median(inits: &[Init], part: Part) -> f64 {
    let mut values: Vec<f64> = inits.iter().map(part).collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// A Markdown table of the medians, and the ratio of each part (compiles / precompiled).
fn print_table(variants: &[Variant], inits: &[Vec<Init>], rounds: usize, redis: bool) {
    let parts: [(&str, Part); 5] = [
        ("chain load", |init| init.chain),
        ("warm-up", |init| init.warm_up),
        ("backends", |init| init.backends),
        ("init total (InitReport)", |init| init.total),
        ("process start to init report", |init| init.process),
    ];
    println!(
        "\nLambda cold start, {} plugins ({}), empty plugin cache, medians of {rounds} rounds{}:\n",
        CHAIN.len(),
        CHAIN.join(", "),
        if redis {
            ", Redis connected"
        } else {
            ", no Redis"
        }
    );
    println!(
        "| part | {} | {} | ratio |",
        variants[0].name, variants[1].name
    );
    println!("|---|---:|---:|---:|");
    for (name, part) in parts {
        let (precompiled, compiles) = (median(&inits[0], part), median(&inits[1], part));
        println!(
            "| {name} | {precompiled:.1} ms | {compiles:.1} ms | {:.1}× |",
            compiles / precompiled.max(f64::EPSILON)
        );
    }
}
