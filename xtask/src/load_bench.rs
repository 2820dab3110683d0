//! `cargo xtask load-bench`: wrk over loopback against `GET /event/{id}` on the host
//! (embedded defaults; with and without plugins, both ACK modes) and against a bare axum
//! handler, same run: requests/s, p50 and p99 latency, and the server's CPU per request.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::package_check::free_port;

/// Load generator settings.
#[derive(Debug, clap::Args)]
pub struct LoadBenchArgs {
    /// Seconds of load per target.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
}

/// The host setups measured, each against the same bare axum baseline: the default
/// pipeline and the stages without plugins, with either durability, which isolates
/// what the plugin chain costs; and the default pipeline with a fresh instance per
/// request, which shows what warm instances save.
const HOST_SETUPS: [(&str, &[(&str, &str)]); 5] = [
    ("adtrack-host, default pipeline, `ACK=stream`", &[]),
    (
        "adtrack-host, default pipeline, `ACK=buffer`",
        &[("ACK", "buffer")],
    ),
    (
        "adtrack-host, default pipeline, `ACK=buffer`, fresh instances",
        &[("ACK", "buffer"), ("PLUGIN_WARM_INSTANCES", "0")],
    ),
    (
        "adtrack-host, no plugins, `ACK=stream`",
        &[("PIPELINE_FILE", NO_PLUGINS)],
    ),
    (
        "adtrack-host, no plugins, `ACK=buffer`",
        &[("PIPELINE_FILE", NO_PLUGINS), ("ACK", "buffer")],
    ),
];

/// A pipeline file without plugins on either side.
const NO_PLUGINS: &str = "target/load-bench/no-plugins.toml";

/// One measured target.
struct Measurement {
    requests_per_second: f64,
    p50: String,
    p99: String,
    /// Server CPU time (user + system) per request, in microseconds.
    cpu_per_request_us: f64,
    /// Answers that were not 2xx (503 when the host sheds load).
    refused: u64,
    /// What the host counted of them: statuses of the tracking route and shed requests.
    refusals: Option<String>,
}

/// Builds release binaries, loads the bare handler and each host setup in turn, and prints
/// a Markdown table with each one's throughput relative to the bare handler.
pub fn run(root: &Path, args: &LoadBenchArgs) -> Result<()> {
    ensure_wrk()?;
    crate::plugins::build(root)?;
    let status = crate::cargo(root)
        .args([
            "build",
            "--release",
            "-p",
            "adtrack-host",
            "--bin",
            "adtrack-host",
            "--example",
            "bare_axum",
        ])
        .status()
        .context("cannot start cargo")?;
    crate::check(status, "release build")?;
    let release = root.join("target/release");
    let work_dir = root.join("target/load-bench");
    std::fs::create_dir_all(&work_dir)?;
    std::fs::write(
        root.join(NO_PLUGINS),
        "[pipeline]\nhost = []\nconsumer = []\n",
    )?;

    let bare_port = free_port()?;
    let bare = Server(
        Command::new(release.join("examples/bare_axum"))
            .arg(format!("127.0.0.1:{bare_port}"))
            .spawn()
            .context("cannot start the bare axum example")?,
    );
    wait_for(&format!("http://127.0.0.1:{bare_port}/event/1"))?;
    let baseline = measure(
        &bare,
        &format!("http://127.0.0.1:{bare_port}/event/212313"),
        args,
    )?;
    drop(bare);

    let mut rows = Vec::new();
    for (label, env) in HOST_SETUPS {
        let data_dir = work_dir.join("data");
        let _ = std::fs::remove_dir_all(&data_dir);
        let port = free_port()?;
        let host = Server(
            Command::new(release.join("adtrack-host"))
                .arg("serve")
                .current_dir(root)
                .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
                .env("DATA_DIR", &data_dir)
                .env("RUST_LOG", "error")
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .spawn()
                .context("cannot start adtrack-host")?,
        );
        wait_for(&format!("http://127.0.0.1:{port}/health/check"))?;
        curl(&format!("http://127.0.0.1:{port}/cache/fill"))?;
        let mut measured = measure(
            &host,
            &format!("http://127.0.0.1:{port}/event/212313"),
            args,
        )?;
        if measured.refused > 0 {
            measured.refusals = Some(refusals(&format!("http://127.0.0.1:{port}/metrics"))?);
        }
        drop(host);
        rows.push((label, measured));
    }

    println!(
        "{} connections, {} s each, wrk -t 2 on the same machine:\n",
        args.connections, args.seconds
    );
    println!(
        "| target | requests/s | p50 latency | p99 latency | server CPU per request | not 2xx | throughput vs bare |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let bare_row = ("bare axum handler", baseline);
    let rate = bare_row.1.requests_per_second;
    for (label, row) in std::iter::once(&bare_row).chain(&rows) {
        let refused = match &row.refusals {
            Some(refusals) => format!("{} ({refusals})", row.refused),
            None => row.refused.to_string(),
        };
        println!(
            "| {label} | {:.0} | {} | {} | {:.0} µs | {refused} | {:.3} |",
            row.requests_per_second,
            row.p50,
            row.p99,
            row.cpu_per_request_us,
            row.requests_per_second / rate
        );
    }
    Ok(())
}

/// A server process killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Loads `url` with wrk while reading the CPU time `server` uses.
fn measure(server: &Server, url: &str, args: &LoadBenchArgs) -> Result<Measurement> {
    eprintln!("xtask: wrk {url}");
    let cpu_before = cpu_seconds(server.0.id())?;
    let output = Command::new("wrk")
        .args([
            "-t",
            "2",
            "-c",
            &args.connections.to_string(),
            "-d",
            &format!("{}s", args.seconds),
            "--latency",
            url,
        ])
        .output()
        .context("cannot run wrk")?;
    let cpu = cpu_seconds(server.0.id())? - cpu_before;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || text.contains("Socket errors") {
        bail!("wrk against {url} failed or saw errors:\n{text}");
    }
    let refused = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    let requests_per_second: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk output:\n{text}"))?;
    let requests: f64 = text
        .lines()
        .find(|line| line.contains(" requests in "))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .with_context(|| format!("no request count in wrk output:\n{text}"))?;
    let percentile = |label: &str| {
        text.lines()
            .map(str::split_whitespace)
            .find_map(|mut words| {
                (words.next() == Some(label)).then(|| words.next().unwrap_or("?").to_owned())
            })
            .unwrap_or_else(|| "?".to_owned())
    };
    Ok(Measurement {
        requests_per_second,
        p50: percentile("50%"),
        p99: percentile("99%"),
        cpu_per_request_us: cpu * 1e6 / requests.max(1.0),
        refused,
        refusals: None,
    })
}

/// The host's own count of what it did not answer with 2xx on the tracking route, read
/// from its `/metrics`: `503 ×N, M shed` (shed: refused by the concurrency limit; the
/// rest of the 503s are a full stream buffer, core data or a plugin asking to retry).
fn refusals(metrics_url: &str) -> Result<String> {
    let output = Command::new("curl")
        .args(["-fsS", metrics_url])
        .output()
        .context("cannot run curl")?;
    crate::check(output.status, metrics_url)?;
    let text = String::from_utf8_lossy(&output.stdout);
    let value = |line: &str| line.rsplit(' ').next().unwrap_or("0").trim().to_owned();
    let mut parts: Vec<String> = text
        .lines()
        .filter(|line| {
            line.starts_with("http_requests_total{")
                && line.contains(r#"route="/event/{program_id}""#)
                && !line.contains(r#"status="2"#)
        })
        .filter_map(|line| {
            let status = line.split(r#"status=""#).nth(1)?.get(..3)?;
            Some(format!("{status} ×{}", value(line)))
        })
        .collect();
    if let Some(shed) = text
        .lines()
        .find(|line| line.starts_with("http_requests_shed_total "))
    {
        parts.push(format!("{} shed", value(shed)));
    }
    Ok(parts.join(", "))
}

/// User plus system CPU seconds process `pid` has used, from `/proc/{pid}/stat`.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read the CPU time of process {pid}"))?;
    // Fields after the parenthesised command name; utime and stime are the 12th and
    // 13th of them, in clock ticks (100 per second on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| -> Result<f64> {
        fields
            .get(index)
            .and_then(|value| value.parse::<f64>().ok())
            .with_context(|| format!("unexpected /proc/{pid}/stat: {stat}"))
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

fn ensure_wrk() -> Result<()> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok(());
    }
    eprintln!("xtask: installing wrk");
    let status = Command::new("apt-get")
        .args(["install", "-y", "wrk"])
        .status()?;
    crate::check(status, "apt-get install wrk")
}

fn curl(url: &str) -> Result<()> {
    let status = Command::new("curl")
        .args(["-fsS", "-o", "/dev/null", url])
        .status()?;
    crate::check(status, url)
}

fn wait_for(url: &str) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if Command::new("curl")
            .args(["-fs", "-o", "/dev/null", url])
            .status()
            .is_ok_and(|status| status.success())
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{url} did not answer within 60 s")
}
