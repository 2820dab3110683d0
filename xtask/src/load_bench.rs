//! `cargo xtask load-bench`: wrk over loopback against `GET /event/{id}` on the host
//! (embedded defaults; with and without plugins) and against a bare axum handler, same run.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

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
/// pipeline with either durability, and the stages without plugins, which isolates what the
/// plugin chain costs.
const HOST_SETUPS: [(&str, &[(&str, &str)]); 3] = [
    ("adtrack-host, default pipeline, `ACK=stream`", &[]),
    (
        "adtrack-host, default pipeline, `ACK=buffer`",
        &[("ACK", "buffer")],
    ),
    (
        "adtrack-host, no plugins, `ACK=stream`",
        &[("PIPELINE_FILE", "target/load-bench/no-plugins.toml")],
    ),
];

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
        work_dir.join("no-plugins.toml"),
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
    let (bare_rate, bare_latency) =
        wrk(&format!("http://127.0.0.1:{bare_port}/event/212313"), args)?;
    drop(bare);

    let mut rows = vec![(
        "bare axum handler".to_owned(),
        bare_rate,
        bare_latency.clone(),
    )];
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
        let (rate, latency) = wrk(&format!("http://127.0.0.1:{port}/event/212313"), args)?;
        drop(host);
        rows.push((label.to_owned(), rate, latency));
    }

    println!(
        "{} connections, {} s each, wrk -t 2 on the same machine:\n",
        args.connections, args.seconds
    );
    println!("| target | requests/s | mean latency | throughput vs bare |");
    println!("|---|---:|---:|---:|");
    for (label, rate, latency) in rows {
        println!(
            "| {label} | {rate:.0} | {latency} | {:.3} |",
            rate / bare_rate
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

/// Requests per second and the mean latency as wrk prints it.
fn wrk(url: &str, args: &LoadBenchArgs) -> Result<(f64, String)> {
    eprintln!("xtask: wrk {url}");
    let output = Command::new("wrk")
        .args([
            "-t",
            "2",
            "-c",
            &args.connections.to_string(),
            "-d",
            &format!("{}s", args.seconds),
            url,
        ])
        .output()
        .context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || text.contains("Non-2xx") {
        bail!("wrk against {url} failed or saw errors:\n{text}");
    }
    let requests = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk output:\n{text}"))?;
    let latency = text
        .lines()
        .find(|line| line.trim_start().starts_with("Latency"))
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or("?")
        .to_owned();
    Ok((requests, latency))
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

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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
