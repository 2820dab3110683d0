//! One live plugin instance and guarded calls into it.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::error::Elapsed;
use wasmtime::component::Func;
use wasmtime::{PoolConcurrencyLimitError, Store, Trap, UpdateDeadline};

use crate::batch::{self, Answer};
use crate::bindings::{Plugin, WitEvent, WitPluginError};
use crate::config::{InstanceReuse, PluginLimits};
use crate::core_data::CoreDataLookup;
use crate::engine::{CompiledPlugin, PluginEngine};
use crate::error::CallFailure;
use crate::event::Event;
use crate::registry::PluginSettings;
use crate::sandbox::SandboxState;
use crate::version::PluginVersion;

/// Marks a call interrupted by its deadline.
#[derive(Debug, thiserror::Error)]
#[error("plugin call deadline exceeded")]
struct DeadlineExceeded;

/// Why no instance could be started.
#[derive(Debug)]
pub(crate) enum StartFailure {
    /// The instance pool stayed in full use for this long: retry later.
    Busy(Duration),
    /// The plugin failed to start.
    Failed(CallFailure),
}

/// What wasmtime reports when a lift would copy more than the store's hostcall fuel
/// allows (its error type is private, so the message is what identifies it).
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// The largest encoding buffer an instance keeps between `batch-handler` calls.
const KEPT_BATCH_INPUT_BYTES: usize = 1 << 20;

/// A plugin instance with its own store. It serves one batch at a time and, between
/// batches, may wait in its plugin's [`crate::instance_pool::InstancePool`]; after a
/// failure it is dropped.
pub(crate) struct PluginInstance {
    store: Store<SandboxState>,
    plugin: Plugin,
    /// The plugin's `batch-handler.handle`, when it exports one.
    batch_handler: Option<Func>,
    /// The encoded events of the last `batch-handler` call, kept for the next one.
    batch_input: Vec<u8>,
    version: PluginVersion,
    /// Guest calls served so far, counting a `batch-handler` call as the `validate`
    /// and `transform` calls it stands for.
    calls: u64,
    /// A guest call started and has not settled: if its future was dropped, the
    /// instance stopped at an unknown point and must never serve again.
    in_call: bool,
    /// Linear memory grown during instantiation (the baseline for recycling).
    memory_at_start: usize,
    /// Its place in the instance pool (serving or idle), given back when dropped.
    place: OwnedSemaphorePermit,
}

impl PluginInstance {
    /// Instantiates `compiled` in a fresh sandbox, in the pool place `place`;
    /// instantiation runs under the call limits.
    pub(crate) async fn start(
        engine: &PluginEngine,
        compiled: &CompiledPlugin,
        name: Arc<str>,
        settings: Arc<PluginSettings>,
        core_data: Arc<dyn CoreDataLookup>,
        place: OwnedSemaphorePermit,
    ) -> Result<Self, StartFailure> {
        let busy = StartFailure::Busy(engine.config().instance_wait);
        let state = SandboxState::new(
            name,
            compiled.version(),
            settings,
            core_data,
            engine.config().epoch_tick,
        );
        let mut store = Store::new(engine.wasmtime(), state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|context| {
            if context.data().deadline_passed() {
                Err(wasmtime::Error::new(DeadlineExceeded))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        begin_call(&mut store, 1, 1).map_err(StartFailure::Failed)?;
        let wall_limit = store.data().wall_limit();
        let outcome =
            tokio::time::timeout(wall_limit, compiled.pre.instantiate_async(&mut store)).await;
        // A component with more memories or tables per instance than the pool plans
        // for can still find one of them in full use: that passes too.
        if let Ok(Err(error)) = &outcome
            && error.downcast_ref::<PoolConcurrencyLimitError>().is_some()
        {
            return Err(busy);
        }
        let instance = settle(&store, outcome).map_err(|failure| {
            StartFailure::Failed(match failure {
                CallFailure::Trap(reason) => CallFailure::Instantiate(reason),
                other => other,
            })
        })?;
        let plugin = compiled
            .indices
            .load(&mut store, &instance)
            .map_err(|error| {
                StartFailure::Failed(CallFailure::Instantiate(format!("{error:#}")))
            })?;
        let batch_handler = match compiled.batch_handler {
            Some(index) => Some(instance.get_func(&mut store, index).ok_or_else(|| {
                StartFailure::Failed(CallFailure::Instantiate(
                    "the instance lacks the batch-handler export its component declares".into(),
                ))
            })?),
            None => None,
        };
        let memory_at_start = store.data().limiter.grown();
        Ok(Self {
            store,
            plugin,
            batch_handler,
            batch_input: Vec::new(),
            version: compiled.version(),
            calls: 0,
            in_call: false,
            memory_at_start,
            place,
        })
    }

    /// The plugin version this instance runs.
    pub(crate) fn version(&self) -> PluginVersion {
        self.version
    }

    /// Makes this instance answer core-data lookups from `core_data` (the chain it
    /// serves next).
    pub(crate) fn serve_for(&mut self, core_data: Arc<dyn CoreDataLookup>) {
        self.store.data_mut().set_core_data(core_data);
    }

    /// Moves the instance to another pool place (serving or idle).
    pub(crate) fn move_to(&mut self, place: OwnedSemaphorePermit) {
        self.place = place;
    }

    /// Whether the instance may serve another batch: no call was cut short, and it
    /// is under its call count, memory growth and stderr limits.
    pub(crate) fn may_serve_again(&self, reuse: &InstanceReuse) -> bool {
        let state = self.store.data();
        let grown = state.limiter.grown().saturating_sub(self.memory_at_start);
        !self.in_call
            && self.calls < reuse.max_calls
            && grown <= reuse.max_memory_growth_bytes
            && !state.stderr_nearly_full()
    }

    /// Calls the plugin's `batch-handler.handle` on `events`, under the limits of the
    /// `validate` and `transform` calls it stands for; one result per event, each within
    /// the output limits of one `transform`. Any failure fails the whole call: a trap, an
    /// exceeded limit, an error answer, a malformed answer, or an event's output over the
    /// limits.
    pub(crate) async fn handle_batch(
        &mut self,
        events: &[Event],
    ) -> Result<Vec<Answer>, CallFailure> {
        let Some(handle) = self.batch_handler else {
            return Err(CallFailure::Reported(
                "the plugin exports no batch-handler".into(),
            ));
        };
        // The answer is copied out before the call returns: the guest frees it then.
        let handle = handle
            .typed::<(&[u8],), (Result<Vec<u8>, String>,)>(&self.store)
            .map_err(|error| CallFailure::Reported(format!("{error:#}")))?;
        let count = u32::try_from(events.len()).unwrap_or(u32::MAX);
        batch::encode_events(events, &mut self.batch_input);
        begin_call(&mut self.store, count.saturating_mul(2), count)?;
        self.calls += 2 * u64::from(count);
        self.in_call = true;
        let deadline = self.store.data().wall_deadline();
        let call = handle.call_async(&mut self.store, (&self.batch_input,));
        let outcome = settled_by(deadline, call).await;
        self.in_call = false;
        if self.batch_input.capacity() > KEPT_BATCH_INPUT_BYTES {
            self.batch_input = Vec::new();
        }
        let (answer,) = settle(&self.store, outcome)?;
        let answer = answer.map_err(|error| {
            CallFailure::Reported(format!("batch-handler refused the batch: {error}"))
        })?;
        let limits = &self.store.data().limits;
        let answers = batch::decode_outcomes(&answer, events.len(), limits)?;
        answers
            .into_iter()
            .zip(events)
            .map(|(answer, input)| match answer {
                Answer::Returned(Ok(output)) => {
                    Ok(Answer::Returned(Ok(check_output(output, limits)?)))
                }
                Answer::Kept(set) => {
                    check_output_size(1, batch::kept_size(input, &set), limits)?;
                    Ok(Answer::Kept(set))
                }
                refused @ Answer::Returned(Err(_)) => Ok(refused),
            })
            .collect()
    }

    /// Calls the plugin's `validate`.
    pub(crate) async fn validate(
        &mut self,
        event: &WitEvent,
    ) -> Result<Result<(), WitPluginError>, CallFailure> {
        self.begin()?;
        let handler = self.plugin.adtrack_plugin_handler();
        let deadline = self.store.data().wall_deadline();
        let outcome = settled_by(deadline, handler.call_validate(&mut self.store, event)).await;
        self.in_call = false;
        settle(&self.store, outcome)
    }

    /// Calls the plugin's `transform` and enforces the output limits.
    pub(crate) async fn transform(
        &mut self,
        event: &WitEvent,
    ) -> Result<Result<Vec<Event>, WitPluginError>, CallFailure> {
        self.begin()?;
        let handler = self.plugin.adtrack_plugin_handler();
        let deadline = self.store.data().wall_deadline();
        let outcome = settled_by(deadline, handler.call_transform(&mut self.store, event)).await;
        self.in_call = false;
        let output = settle(&self.store, outcome)?;
        let limits = &self.store.data().limits;
        Ok(match output {
            Ok(events) => Ok(check_output(
                events.into_iter().map(Event::from).collect(),
                limits,
            )?),
            Err(error) => Err(error),
        })
    }
}

impl PluginInstance {
    /// Arms the limits for a guest call and marks the instance as in a call.
    fn begin(&mut self) -> Result<(), CallFailure> {
        begin_call(&mut self.store, 1, 1)?;
        self.calls += 1;
        self.in_call = true;
        Ok(())
    }
}

/// Arms the limits for the next guest call, which stands for `calls` `handler` calls
/// (`validate` and `transform` per event of a batch) with `outputs` `transform` outputs:
/// fresh fuel and a fresh deadline, each `calls` times one call's, and a cap, `outputs`
/// times one output's, on the data the guest may hand the host during the call (results
/// and import arguments), checked before that data is copied out of guest memory.
fn begin_call(
    store: &mut Store<SandboxState>,
    calls: u32,
    outputs: u32,
) -> Result<(), CallFailure> {
    if let Some(fuel) = store.data().limits.fuel {
        store
            .set_fuel(fuel.saturating_mul(u64::from(calls)))
            .map_err(|error| CallFailure::Instantiate(format!("{error:#}")))?;
    }
    let budget = store.data().limits.host_copy_budget();
    store.set_hostcall_fuel(budget.saturating_mul(outputs.max(1) as usize));
    store.data_mut().start_call(calls);
    store.set_epoch_deadline(1);
    Ok(())
}

/// Runs `call` until it settles, or gives up at `deadline`. The timer is armed only
/// when the first poll leaves the call waiting (on a host import or at an epoch
/// yield): most calls finish at once and never touch the runtime's timer wheel.
/// Each call still counts against the task's cooperative budget, as a timeout would:
/// a loop of calls that all finish at once yields to the other tasks now and then.
async fn settled_by<F: Future>(deadline: Instant, call: F) -> Result<F::Output, Elapsed> {
    tokio::task::consume_budget().await;
    let mut call = pin!(call);
    match poll_fn(|context| Poll::Ready(call.as_mut().poll(context))).await {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => tokio::time::timeout_at(deadline.into(), call).await,
    }
}

/// The result of a guest call that ran under [`begin_call`]'s limits, with any
/// failure explained as a [`CallFailure`].
fn settle<R>(
    store: &Store<SandboxState>,
    outcome: Result<wasmtime::Result<R>, Elapsed>,
) -> Result<R, CallFailure> {
    let state = store.data();
    match outcome {
        Err(_elapsed) => Err(CallFailure::Timeout(state.call_timeout())),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(classify(error, state)),
    }
}

/// Explains why a guest call failed.
fn classify(error: wasmtime::Error, state: &SandboxState) -> CallFailure {
    let limits = &state.limits;
    if error.downcast_ref::<DeadlineExceeded>().is_some() {
        return CallFailure::Timeout(state.call_timeout());
    }
    if state.limiter.exceeded {
        return CallFailure::MemoryLimit(state.limiter.limit());
    }
    if let Some(Trap::OutOfFuel) = error.downcast_ref::<Trap>() {
        let fuel = limits.fuel.unwrap_or_default();
        return CallFailure::FuelExhausted(fuel.saturating_mul(u64::from(state.handler_calls())));
    }
    if error
        .chain()
        .any(|cause| cause.to_string().contains(HOSTCALL_FUEL_EXHAUSTED))
    {
        return CallFailure::OutputTooLarge(format!(
            "more than {} bytes of host memory in one call (at most {} events and {} bytes); \
             refused before it was copied",
            limits.host_copy_budget(),
            limits.max_output_events,
            limits.max_output_bytes
        ));
    }
    let reason = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    };
    match state.stderr_tail() {
        Some(stderr) => CallFailure::Trap(format!("{reason}; stderr: {stderr}")),
        None => CallFailure::Trap(reason),
    }
}

/// Refuses one event's output beyond the plugin's event-count and byte limits.
fn check_output(events: Vec<Event>, limits: &PluginLimits) -> Result<Vec<Event>, CallFailure> {
    let bytes = events.iter().map(Event::approximate_size).sum();
    check_output_size(events.len(), bytes, limits)?;
    Ok(events)
}

/// Refuses one event's output of `count` events and `bytes` bytes beyond the plugin's
/// limits.
fn check_output_size(count: usize, bytes: usize, limits: &PluginLimits) -> Result<(), CallFailure> {
    if count > limits.max_output_events {
        return Err(CallFailure::OutputTooLarge(format!(
            "{count} events, the limit is {}",
            limits.max_output_events
        )));
    }
    if bytes > limits.max_output_bytes {
        return Err(CallFailure::OutputTooLarge(format!(
            "{bytes} bytes, the limit is {}",
            limits.max_output_bytes
        )));
    }
    Ok(())
}
