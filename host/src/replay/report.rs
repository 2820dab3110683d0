//! The replay report: outcome counts for the active version and the candidate, how many
//! events came out differently, and the first differences, in source order so two
//! replays of the same capture print the same report.

use std::fmt::Write as _;

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

use super::source::Skipped;
use crate::plugin_test::{comparable, differences};
use crate::views::OutcomeView;

/// Everything a replay found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    /// What was read.
    pub source: String,
    /// Events replayed.
    pub events: usize,
    /// Records of the source that are not events.
    pub skipped: Vec<Skipped>,
    /// The version running today: its plugins and outcome counts.
    pub active: SubjectReport,
    /// The version on trial.
    pub candidate: SubjectReport,
    /// Events whose outcome or outputs differ.
    pub differing: usize,
    /// The first differences, at most `--max-diffs`.
    pub diffs: Vec<EventDiff>,
}

/// One side of the comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectReport {
    /// The chain's plugins as `name@version` (12 hex digits).
    pub plugins: Vec<String>,
    /// Outcome counts.
    pub counts: OutcomeCounts,
}

/// How many events ended in each outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    /// Accepted, with one or more output events.
    pub accepted: usize,
    /// Accepted with no output.
    pub filtered: usize,
    /// Refused as bad input.
    pub rejected: usize,
    /// Asked to be retried.
    pub retry: usize,
    /// The plugin failed (trap, timeout, limit).
    pub failed: usize,
}

/// How one event came out differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventDiff {
    /// Where the event was read.
    pub at: String,
    /// The event id.
    pub id: String,
    /// Each difference, `path: expected <active>, got <candidate>`.
    pub differences: Vec<String>,
}

impl OutcomeCounts {
    fn count(&mut self, outcome: &OutcomeView) {
        match outcome {
            OutcomeView::Accepted { .. } => self.accepted += 1,
            OutcomeView::Filtered { .. } => self.filtered += 1,
            OutcomeView::Rejected { .. } => self.rejected += 1,
            OutcomeView::Retry { .. } => self.retry += 1,
            OutcomeView::Failed { .. } | OutcomeView::InvalidInput { .. } => self.failed += 1,
        }
    }
}

/// Builds a report while the outcomes come in, in source order.
pub struct ReportBuilder {
    report: ReplayReport,
    max_diffs: usize,
}

impl ReportBuilder {
    /// An empty report for `source`, keeping up to `max_diffs` differences.
    pub fn new(
        source: String,
        skipped: Vec<Skipped>,
        active: Vec<String>,
        candidate: Vec<String>,
        max_diffs: usize,
    ) -> Self {
        let subject = |plugins| SubjectReport {
            plugins,
            counts: OutcomeCounts::default(),
        };
        Self {
            report: ReplayReport {
                source,
                events: 0,
                skipped,
                active: subject(active),
                candidate: subject(candidate),
                differing: 0,
                diffs: Vec::new(),
            },
            max_diffs,
        }
    }

    /// Adds one event's outcomes under the two versions.
    pub fn add(
        &mut self,
        at: &str,
        id: &str,
        active: &OutcomeView,
        candidate: &OutcomeView,
    ) -> Result<()> {
        let report = &mut self.report;
        report.events += 1;
        report.active.counts.count(active);
        report.candidate.counts.count(candidate);
        let (active, candidate): (Value, Value) = (comparable(active)?, comparable(candidate)?);
        let found = differences(&active, &candidate);
        if !found.is_empty() {
            report.differing += 1;
            if report.diffs.len() < self.max_diffs {
                report.diffs.push(EventDiff {
                    at: at.to_owned(),
                    id: id.to_owned(),
                    differences: found,
                });
            }
        }
        Ok(())
    }

    /// The finished report.
    pub fn finish(self) -> ReplayReport {
        self.report
    }
}

impl ReplayReport {
    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "replay: {} events from {}", self.events, self.source);
        for skipped in &self.skipped {
            let _ = writeln!(text, "skipped {}: {}", skipped.at, skipped.reason);
        }
        let _ = writeln!(
            text,
            "{:<10} {:>8} {:>8} {:>8} {:>6} {:>6}  plugins",
            "", "accepted", "filtered", "rejected", "retry", "failed"
        );
        for (label, subject) in [("active", &self.active), ("candidate", &self.candidate)] {
            let counts = &subject.counts;
            let _ = writeln!(
                text,
                "{label:<10} {:>8} {:>8} {:>8} {:>6} {:>6}  {}",
                counts.accepted,
                counts.filtered,
                counts.rejected,
                counts.retry,
                counts.failed,
                subject.plugins.join(" > ")
            );
        }
        let _ = write!(
            text,
            "outputs differ for {} of {} events",
            self.differing, self.events
        );
        if self.diffs.is_empty() {
            text.push('\n');
            return text;
        }
        let _ = writeln!(
            text,
            "; the first {} (expected: active, got: candidate):",
            self.diffs.len()
        );
        for diff in &self.diffs {
            let _ = writeln!(text, "{} (event {}):", diff.at, diff.id);
            for line in &diff.differences {
                let _ = writeln!(text, "  {line}");
            }
        }
        text
    }
}
