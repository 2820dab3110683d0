//! `cargo xtask load-bench`: wrk over loopback against `GET /event/{id}` on the host
//! (embedded defaults, full plugin chain) and against a bare axum handler, same run.

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

/// Builds both servers in release mode, loads each with wrk and prints the ratio.
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
    let data_dir = root.join("target/load-bench");
    let _ = std::fs::remove_dir_all(&data_dir);

    let host_port = free_port()?;
    let host = Server(
        Command::new(release.join("adtrack-host"))
            .arg("serve")
            .current_dir(root)
            .env("LISTEN_ADDR", format!("127.0.0.1:{host_port}"))
            .env("DATA_DIR", &data_dir)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start adtrack-host")?,
    );
    wait_for(&format!("http://127.0.0.1:{host_port}/health/check"))?;
    curl(&format!("http://127.0.0.1:{host_port}/cache/fill"))?;
    let host_result = wrk(&format!("http://127.0.0.1:{host_port}/event/212313"), args)?;
    drop(host);

    let bare_port = free_port()?;
    let bare = Server(
        Command::new(release.join("examples/bare_axum"))
            .arg(format!("127.0.0.1:{bare_port}"))
            .spawn()
            .context("cannot start the bare axum example")?,
    );
    wait_for(&format!("http://127.0.0.1:{bare_port}/event/1"))?;
    let bare_result = wrk(&format!("http://127.0.0.1:{bare_port}/event/212313"), args)?;
    drop(bare);

    println!("| target | requests/s | mean latency |");
    println!("|---|---|---|");
    println!(
        "| bare axum handler | {:.0} | {} |",
        bare_result.0, bare_result.1
    );
    println!(
        "| adtrack-host `/event/{{id}}` | {:.0} | {} |",
        host_result.0, host_result.1
    );
    println!(
        "host / bare throughput ratio: {:.3} ({} connections, {} s each)",
        host_result.0 / bare_result.0,
        args.connections,
        args.seconds
    );
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
            .args(["-fsS", "-o", "/dev/null", url])
            .status()
            .is_ok_and(|status| status.success())
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{url} did not answer within 60 s")
}
