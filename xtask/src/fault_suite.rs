//! The fault suite's table: every scenario of `host/tests/all/fault_suite` appends its
//! reconciliation as a row to the file `FAULT_SUITE_REPORT` names; `cargo xtask test`
//! names one under `target/` and prints the table after the tests, passed or not.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The columns, as the scenarios write them.
const HEADER: &str = "\
| scenario | acknowledged | on the stream once | stored | counted | dead letters | other answers | promise |
|---|---:|---:|---:|---:|---:|---|---|";

/// An empty report file for this run.
pub fn prepare(root: &Path) -> Result<PathBuf> {
    let path = root.join("target/fault-suite.md");
    match std::fs::remove_file(&path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(path),
    }
}

/// Prints the table of the rows the scenarios wrote, sorted by scenario.
pub fn print(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut rows: Vec<&str> = text.lines().filter(|line| !line.is_empty()).collect();
    rows.sort_unstable();
    eprintln!(
        "xtask: fault suite ({} scenarios ran)\n{HEADER}",
        rows.len()
    );
    for row in rows {
        eprintln!("{row}");
    }
}
