//! The container image's precompiled plugins: `pipeline precompile` writes an artifact
//! per plugin beside the pipeline file, `serve` loads them instead of compiling (as
//! `GET /admin/plugins` reports), and unusable artifacts fall back to compiling.

use std::process::Command;

use super::common::{Host, repo_root, start_host, write_pipeline};

/// The repository pipeline in `dir`, naming the built plugins by absolute path.
fn repository_pipeline(dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo_root().join("pipeline.toml")).expect("pipeline.toml");
    write_pipeline(dir, &text.replace("target/plugins", "{plugins}"))
}

fn precompile(pipeline: &std::path::Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_adtrack-host"))
        .args(["pipeline", "precompile", "--pipeline"])
        .arg(pipeline)
        .output()
        .expect("adtrack-host runs");
    assert!(
        output.status.success(),
        "pipeline precompile failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// Where each host plugin's machine code came from, by name.
async fn loaded_from(host: &Host) -> Vec<(String, String)> {
    let (status, body) = host.get("/admin/plugins").await;
    assert_eq!(status, 200, "{body}");
    body["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .map(|plugin| {
            (
                plugin["name"].as_str().expect("name").to_owned(),
                plugin["loadedFrom"]
                    .as_str()
                    .expect("loadedFrom")
                    .to_owned(),
            )
        })
        .collect()
}

/// Serves `pipeline` and checks that each of its four host plugins got its code from
/// `origin` and that a tracking call goes through.
async fn serves_with_every_plugin_loaded_from(pipeline: &std::path::Path, origin: &str) {
    let host = start_host(&[("PIPELINE_FILE", pipeline.to_str().expect("utf-8"))]).await;
    let loaded = loaded_from(&host).await;
    assert_eq!(loaded.len(), 4, "{loaded:?}");
    assert!(
        loaded.iter().all(|(_, from)| from == origin),
        "every host plugin loads from {origin}: {loaded:?}"
    );
    host.get("/cache/fill").await;
    let (status, body) = host.get("/event/212313").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn serve_loads_the_precompiled_artifacts_beside_the_pipeline_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = repository_pipeline(dir.path());

    let printed = precompile(&pipeline);
    let artifacts = dir.path().join("plugin-artifacts");
    for name in ["filter", "enrich", "validate-tracking", "fan-out"] {
        let line = printed
            .lines()
            .find(|line| line.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name} in {printed}"));
        assert!(line.contains(&artifacts.display().to_string()), "{line}");
    }
    assert_eq!(std::fs::read_dir(&artifacts).expect("artifacts").count(), 4);

    serves_with_every_plugin_loaded_from(&pipeline, "package").await;
}

#[tokio::test]
async fn unusable_artifacts_are_ignored_and_the_plugins_compiled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = repository_pipeline(dir.path());
    precompile(&pipeline);
    for artifact in std::fs::read_dir(dir.path().join("plugin-artifacts")).expect("artifacts") {
        std::fs::write(artifact.expect("entry").path(), b"not an artifact").expect("overwrite");
    }

    serves_with_every_plugin_loaded_from(&pipeline, "compiled").await;
}
