//! The repository's pipeline file, `pipeline.toml`, and the plugin components it names: what
//! the deployment uploads and what the consumer's Lambda package carries.

use std::path::Path;

use anyhow::{Context, Result};

/// The pipeline file, relative to the repository root.
pub const PIPELINE_FILE: &str = "pipeline.toml";

/// The `path` of every `[plugins.NAME]` table of the repository's pipeline file, relative to
/// the file, in name order.
pub fn plugin_paths(root: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(root.join(PIPELINE_FILE))
        .with_context(|| format!("cannot read {PIPELINE_FILE}"))?;
    paths_in(&text)
}

fn paths_in(pipeline: &str) -> Result<Vec<String>> {
    let pipeline: toml::Table =
        toml::from_str(pipeline).with_context(|| format!("{PIPELINE_FILE} is not valid TOML"))?;
    let Some(plugins) = pipeline.get("plugins").and_then(toml::Value::as_table) else {
        return Ok(Vec::new());
    };
    plugins
        .iter()
        .map(|(name, plugin)| {
            plugin
                .get("path")
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("plugin {name} in {PIPELINE_FILE} has no path"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_paths_are_the_path_keys_of_the_plugin_tables() {
        let pipeline = r#"
[limits]
timeout-ms = 100

[plugins.filter]
path = "target/plugins/filter.wasm"
config = { bot-patterns = "bot" }

[plugins.enrich]
path = "target/plugins/enrich.wasm"     # relative to the pipeline file
timeout-ms = 50
"#;
        assert_eq!(
            paths_in(pipeline).unwrap(),
            ["target/plugins/enrich.wasm", "target/plugins/filter.wasm"]
        );
    }

    #[test]
    fn a_plugin_without_a_path_is_an_error() {
        let error = paths_in("[plugins.filter]\nconfig = {}\n").unwrap_err();
        assert!(error.to_string().contains("filter"), "{error}");
    }

    #[test]
    fn the_repository_pipeline_names_only_example_plugins() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let plugins = plugin_paths(&root).unwrap();
        assert!(!plugins.is_empty());
        assert!(
            plugins
                .iter()
                .all(|path| path.starts_with("target/plugins/")
                    && path.ends_with(".wasm")
                    && !path.contains("hostile"))
        );
    }
}
