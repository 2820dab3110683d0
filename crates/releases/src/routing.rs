//! A side's chain in a release, with its candidate: a canary takes its share of events
//! (chosen by a hash of the event id, so a redelivered event takes the same path), a
//! shadow runs beside the active chain on its share and only has its outcome compared.
//! The live numbers feed the heartbeat and the automatic abort of a failing canary.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use plugin_engine::{ChainOutcome, Event, Outcome, PluginChain, PluginVersion};

use crate::document::{AbortPolicy, Candidate, CandidateMode, CandidateReport, ShadowSample};

/// Differing shadow outcomes kept for `plugin status`.
pub(crate) const SHADOW_SAMPLES: usize = 10;

/// The chain one side of a release runs: the active chain and, while a candidate is
/// tried, the chain with the candidate in place of the active version.
#[derive(Clone)]
pub struct ReleaseChain {
    active: PluginChain,
    trial: Option<Arc<Trial>>,
}

/// A candidate under trial and what has been seen of it in this process.
pub(crate) struct Trial {
    candidate: Candidate,
    active_version: PluginVersion,
    chain: PluginChain,
    active_calls: AtomicU64,
    active_failures: AtomicU64,
    candidate_calls: AtomicU64,
    candidate_failures: AtomicU64,
    candidate_timeouts: AtomicU64,
    mismatches: AtomicU64,
    failed_where_active_succeeded: AtomicU64,
    samples: Mutex<VecDeque<ShadowSample>>,
}

impl ReleaseChain {
    /// A chain without a candidate (a pipeline file's chain, or a release's).
    pub fn fixed(active: PluginChain) -> Self {
        Self {
            active,
            trial: None,
        }
    }

    /// The active chain tried against `candidate` (whose chain is `chain`).
    pub(crate) fn with_trial(
        active: PluginChain,
        candidate: Candidate,
        active_version: PluginVersion,
        chain: PluginChain,
    ) -> Self {
        let trial = Trial {
            candidate,
            active_version,
            chain,
            active_calls: AtomicU64::new(0),
            active_failures: AtomicU64::new(0),
            candidate_calls: AtomicU64::new(0),
            candidate_failures: AtomicU64::new(0),
            candidate_timeouts: AtomicU64::new(0),
            mismatches: AtomicU64::new(0),
            failed_where_active_succeeded: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::new()),
        };
        Self {
            active,
            trial: Some(Arc::new(trial)),
        }
    }

    /// The active chain.
    pub fn active(&self) -> &PluginChain {
        &self.active
    }

    /// Instantiates every plugin of the active and the candidate chain once.
    pub async fn warm_up(&self) -> Result<(), Outcome> {
        self.active.warm_up().await?;
        if let Some(trial) = &self.trial {
            trial.chain.warm_up().await?;
        }
        Ok(())
    }

    /// Runs one event (see [`ReleaseChain::process`]).
    pub async fn process_one(&self, event: Event) -> ChainOutcome {
        let mut outcomes = self.process(vec![event]).await;
        outcomes.pop().unwrap_or(ChainOutcome {
            outcome: Outcome::Accepted(Vec::new()),
            processed_by: Vec::new(),
        })
    }

    /// Runs a batch; one outcome per input event, in order. A canary's share runs on the
    /// candidate's chain; a shadow's share runs again on it in the background, and only
    /// the comparison is kept.
    pub async fn process(&self, events: Vec<Event>) -> Vec<ChainOutcome> {
        let Some(trial) = &self.trial else {
            return self.active.process(events).await;
        };
        match trial.candidate.mode {
            CandidateMode::Canary => self.canary(trial, events).await,
            CandidateMode::Shadow => self.shadow(trial, events).await,
        }
    }

    async fn canary(&self, trial: &Trial, events: Vec<Event>) -> Vec<ChainOutcome> {
        let percent = trial.candidate.percent;
        let (mut canary_events, mut active_events) = (Vec::new(), Vec::new());
        let mut to_canary = Vec::with_capacity(events.len());
        for event in events {
            let canary = takes_candidate_path(&event.id, percent);
            to_canary.push(canary);
            if canary {
                canary_events.push(event);
            } else {
                active_events.push(event);
            }
        }
        let (canary_outcomes, active_outcomes) = tokio::join!(
            trial.chain.process(canary_events),
            self.active.process(active_events)
        );
        trial.tally(&canary_outcomes, true);
        trial.tally(&active_outcomes, false);
        let (mut canary_outcomes, mut active_outcomes) =
            (canary_outcomes.into_iter(), active_outcomes.into_iter());
        to_canary
            .into_iter()
            .filter_map(|canary| {
                if canary {
                    canary_outcomes.next()
                } else {
                    active_outcomes.next()
                }
            })
            .collect()
    }

    async fn shadow(&self, trial: &Arc<Trial>, events: Vec<Event>) -> Vec<ChainOutcome> {
        let percent = trial.candidate.percent;
        let shadowed: Vec<(usize, Event)> = events
            .iter()
            .enumerate()
            .filter(|(_, event)| takes_candidate_path(&event.id, percent))
            .map(|(index, event)| (index, event.clone()))
            .collect();
        let outcomes = self.active.process(events).await;
        trial.tally(&outcomes, false);
        if !shadowed.is_empty() {
            let expected: Vec<ChainOutcome> = shadowed
                .iter()
                .map(|(index, _)| outcomes[*index].clone())
                .collect();
            let trial = trial.clone();
            tokio::spawn(async move {
                let (ids, inputs): (Vec<String>, Vec<Event>) = shadowed
                    .into_iter()
                    .map(|(_, event)| (event.id.clone(), event))
                    .unzip();
                let candidate = trial.chain.process(inputs).await;
                trial.compare(&ids, &expected, &candidate);
            });
        }
        outcomes
    }

    /// The candidate's live numbers in this process, for the heartbeat, with its side.
    pub fn report(&self, side: &str) -> Option<CandidateReport> {
        let trial = self.trial.as_ref()?;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Some(CandidateReport {
            side: side.to_owned(),
            plugin: trial.candidate.plugin.clone(),
            version: trial.candidate.pinned.version,
            mode: trial.candidate.mode,
            active_calls: read(&trial.active_calls),
            active_failures: read(&trial.active_failures),
            candidate_calls: read(&trial.candidate_calls),
            candidate_failures: read(&trial.candidate_failures),
            mismatches: read(&trial.mismatches),
            failed_where_active_succeeded: read(&trial.failed_where_active_succeeded),
            samples: trial
                .samples
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .cloned()
                .collect(),
        })
    }

    /// Why this process's canary should be aborted, if it should (see [`canary_verdict`]).
    pub fn canary_verdict(&self) -> Option<String> {
        let trial = self.trial.as_ref()?;
        if trial.candidate.mode != CandidateMode::Canary {
            return None;
        }
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let counts = TrialCounts {
            calls: read(&trial.candidate_calls),
            failures: read(&trial.candidate_failures),
            timeouts: read(&trial.candidate_timeouts),
            active_calls: read(&trial.active_calls),
            active_failures: read(&trial.active_failures),
        };
        canary_verdict(counts, trial.candidate.abort).map(|reason| {
            format!(
                "canary {} {} against {}: {reason}",
                trial.candidate.plugin,
                trial.candidate.pinned.version.short(),
                trial.active_version.short()
            )
        })
    }
}

/// What a process has seen of a canary and of the active version beside it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrialCounts {
    /// Calls the canary made.
    pub calls: u64,
    /// Of those, failed or asked for a retry.
    pub failures: u64,
    /// Of those, ran out of time.
    pub timeouts: u64,
    /// Calls the active version made.
    pub active_calls: u64,
    /// Of those, failed or asked for a retry.
    pub active_failures: u64,
}

/// Why a canary should be aborted under `policy`, once it has made enough calls: its
/// failure rate exceeds the active version's by more than the margin, or more than 1 % of
/// its calls ran into their time limit (its p99 call time reached the limit).
pub fn canary_verdict(counts: TrialCounts, policy: AbortPolicy) -> Option<String> {
    if counts.calls < policy.min_calls.max(1) {
        return None;
    }
    let rate = |failures: u64, calls: u64| {
        if calls == 0 {
            0.0
        } else {
            failures as f64 * 100.0 / calls as f64
        }
    };
    let candidate_rate = rate(counts.failures, counts.calls);
    let active_rate = rate(counts.active_failures, counts.active_calls);
    let margin = f64::from(policy.max_failure_margin_percent);
    if candidate_rate > active_rate + margin {
        return Some(format!(
            "failed {} of {} calls ({candidate_rate:.1} %) against {} of {} ({active_rate:.1} %), over the {margin} point margin",
            counts.failures, counts.calls, counts.active_failures, counts.active_calls
        ));
    }
    (counts.timeouts * 100 > counts.calls).then(|| {
        format!(
            "its p99 call time reached its time limit: {} of {} calls timed out",
            counts.timeouts, counts.calls
        )
    })
}

impl Trial {
    /// Counts the calls to the tried plugin among `outcomes` and its failures.
    fn tally(&self, outcomes: &[ChainOutcome], candidate: bool) {
        let plugin = self.candidate.plugin.as_str();
        let (mut calls, mut failures, mut timeouts) = (0, 0, 0);
        for outcome in outcomes {
            if !outcome
                .processed_by
                .iter()
                .any(|step| &*step.name == plugin)
            {
                continue;
            }
            calls += 1;
            match &outcome.outcome {
                Outcome::Failed { by, failure } if &*by.name == plugin => {
                    failures += 1;
                    timeouts += u64::from(failure.kind() == "timeout");
                }
                Outcome::Retry { by, .. } if &*by.name == plugin => failures += 1,
                _ => {}
            }
        }
        let (call_counter, failure_counter) = if candidate {
            (&self.candidate_calls, &self.candidate_failures)
        } else {
            (&self.active_calls, &self.active_failures)
        };
        call_counter.fetch_add(calls, Ordering::Relaxed);
        failure_counter.fetch_add(failures, Ordering::Relaxed);
        if candidate {
            self.candidate_timeouts
                .fetch_add(timeouts, Ordering::Relaxed);
        }
    }

    /// Compares a shadow's outcomes with the active ones, event by event.
    fn compare(&self, ids: &[String], active: &[ChainOutcome], candidate: &[ChainOutcome]) {
        self.tally(candidate, true);
        for ((id, active), candidate) in ids.iter().zip(active).zip(candidate) {
            let (expected, seen) = (summary(&active.outcome), summary(&candidate.outcome));
            if expected == seen {
                continue;
            }
            self.mismatches.fetch_add(1, Ordering::Relaxed);
            let candidate_failed = matches!(
                candidate.outcome,
                Outcome::Failed { .. } | Outcome::Retry { .. }
            );
            if candidate_failed && matches!(active.outcome, Outcome::Accepted(_)) {
                self.failed_where_active_succeeded
                    .fetch_add(1, Ordering::Relaxed);
            }
            let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
            if samples.len() == SHADOW_SAMPLES {
                samples.pop_front();
            }
            samples.push_back(ShadowSample {
                event_id: id.clone(),
                active: expected,
                candidate: seen,
            });
        }
    }
}

/// An outcome without the plugin versions that produced it: what a shadow must match.
fn summary(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Accepted(events) => format!("accepted {events:?}"),
        Outcome::Rejected { by, reason } => format!("rejected by {}: {reason}", by.name),
        Outcome::Retry { by, reason } => format!("retry from {}: {reason}", by.name),
        Outcome::Failed { by, failure } => format!("failed in {}: {}", by.name, failure.kind()),
    }
}

/// Whether event `id` takes the candidate's path at `percent`: FNV-1a of the id, so the
/// same event takes the same path in every process and on every redelivery.
pub fn takes_candidate_path(id: &str, percent: u8) -> bool {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    hash % 100 < u64::from(percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_percent_of_event_ids_take_the_canary_path_and_always_the_same_ones() {
        let ids: Vec<String> = (0..10_000).map(|n| format!("msg-{n}")).collect();
        let chosen = ids.iter().filter(|id| takes_candidate_path(id, 10)).count();
        assert!((800..=1_200).contains(&chosen), "{chosen} of 10 000");
        for id in &ids {
            assert_eq!(takes_candidate_path(id, 10), takes_candidate_path(id, 10));
        }
        assert!(ids.iter().all(|id| !takes_candidate_path(id, 0)));
        assert!(ids.iter().all(|id| takes_candidate_path(id, 100)));
    }

    fn counts(calls: u64, failures: u64, timeouts: u64, active: (u64, u64)) -> TrialCounts {
        TrialCounts {
            calls,
            failures,
            timeouts,
            active_calls: active.0,
            active_failures: active.1,
        }
    }

    #[test]
    fn a_canary_is_judged_only_after_its_minimum_calls() {
        let policy = AbortPolicy::default();
        assert_eq!(canary_verdict(counts(99, 99, 0, (100, 0)), policy), None);
        assert!(canary_verdict(counts(100, 99, 0, (100, 0)), policy).is_some());
    }

    #[test]
    fn a_canary_is_aborted_when_it_fails_more_than_the_margin_over_the_active_version() {
        let policy = AbortPolicy::default();
        // 10 % against 6 %: within 5 points.
        assert_eq!(canary_verdict(counts(100, 10, 0, (100, 6)), policy), None);
        // 12 % against 6 %: over.
        let reason = canary_verdict(counts(100, 12, 0, (100, 6)), policy).unwrap();
        assert!(reason.contains("failed 12 of 100 calls"), "{reason}");
    }

    #[test]
    fn a_canary_whose_p99_call_time_reaches_its_limit_is_aborted() {
        // 2 timeouts in 100 calls fail less than the margin, but more than 1 % of calls
        // reached the time limit.
        let policy = AbortPolicy {
            min_calls: 100,
            max_failure_margin_percent: 50,
        };
        let reason = canary_verdict(counts(100, 2, 2, (100, 0)), policy).unwrap();
        assert!(reason.contains("p99"), "{reason}");
        assert_eq!(canary_verdict(counts(100, 1, 1, (100, 0)), policy), None);
    }
}
