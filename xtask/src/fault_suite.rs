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

/// Prints the table of the rows the scenarios wrote.
pub fn print(path: &Path) {
    let rows = std::fs::read_to_string(path).unwrap_or_default();
    eprintln!("xtask: fault suite\n{}", table(&rows));
}

/// The header and `rows` (one per line, in the order the scenarios finished), sorted by
/// scenario.
fn table(rows: &str) -> String {
    let mut rows: Vec<&str> = rows.lines().filter(|line| !line.is_empty()).collect();
    rows.sort_unstable();
    std::iter::once(HEADER)
        .chain(rows)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_sorted_under_the_header() {
        let rows =
            "| b | 1 | 1 | 1 | 1 | 0 | none | kept |\n\n| a | 2 | 2 | 2 | 2 | 0 | none | kept |\n";
        let table = table(rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("| scenario |"));
        assert!(lines[2].starts_with("| a |") && lines[3].starts_with("| b |"));
    }

    #[test]
    fn no_rows_is_the_header_alone() {
        assert_eq!(table(""), HEADER);
    }
}
