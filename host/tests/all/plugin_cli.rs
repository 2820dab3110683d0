//! The plugin author CLI: `plugin check` and `plugin run` on the example plugins.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn plugin(name: &str) -> PathBuf {
    let path = repo_root()
        .join("target/plugins")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the plugins with `cargo xtask plugins`",
        path.display()
    );
    path
}

fn host(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_adtrack-host"))
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("adtrack-host starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("adtrack-host exits")
}

fn outcomes(output: &Output) -> Vec<Value> {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON outcome per line"))
        .collect()
}

const EVENTS: &str = r#"{"id":"valid","attributes":{"programId":"212313","checksum":"b84e02d7","customerId":"4712","userAgent":"Mozilla/5.0 Firefox/128.0"}}
{"id":"invalid","attributes":{"programId":"21x313","checksum":"b84e02d7","customerId":"4712","userAgent":"Mozilla/5.0"}}
{"id":"bot","attributes":{"programId":"212313","checksum":"b84e02d7","customerId":"4712","userAgent":"Googlebot/2.1"}}
not json
"#;

#[test]
fn check_reports_version_world_imports_and_compile_time() {
    let path = plugin("enrich");
    let output = host(&["plugin", "check", path.to_str().unwrap()], "");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let bytes = std::fs::read(&path).unwrap();
    let version = plugin_engine::PluginVersion::of(&bytes).to_string();
    assert!(stdout.contains(&version), "{stdout}");
    assert!(
        stdout.contains(&format!("{} bytes", bytes.len())),
        "{stdout}"
    );
    assert!(stdout.contains("adtrack:plugin/handler@0.1.0"), "{stdout}");
    assert!(
        stdout.contains("adtrack:plugin/core-data@0.1.0"),
        "{stdout}"
    );
    assert!(stdout.contains("compiled in"), "{stdout}");
}

#[test]
fn check_refuses_a_plugin_importing_a_denied_capability() {
    let path = plugin("hostile-denied-import");
    let output = host(&["plugin", "check", path.to_str().unwrap()], "");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("imports wasi:sockets/"), "{stderr}");
    assert!(stderr.contains("not granted"), "{stderr}");
}

#[test]
fn run_validate_tracking_accepts_valid_and_rejects_invalid_events() {
    let path = plugin("validate-tracking");
    let results = outcomes(&host(&["plugin", "run", path.to_str().unwrap()], EVENTS));
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["outcome"], "accepted");
    assert_eq!(results[0]["events"][0]["attributes"]["valid"], "true");
    assert_eq!(results[1]["outcome"], "rejected");
    assert_eq!(results[1]["plugin"], "validate-tracking");
    assert_eq!(
        results[1]["reason"],
        r#"invalid programId "21x313": expected digits"#
    );
    assert_eq!(results[2]["outcome"], "accepted");
    assert_eq!(results[3]["outcome"], "invalid-input");
    assert_eq!(results[3]["line"], 4);
}

#[test]
fn run_filter_drops_bots_and_takes_config_from_flags() {
    let path = plugin("filter");
    let results = outcomes(&host(&["plugin", "run", path.to_str().unwrap()], EVENTS));
    let kinds: Vec<&str> = results
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["accepted", "accepted", "filtered", "invalid-input"]);

    let configured = outcomes(&host(
        &[
            "plugin",
            "run",
            path.to_str().unwrap(),
            "--config",
            "bot-patterns=firefox",
        ],
        EVENTS,
    ));
    let kinds: Vec<&str> = configured
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["filtered", "accepted", "accepted", "invalid-input"]);
}

#[test]
fn run_enrich_uses_core_data_from_a_file() {
    let path = plugin("enrich");
    let results = outcomes(&host(
        &[
            "plugin",
            "run",
            path.to_str().unwrap(),
            "--core-data",
            "host/samples/core-data.json",
        ],
        EVENTS,
    ));
    assert_eq!(
        results[0]["events"][0]["attributes"]["programName"],
        "Summer Video Preroll"
    );
    assert_eq!(results[1]["outcome"], "rejected");
    assert_eq!(results[1]["reason"], "unknown program 21x313");
}

#[test]
fn run_reports_hostile_plugin_failures_per_event() {
    let path = plugin("hostile-infinite-loop");
    let results = outcomes(&host(
        &[
            "plugin",
            "run",
            path.to_str().unwrap(),
            "--timeout-ms",
            "20",
        ],
        EVENTS,
    ));
    for result in &results[..3] {
        assert_eq!(result["outcome"], "failed");
        assert_eq!(result["failure"], "timeout");
    }
}

#[test]
fn pipeline_run_applies_the_host_chain_of_the_pipeline_file() {
    let events = std::fs::read_to_string(repo_root().join("host/samples/events.jsonl")).unwrap();
    let results = outcomes(&host(
        &[
            "pipeline",
            "run",
            "--pipeline",
            "pipeline.toml",
            "--core-data",
            "host/samples/core-data.json",
        ],
        &events,
    ));
    let kinds: Vec<&str> = results
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "accepted", "accepted", "rejected", "filtered", "rejected", "accepted"
        ]
    );
    assert_eq!(
        results[0]["events"][0]["attributes"]["customerName"],
        "Globex Travel"
    );
    assert_eq!(results[3]["processedBy"].as_array().unwrap().len(), 1);
    assert_eq!(results[5]["events"].as_array().unwrap().len(), 3);
}
