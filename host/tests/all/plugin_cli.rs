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
    assert!(stdout.contains("adtrack:plugin/handler@0.1.2"), "{stdout}");
    assert!(
        stdout.contains("adtrack:plugin/batch-handler@0.1.2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("adtrack:plugin/core-data@0.1.2"),
        "{stdout}"
    );
    assert!(stdout.contains("compiled in"), "{stdout}");
    assert!(
        stdout.contains(
            "contract: built for adtrack:plugin@0.1.2; this host implements 0.1.2 and accepts 0.1.0 to 0.1.2"
        ),
        "{stdout}"
    );
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

/// `plugin test`: `--update` writes the outcomes as expectations, a run against them
/// passes, and a case whose expectation no longer holds fails with a diff naming the
/// field, and a summary line for CI.
#[test]
fn plugin_test_runs_golden_cases_and_names_the_field_that_differs() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.jsonl");
    std::fs::write(
        &cases,
        r#"{"name":"a known program is enriched","event":{"attributes":{"programId":"212313"}},"coreData":{"212313":{"programName":"Summer Video Preroll","checksum":"b84e02d7"}}}
{"name":"an unknown program passes unchanged","event":{"attributes":{"programId":"1"}}}
"#,
    )
    .unwrap();
    let enrich = plugin("enrich");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "plugin",
            "test",
            enrich.to_str().unwrap(),
            "--cases",
            cases.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        host(&args, "")
    };
    let stdout = |output: &Output| String::from_utf8_lossy(&output.stdout).into_owned();

    let updated = run(&["--update"]);
    assert!(updated.status.success(), "{}", stdout(&updated));
    assert!(
        stdout(&updated).contains("plugin test: 0 passed, 0 failed, 2 updated"),
        "{}",
        stdout(&updated)
    );
    let written = std::fs::read_to_string(&cases).unwrap();
    assert!(
        written.contains(r#""programName":"Summer Video Preroll""#),
        "{written}"
    );

    let passed = run(&[]);
    assert!(passed.status.success(), "{}", stdout(&passed));
    assert!(stdout(&passed).contains("plugin test: 2 passed, 0 failed"));

    // The plugin's behaviour "changed": the first case now expects another name.
    let mut lines: Vec<Value> = written
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    lines[0]["expect"]["events"][0]["attributes"]["programName"] = "Winter Sale".into();
    let edited: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&cases, edited.join("\n")).unwrap();
    let failed = run(&[]);
    assert!(!failed.status.success());
    let report = stdout(&failed);
    assert!(
        report.contains(r#"events[0].attributes.programName: expected "Winter Sale", got "Summer Video Preroll""#),
        "{report}"
    );
    assert!(
        report.contains("line 1 (a known program is enriched)"),
        "{report}"
    );
    assert!(
        report.contains("plugin test: 1 passed, 1 failed"),
        "{report}"
    );
}

/// `pipeline run --trace`: each plugin's input, outcome, log lines and time, per event.
#[test]
fn pipeline_run_trace_shows_each_step_with_its_logs() {
    let events = r#"{"id":"visit","attributes":{"programId":"212313","userAgent":"Mozilla/5.0"}}
{"id":"crawler","attributes":{"programId":"212313","userAgent":"Googlebot/2.1"}}
"#;
    let traces = outcomes(&host(
        &[
            "pipeline",
            "run",
            "--pipeline",
            "pipeline.toml",
            "--core-data",
            "host/samples/core-data.json",
            "--trace",
        ],
        events,
    ));
    let steps = traces[0]["steps"].as_array().expect("steps");
    let plugins: Vec<&str> = steps
        .iter()
        .map(|step| step["plugin"].as_str().unwrap())
        .collect();
    assert_eq!(
        plugins,
        ["filter", "enrich", "validate-tracking", "fan-out"]
    );
    // enrich's input lacks the program's name; its output has it.
    assert!(
        steps[1]["input"][0]["attributes"]
            .get("programName")
            .is_none()
    );
    assert_eq!(
        steps[1]["outcomes"][0]["events"][0]["attributes"]["programName"],
        "Summer Video Preroll"
    );
    assert!(steps.iter().all(|step| step["elapsedUs"].is_u64()));
    assert_eq!(steps[0]["version"].as_str().unwrap().len(), 64);

    let bot = traces[1]["steps"].as_array().expect("steps");
    assert_eq!(bot.len(), 1, "the trace stops where the event is dropped");
    assert_eq!(bot[0]["outcomes"][0]["outcome"], "filtered");
    let logs = bot[0]["logs"].as_array().expect("logs");
    assert!(
        logs.iter()
            .any(|line| line.as_str().unwrap().contains("matches bot pattern")),
        "{logs:?}"
    );
}
