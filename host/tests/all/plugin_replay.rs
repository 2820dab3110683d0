//! `plugin replay` over a stream range captured from a running host: the real binary on
//! its embedded defaults takes four tracking calls, stops, and a candidate consumer chain
//! is replayed over the records of its log beside the active one, then again from the
//! capture that first replay saved; the same over a Kinesis shard range (kinesalite);
//! and a release's shadow candidate beside its active version.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Map, Value, json};

use crate::common::{
    create_stream, kinesis_client, plugin_path, repo_root, service_env, start_host,
};

/// The candidate's place in the replays below: `validate-tracking`'s, in the consumer
/// chain of the repository's pipeline file.
const IN_THE_CONSUMER_CHAIN: [&str; 6] = [
    "--pipeline",
    "pipeline.toml",
    "--side",
    "consumer",
    "--plugin",
    "validate-tracking",
];

fn replay(args: &[&str]) -> Output {
    plugin_command(&[&["replay"], args].concat(), &[])
}

/// `adtrack-host plugin ARGS` from the repository root, which must succeed.
fn plugin_command(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_adtrack-host"))
        .arg("plugin")
        .args(args)
        .envs(env.iter().copied())
        .env_remove("REDIS_URL")
        .current_dir(repo_root())
        .output()
        .expect("adtrack-host runs");
    assert!(
        output.status.success(),
        "plugin {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The first 12 hex digits of a component's version, as reports name it.
fn short_version(plugin: &str) -> String {
    let bytes = std::fs::read(plugin_path(plugin)).expect("the component");
    plugin_engine::PluginVersion::of(&bytes).to_string()[..12].to_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).expect("a JSON report")
}

/// The sample core data as it is after the events were taken: 212313 renamed, 212314
/// removed.
fn changed_core_data(dir: &Path) -> String {
    let samples = std::fs::read_to_string(repo_root().join("host/samples/core-data.json"))
        .expect("sample core data");
    let mut records: Map<String, Value> = serde_json::from_str(&samples).expect("JSON records");
    records["212313"]["programName"] = json!("Summer Video Preroll II");
    records.remove("212314");
    let path = dir.join("core-data.json");
    std::fs::write(&path, Value::Object(records).to_string()).expect("write core data");
    path.display().to_string()
}

#[tokio::test]
async fn a_replayed_stream_range_reports_counts_and_diffs_and_replays_identically() {
    let mut host = start_host(&[]).await;
    let (status, body) = host.get("/cache/fill").await;
    assert_eq!(status, 200, "{body}");
    for program in ["212312", "212313", "212313", "212314"] {
        let (status, body) = host.get(&format!("/event/{program}")).await;
        assert_eq!(status, 200, "{program}: {body}");
    }
    assert!(host.terminate().success(), "the host stops cleanly");

    let dir = tempfile::tempdir().expect("temp dir");
    let core_data = changed_core_data(dir.path());
    let log = host.stream_log().display().to_string();
    let capture = dir.path().join("capture.jsonl").display().to_string();
    let candidate = plugin_path("tracking").display().to_string();
    let chain = [&[candidate.as_str()][..], &IN_THE_CONSUMER_CHAIN].concat();

    let live = json(&replay(
        &[
            &chain[..],
            &[
                "--log",
                &log,
                "--from",
                "1",
                "--to",
                "4",
                "--core-data",
                &core_data,
                "--save-capture",
                &capture,
                "--json",
            ],
        ]
        .concat(),
    ));

    // By hand: the consumer chain (validate-tracking) accepts all four records as they
    // are. `tracking` in its place looks each program up again: 212312 is unchanged,
    // 212313 (twice) now has another name, 212314 is gone and is rejected.
    assert_eq!(live["events"], 4, "{live:#}");
    assert_eq!(
        live["active"]["counts"],
        json!({"accepted": 4, "filtered": 0, "rejected": 0, "retry": 0, "failed": 0})
    );
    assert_eq!(
        live["candidate"]["counts"],
        json!({"accepted": 3, "filtered": 0, "rejected": 1, "retry": 0, "failed": 0})
    );
    assert_eq!(live["differing"], 3);
    let diffs = live["diffs"].as_array().expect("diffs");
    let at: Vec<&str> = diffs.iter().map(|d| d["at"].as_str().unwrap()).collect();
    assert_eq!(at, ["log:2", "log:3", "log:4"]);
    for renamed in &diffs[..2] {
        assert_eq!(
            renamed["differences"],
            json!([
                r#"events[0].attributes.programName: expected "Summer Video Preroll", got "Summer Video Preroll II""#
            ])
        );
    }
    let gone: Vec<&str> = diffs[2]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(
        gone.contains(&r#"outcome: expected "accepted", got "rejected""#),
        "{gone:?}"
    );
    assert!(
        gone.contains(&r#"reason: not expected, got "unknown program 212314""#),
        "{gone:?}"
    );

    // The capture holds the four events and the three lookups, 212314's as a miss.
    let saved = std::fs::read_to_string(&capture).expect("the capture");
    assert_eq!(saved.lines().count(), 7, "{saved}");
    assert!(
        saved.contains(r#"{"lookup":"212314","record":null}"#),
        "{saved}"
    );

    // Replaying the capture twice gives the same report, with the live run's findings,
    // although nothing but the capture is read.
    let from_capture = [&chain[..], &["--capture", &capture, "--json"]].concat();
    let first = replay(&from_capture);
    let second = replay(&from_capture);
    assert_eq!(first.stdout, second.stdout, "two replays of one capture");
    let first = json(&first);
    for field in ["events", "active", "candidate", "differing", "diffs"] {
        assert_eq!(first[field], live[field], "{field}");
    }

    let text = replay(&[&chain[..], &["--capture", &capture, "--max-diffs", "1"]].concat());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("outputs differ for 3 of 4 events"), "{text}");
    assert!(text.contains("log:2 (event "), "{text}");
    assert!(!text.contains("log:3"), "one difference shown: {text}");
}

#[tokio::test]
async fn a_release_shadow_is_replayed_beside_the_active_version() {
    // A host seeds its registry with pipeline.toml, then a shadow of the consumer's
    // validate-tracking is published: the `tracking` plugin.
    let mut host = start_host(&[]).await;
    assert!(host.terminate().success(), "the host stops cleanly");
    let data_dir = host.data_dir.path().to_owned();
    let tracking = plugin_path("tracking").display().to_string();
    plugin_command(
        &[
            "publish",
            "validate-tracking",
            &tracking,
            "--side",
            "consumer",
            "--shadow",
            "10",
        ],
        &[("DATA_DIR", &data_dir)],
    );

    let capture = data_dir.join("capture.jsonl");
    std::fs::write(
        &capture,
        concat!(
            r#"{"at":"log:1","event":{"id":"m1","key":"m1","timestampMs":1,"contentType":"application/json","payload":"","attributes":[["programId","212313"],["checksum","b84e02d7"],["customerId","4712"]]}}"#,
            "\n",
            r#"{"at":"log:2","event":{"id":"m2","key":"m2","timestampMs":2,"contentType":"application/json","payload":"","attributes":[["programId","21x313"]]}}"#,
            "\n",
            r#"{"lookup":"212313","record":[["programName","Summer Video Preroll"],["checksum","b84e02d7"],["customerId","4712"]]}"#,
            "\n",
        ),
    )
    .expect("write the capture");
    let capture = capture.display().to_string();
    let report = json(&plugin_command(
        &[
            "replay",
            "--release",
            "--side",
            "consumer",
            "--capture",
            &capture,
            "--json",
        ],
        &[("DATA_DIR", &data_dir)],
    ));

    // By hand: both accept m1, and `tracking` adds the program's name; both reject m2
    // with the same reason, in the name of validate-tracking.
    assert_eq!(
        report["active"]["plugins"],
        json!([format!(
            "validate-tracking@{}",
            short_version("validate-tracking")
        )])
    );
    assert_eq!(
        report["candidate"]["plugins"],
        json!([format!("validate-tracking@{}", short_version("tracking"))])
    );
    for side in ["active", "candidate"] {
        assert_eq!(
            report[side]["counts"],
            json!({"accepted": 1, "filtered": 0, "rejected": 1, "retry": 0, "failed": 0}),
            "{side}"
        );
    }
    assert_eq!(report["differing"], 1, "{report:#}");
    assert_eq!(
        report["diffs"],
        json!([{
            "at": "log:1",
            "id": "m1",
            "differences": [r#"events[0].attributes.programName: not expected, got "Summer Video Preroll""#],
        }])
    );
}

#[tokio::test]
async fn a_kinesis_shard_range_is_replayed_from_the_sequence_numbers_given() {
    let client = kinesis_client().await;
    let stream = format!("adtrack-replay-{}", uuid::Uuid::new_v4().simple());
    create_stream(&client, &stream, 1).await;
    let endpoint = service_env("KINESIS_ENDPOINT_URL");
    let host = start_host(&[
        ("KINESIS_STREAM_NAME", &stream),
        ("KINESIS_ENDPOINT_URL", &endpoint),
    ])
    .await;
    let (status, body) = host.get("/cache/fill").await;
    assert_eq!(status, 200, "{body}");
    for program in ["212312", "212313", "212314"] {
        let (status, body) = host.get(&format!("/event/{program}")).await;
        assert_eq!(status, 200, "{program}: {body}");
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let core_data = changed_core_data(dir.path());
    let candidate = plugin_path("tracking").display().to_string();
    let endpoint = Path::new(&endpoint);
    let replay_shard = |range: &[&str]| {
        let args = [
            &["replay", candidate.as_str()],
            &IN_THE_CONSUMER_CHAIN[..],
            &[
                "--kinesis-stream",
                &stream,
                "--core-data",
                &core_data,
                "--json",
            ],
            range,
        ]
        .concat();
        json(&plugin_command(
            &args,
            &[("KINESIS_ENDPOINT_URL", endpoint)],
        ))
    };

    // The whole shard: 212313 has another name now, 212314 is gone.
    let whole = replay_shard(&[]);
    assert_eq!(whole["events"], 3, "{whole:#}");
    assert_eq!(
        whole["candidate"]["counts"],
        json!({"accepted": 2, "filtered": 0, "rejected": 1, "retry": 0, "failed": 0})
    );
    assert_eq!(whole["differing"], 2);
    let renamed = whole["diffs"][0]["at"].as_str().expect("where");
    let sequence = renamed
        .strip_prefix("kinesis:shardId-000000000000/")
        .expect("a shard and sequence number");

    // Only the record of the renamed program.
    let one = replay_shard(&["--from-sequence", sequence, "--to-sequence", sequence]);
    assert_eq!(one["events"], 1, "{one:#}");
    assert_eq!(one["diffs"][0]["at"], renamed);
    assert_eq!(
        one["diffs"][0]["differences"],
        json!([
            r#"events[0].attributes.programName: expected "Summer Video Preroll", got "Summer Video Preroll II""#
        ])
    );
}
