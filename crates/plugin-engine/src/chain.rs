//! Running an ordered chain of plugins over events: validate, then transform, per plugin
//! (in one `batch-handler` call for many events, where the plugin exports it).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::bindings::{WitEvent, WitPluginError};
use crate::core_data::CoreDataLookup;
use crate::engine::{CompiledPlugin, PluginEngine};
use crate::error::CallFailure;
use crate::event::Event;
use crate::instance::{PluginInstance, StartFailure};
use crate::registry::RegisteredPlugin;
use crate::version::PluginVersion;

/// Most events handed to one `batch-handler` call; its limits are this many calls'.
const BATCH_CALL_EVENTS: usize = 64;

/// A plugin at one version, as recorded on outcomes and stream records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginRef {
    /// Plugin name.
    pub name: Arc<str>,
    /// The version that handled the event.
    pub version: PluginVersion,
}

/// What became of one input event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every plugin accepted it; these events go on (none: filtered, several: fanned out).
    Accepted(Vec<Event>),
    /// A plugin refused it as bad input.
    Rejected {
        /// The refusing plugin.
        by: PluginRef,
        /// The plugin's reason.
        reason: String,
    },
    /// A plugin asked for it to be retried later.
    Retry {
        /// The plugin.
        by: PluginRef,
        /// The plugin's reason.
        reason: String,
    },
    /// A plugin failed while handling it.
    Failed {
        /// The failing plugin.
        by: PluginRef,
        /// What went wrong.
        failure: CallFailure,
    },
}

/// The outcome of one input event and the plugins that handled it, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainOutcome {
    /// What became of the event.
    pub outcome: Outcome,
    /// Plugins that ran on the event (up to the one that stopped it).
    pub processed_by: Vec<PluginRef>,
}

/// An ordered chain of registered plugins (one side of a pipeline).
#[derive(Clone)]
pub struct PluginChain {
    engine: PluginEngine,
    steps: Vec<Arc<RegisteredPlugin>>,
    core_data: Arc<dyn CoreDataLookup>,
}

impl PluginChain {
    /// A chain running `steps` in order, answering `lookup` from `core_data`.
    pub fn new(
        engine: PluginEngine,
        steps: Vec<Arc<RegisteredPlugin>>,
        core_data: Arc<dyn CoreDataLookup>,
    ) -> Self {
        Self {
            engine,
            steps,
            core_data,
        }
    }

    /// The plugins of the chain, in order.
    pub fn steps(&self) -> &[Arc<RegisteredPlugin>] {
        &self.steps
    }

    /// Readies an instance of every plugin (kept warm for the first batch), so a
    /// plugin that cannot start is found before traffic arrives.
    pub async fn warm_up(&self) -> Result<(), Outcome> {
        for plugin in &self.steps {
            let mut step = Step::new(self, plugin);
            if let Err(failure) = step.instance().await {
                return Err(step.unserved(failure));
            }
        }
        Ok(())
    }

    /// Runs one event through the chain.
    pub async fn process_one(&self, event: Event) -> ChainOutcome {
        let mut outcomes = self.process(vec![event]).await;
        outcomes.pop().unwrap_or(ChainOutcome {
            outcome: Outcome::Accepted(Vec::new()),
            processed_by: Vec::new(),
        })
    }

    /// Runs a batch through the chain; one outcome per input event, in order.
    /// Each plugin's version is pinned for the whole batch and one instance serves
    /// the batch (a warm one when the plugin has one idle), so a swap during the
    /// batch takes effect on the next one.
    pub async fn process(&self, events: Vec<Event>) -> Vec<ChainOutcome> {
        let mut states: Vec<EventProgress> = events
            .into_iter()
            .map(|event| EventProgress {
                state: Ok(vec![event]),
                processed_by: Vec::new(),
            })
            .collect();
        for plugin in &self.steps {
            let mut step = Step::new(self, plugin);
            // Every event the live input events have become, with the input it came from.
            let mut inputs = Vec::with_capacity(states.len());
            for (index, progress) in states.iter_mut().enumerate() {
                let Ok(events) = &mut progress.state else {
                    continue;
                };
                if events.is_empty() {
                    continue; // filtered by an earlier plugin
                }
                progress.processed_by.push(step.plugin_ref.clone());
                inputs.extend(
                    std::mem::take(events)
                        .into_iter()
                        .map(|event| (index, event)),
                );
            }
            for (index, result) in step.run_all(inputs, states.len()).await {
                let progress = &mut states[index];
                let Ok(events) = &mut progress.state else {
                    continue; // stopped at an earlier event it became
                };
                match result {
                    // The first output of an input takes the place of its (emptied) list.
                    Ok(output) if events.is_empty() => *events = output,
                    Ok(output) => events.extend(output),
                    Err(stopped) => progress.state = Err(stopped),
                }
            }
        }
        states
            .into_iter()
            .map(|progress| ChainOutcome {
                outcome: match progress.state {
                    Ok(events) => Outcome::Accepted(events),
                    Err(stopped) => stopped,
                },
                processed_by: progress.processed_by,
            })
            .collect()
    }
}

/// Where one input event stands during a batch: the events it has become so far,
/// or the outcome that stopped it.
struct EventProgress {
    state: Result<Vec<Event>, Outcome>,
    processed_by: Vec<PluginRef>,
}

/// One plugin of the chain during one batch: its pinned version and lazy instance,
/// which goes back to the plugin's pool when the batch is done with it.
struct Step<'c> {
    chain: &'c PluginChain,
    plugin: &'c Arc<RegisteredPlugin>,
    compiled: Arc<CompiledPlugin>,
    plugin_ref: PluginRef,
    instance: Option<PluginInstance>,
    /// A `batch-handler` call failed during this batch: the rest of it goes through
    /// `handler`, one event at a time.
    per_event: bool,
}

impl<'c> Step<'c> {
    fn new(chain: &'c PluginChain, plugin: &'c Arc<RegisteredPlugin>) -> Self {
        let compiled = plugin.active();
        let plugin_ref = PluginRef {
            name: plugin.name().clone(),
            version: compiled.version(),
        };
        Self {
            chain,
            plugin,
            compiled,
            plugin_ref,
            instance: None,
            per_event: false,
        }
    }

    /// Runs every event through this plugin, in order, each tagged with the input event
    /// it came from (below `inputs`): through `batch-handler` when the plugin exports it,
    /// in calls of at most [`BATCH_CALL_EVENTS`], else one event at a time. Once an event
    /// is stopped, the later events of its input are not run (those already in the same
    /// `batch-handler` call are, and their results dropped). Each result is what
    /// [`Step::run`] would have given for the event.
    async fn run_all(
        &mut self,
        events: Vec<(usize, Event)>,
        inputs: usize,
    ) -> Vec<(usize, Result<Vec<Event>, Outcome>)> {
        let mut stopped = vec![false; inputs];
        let mut results = Vec::with_capacity(events.len());
        let mut rest = VecDeque::from(events);
        while !rest.is_empty() {
            if self.per_event || self.compiled.batch_handler.is_none() {
                for (input, event) in rest {
                    if stopped[input] {
                        continue;
                    }
                    let result = self.run(event).await;
                    stopped[input] = result.is_err();
                    results.push((input, result));
                }
                break;
            }
            let mut owners = Vec::with_capacity(BATCH_CALL_EVENTS.min(rest.len()));
            let mut chunk = Vec::with_capacity(owners.capacity());
            while chunk.len() < BATCH_CALL_EVENTS
                && let Some((input, event)) = rest.pop_front()
            {
                if !stopped[input] {
                    owners.push(input);
                    chunk.push(event);
                }
            }
            if chunk.is_empty() {
                continue; // every event left belongs to a stopped input
            }
            let answered = self.run_batch(&mut chunk).await;
            let done = answered.len();
            for (&input, result) in owners.iter().zip(answered) {
                if !stopped[input] {
                    stopped[input] = result.is_err();
                    results.push((input, result));
                }
            }
            // Events the call left unanswered run again, first.
            let unanswered = owners.into_iter().zip(chunk).skip(done);
            for unanswered in unanswered.rev() {
                rest.push_front(unanswered);
            }
        }
        results
    }

    /// One `batch-handler` call over `chunk`: the results of its first events, all of
    /// them unless the plugin reported itself broken (`fail`: the events after it run
    /// again on a fresh instance) or the instance could not start (the first event
    /// gets that outcome). When the call itself fails, nothing is answered and this
    /// step falls back to `handler`.
    async fn run_batch(&mut self, chunk: &mut [Event]) -> Vec<Result<Vec<Event>, Outcome>> {
        let started = Instant::now();
        let instance = match self.instance().await {
            Ok(instance) => instance,
            Err(failure) => return vec![Err(self.not_started(started, failure))],
        };
        let answers = match instance.handle_batch(chunk).await {
            Ok(answers) => answers,
            Err(failure) => {
                tracing::warn!(
                    plugin = %self.plugin_ref.name,
                    version = %self.plugin_ref.version.short(),
                    events = chunk.len(),
                    %failure,
                    "batch-handler call failed; handling its events one at a time through handler"
                );
                self.compiled.metrics.record_batch_fallback();
                self.instance = None;
                self.per_event = true;
                return Vec::new();
            }
        };
        let share = started.elapsed() / u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        let mut answered = Vec::with_capacity(answers.len());
        // A kept event is taken out of `chunk`: only those answered here are taken.
        for (answer, input) in answers.into_iter().zip(chunk) {
            let result = answer.take_result(input);
            self.compiled.metrics.record(share, outcome_label(&result));
            match result {
                Ok(events) => answered.push(Ok(events)),
                Err(error) => {
                    let broken = matches!(error, WitPluginError::Fail(_));
                    answered.push(Err(self.refusal(error)));
                    if broken {
                        // A broken instance never serves again, not even this batch.
                        self.instance = None;
                        break;
                    }
                }
            }
        }
        answered
    }

    /// Validates then transforms one event; `Err` holds the outcome that stops it.
    async fn run(&mut self, event: Event) -> Result<Vec<Event>, Outcome> {
        let started = Instant::now();
        let instance = match self.instance().await {
            Ok(instance) => instance,
            Err(failure) => return Err(self.not_started(started, failure)),
        };
        let result = validate_and_transform(instance, event).await;
        let label = match &result {
            Ok(result) => outcome_label(result),
            Err(failure) => failure.kind(),
        };
        self.compiled.metrics.record(started.elapsed(), label);
        match result {
            Ok(Ok(events)) => Ok(events),
            Ok(Err(error)) => {
                if matches!(error, WitPluginError::Fail(_)) {
                    // The plugin says it is broken: the next event gets a fresh instance.
                    self.instance = None;
                }
                Err(self.refusal(error))
            }
            Err(failure) => {
                // A failed instance may be in any state: the next event gets a fresh one.
                self.instance = None;
                Err(self.unserved(StartFailure::Failed(failure)))
            }
        }
    }

    /// The batch's instance of this plugin, taken on first use from the plugin's
    /// warm instances or started afresh, once the pool has a place for it.
    async fn instance(&mut self) -> Result<&mut PluginInstance, StartFailure> {
        if self.instance.is_none() {
            let engine = &self.chain.engine;
            let Some(place) = engine.reserve_instance().await else {
                return Err(StartFailure::Busy(engine.config().instance_wait));
            };
            let core_data = self.chain.core_data.clone();
            let instance = match self.plugin.pool().take(self.compiled.version()) {
                Some(mut warm) => {
                    warm.move_to(place);
                    warm.serve_for(core_data);
                    warm
                }
                None => {
                    PluginInstance::start(
                        engine,
                        &self.compiled,
                        self.plugin.name().clone(),
                        self.plugin.settings().clone(),
                        core_data,
                        place,
                    )
                    .await?
                }
            };
            self.instance = Some(instance);
        }
        self.instance
            .as_mut()
            .ok_or_else(|| StartFailure::Failed(CallFailure::Instantiate("no instance".into())))
    }

    /// Counts an event for which no instance could be started (waiting since
    /// `started`) and gives its outcome.
    fn not_started(&mut self, started: Instant, failure: StartFailure) -> Outcome {
        let label = match &failure {
            StartFailure::Busy(_) => "busy",
            StartFailure::Failed(failure) => failure.kind(),
        };
        self.compiled.metrics.record(started.elapsed(), label);
        self.unserved(failure)
    }

    /// The outcome of an event this plugin could not serve: retry later when the
    /// instance pool is in full use, failed otherwise.
    fn unserved(&self, failure: StartFailure) -> Outcome {
        let by = self.plugin_ref.clone();
        match failure {
            StartFailure::Busy(waited) => Outcome::Retry {
                by,
                reason: format!(
                    "no plugin instance became free within {waited:?}: the process is at capacity"
                ),
            },
            StartFailure::Failed(failure) => {
                tracing::warn!(plugin = %by.name, version = %by.version.short(), %failure, "plugin call failed");
                Outcome::Failed { by, failure }
            }
        }
    }

    fn refusal(&self, error: WitPluginError) -> Outcome {
        let by = self.plugin_ref.clone();
        match error {
            WitPluginError::Reject(reason) => Outcome::Rejected { by, reason },
            WitPluginError::Retry(reason) => Outcome::Retry { by, reason },
            WitPluginError::Fail(reason) => Outcome::Failed {
                by,
                failure: CallFailure::Reported(reason),
            },
        }
    }
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        if let Some(instance) = self.instance.take() {
            let active = self.plugin.active().version();
            self.plugin
                .pool()
                .give_back(&self.chain.engine, instance, active);
        }
    }
}

/// The metrics label of what a plugin answered for one event.
fn outcome_label<T>(result: &Result<T, WitPluginError>) -> &'static str {
    match result {
        Ok(_) => "accepted",
        Err(WitPluginError::Reject(_)) => "rejected",
        Err(WitPluginError::Retry(_)) => "retry",
        Err(WitPluginError::Fail(_)) => "failed",
    }
}

/// Validates then transforms one event on `instance`.
async fn validate_and_transform(
    instance: &mut PluginInstance,
    event: Event,
) -> Result<Result<Vec<Event>, WitPluginError>, CallFailure> {
    let event = WitEvent::from(event);
    if let Err(refusal) = instance.validate(&event).await? {
        return Ok(Err(refusal));
    }
    instance.transform(&event).await
}
