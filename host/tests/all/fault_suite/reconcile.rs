//! The reconciliation after a scenario: what the clients were told against what is on
//! the stream, in the store and in the counters, printed as one line and then checked.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use contract::redis_names::{EVENT_COUNT_FIELD, program_key};
use test_support::PrivateService;

use super::load::PROGRAMS;

/// What a scenario's backends hold after the consumer caught up.
#[derive(Debug, Default)]
pub struct Observed {
    /// The message id of every record on the stream (every shard), duplicates included.
    pub stream: Vec<String>,
    /// The message id of every stored item.
    pub stored: Vec<String>,
    /// The sum of the program counters.
    pub counted: u64,
    /// Dead letters written.
    pub dead_letters: usize,
}

/// One scenario's reconciliation.
pub struct Reconciliation {
    scenario: &'static str,
    acknowledged: BTreeSet<String>,
    poison: BTreeSet<String>,
    observed: Observed,
    client_failures: String,
    broken_promises: Vec<String>,
}

impl Reconciliation {
    /// Compares the `acknowledged` message ids with what was `observed`; the `poison`
    /// ids (acknowledged, but records the consumer can never handle) must end as dead
    /// letters instead of stored items. `client_failures` says what the clients got
    /// besides `200`.
    pub fn new(
        scenario: &'static str,
        acknowledged: &[String],
        poison: &[String],
        observed: Observed,
        client_failures: String,
    ) -> Self {
        Self {
            scenario,
            acknowledged: acknowledged.iter().cloned().collect(),
            poison: poison.iter().cloned().collect(),
            observed,
            client_failures,
            broken_promises: Vec::new(),
        }
    }

    /// Adds a promise of the scenario's own: `broken` describes it when it does not hold.
    pub fn require(mut self, holds: bool, broken: String) -> Self {
        if !holds {
            self.broken_promises.push(broken);
        }
        self
    }

    /// Prints the line (on the terminal, past the test harness's capture; and as a
    /// table row into the file `FAULT_SUITE_REPORT` names, which `cargo xtask test`
    /// prints), then checks every promise, panicking with the line when one is broken.
    pub fn print_and_check(&self) {
        let cells = self.cells();
        let problems = self.problems();
        let labels = [
            "",
            "acknowledged ",
            "on the stream once ",
            "stored ",
            "counted ",
            "dead letters ",
            "other answers: ",
        ];
        let labelled: Vec<String> = labels
            .iter()
            .zip(&cells)
            .map(|(label, cell)| format!("{label}{cell}"))
            .collect();
        let line = format!("fault suite | {}", labelled.join(" | "));
        let _ = writeln!(std::io::stderr(), "{line}");
        if let Ok(path) = std::env::var("FAULT_SUITE_REPORT") {
            let verdict = match problems.first() {
                None => "kept".to_owned(),
                Some(problem) => format!("**broken**: {problem}"),
            };
            let row = format!("| {} | {verdict} |\n", cells.join(" | "));
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut file| file.write_all(row.as_bytes()));
            if let Err(error) = appended {
                panic!("cannot append to FAULT_SUITE_REPORT {path}: {error}");
            }
        }
        assert!(
            problems.is_empty(),
            "{line}\nbroken promises:\n  {}",
            problems.join("\n  ")
        );
    }

    /// The table's cells: scenario, requests acknowledged, acknowledged records on the
    /// stream exactly once, acknowledged records stored, counter total, dead letters,
    /// and what else the clients were answered.
    fn cells(&self) -> Vec<String> {
        let copies = count(&self.observed.stream);
        let stored = count(&self.observed.stored);
        let acknowledged_once = self
            .acknowledged
            .iter()
            .filter(|id| copies.get(id.as_str()) == Some(&1))
            .count();
        let acknowledged_stored = self
            .acknowledged
            .iter()
            .filter(|id| stored.contains_key(id.as_str()))
            .count();
        let plus = |total: usize, acknowledged: usize| match total - acknowledged {
            0 => acknowledged.to_string(),
            others => format!("{acknowledged} (+{others} unacknowledged)"),
        };
        // A producer that timed out may have put a record it then put again; that is
        // allowed only for records no client was told were taken.
        let unacknowledged: Vec<usize> = copies
            .iter()
            .filter(|(id, _)| !self.acknowledged.contains(**id))
            .map(|(_, copies)| *copies)
            .collect();
        let on_stream = match (
            unacknowledged.len(),
            unacknowledged.iter().filter(|copies| **copies > 1).count(),
        ) {
            (0, _) => acknowledged_once.to_string(),
            (others, 0) => format!("{acknowledged_once} (+{others} unacknowledged)"),
            (others, repeated) => format!(
                "{acknowledged_once} (+{others} unacknowledged, {repeated} of them more than once)"
            ),
        };
        let dead_letters = if self.poison.is_empty() {
            self.observed.dead_letters.to_string()
        } else {
            format!(
                "{} (of {} poison)",
                self.observed.dead_letters,
                self.poison.len()
            )
        };
        vec![
            self.scenario.to_owned(),
            self.acknowledged.len().to_string(),
            on_stream,
            plus(stored.len(), acknowledged_stored),
            self.observed.counted.to_string(),
            dead_letters,
            self.client_failures.clone(),
        ]
    }

    fn problems(&self) -> Vec<String> {
        let copies = count(&self.observed.stream);
        let stored = count(&self.observed.stored);
        let mut problems = self.broken_promises.clone();
        let missing: Vec<&String> = self
            .acknowledged
            .iter()
            .filter(|id| !copies.contains_key(id.as_str()))
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{} acknowledged requests are not on the stream, e.g. {}",
                missing.len(),
                missing[0]
            ));
        }
        let duplicated = self
            .acknowledged
            .iter()
            .filter(|id| copies.get(id.as_str()).is_some_and(|copies| *copies > 1))
            .count();
        if duplicated > 0 {
            problems.push(format!(
                "{duplicated} acknowledged records are on the stream more than once"
            ));
        }
        let expected: BTreeSet<&str> = copies
            .keys()
            .copied()
            .filter(|id| !self.poison.contains(*id))
            .collect();
        let unstored: Vec<&&str> = expected
            .iter()
            .filter(|id| !stored.contains_key(**id))
            .collect();
        if !unstored.is_empty() {
            problems.push(format!(
                "{} good records on the stream are not stored, e.g. {}",
                unstored.len(),
                unstored[0]
            ));
        }
        let unexpected: Vec<&&str> = stored
            .keys()
            .filter(|id| !expected.contains(**id))
            .collect();
        if !unexpected.is_empty() {
            problems.push(format!(
                "{} stored items are no good record of the stream, e.g. {}",
                unexpected.len(),
                unexpected[0]
            ));
        }
        if stored.values().any(|copies| *copies > 1) {
            problems.push("an event is stored more than once".into());
        }
        if self.observed.counted != stored.len() as u64 {
            problems.push(format!(
                "the counters say {} but {} events are stored",
                self.observed.counted,
                stored.len()
            ));
        }
        if self.observed.dead_letters != self.poison.len() {
            problems.push(format!(
                "{} dead letters for {} poison records",
                self.observed.dead_letters,
                self.poison.len()
            ));
        }
        problems
    }
}

/// How often each id occurs.
fn count(ids: &[String]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for id in ids {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    counts
}

/// The sum of the sample programs' event counters in `redis` (read straight from it).
pub async fn counter_total(redis: &PrivateService) -> u64 {
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let mut total = 0;
    for program in PROGRAMS {
        let count: Option<u64> = redis::cmd("HGET")
            .arg(program_key(program))
            .arg(EVENT_COUNT_FIELD)
            .query_async(&mut connection)
            .await
            .expect("HGET");
        total += count.unwrap_or_default();
    }
    total
}
