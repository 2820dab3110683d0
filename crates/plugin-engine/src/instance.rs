//! One live plugin instance and guarded calls into it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::{PoolConcurrencyLimitError, Store, Trap, UpdateDeadline};

use crate::bindings::{Plugin, WitEvent, WitPluginError};
use crate::config::PluginLimits;
use crate::core_data::CoreDataLookup;
use crate::engine::{CompiledPlugin, PluginEngine};
use crate::error::CallFailure;
use crate::event::Event;
use crate::registry::PluginSettings;
use crate::sandbox::SandboxState;

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

/// A plugin instance with its own store; used for one batch, dropped after a failure.
pub(crate) struct PluginInstance {
    store: Store<SandboxState>,
    plugin: Plugin,
    /// Its place in the instance pool, given back when the instance is dropped.
    _pool_place: OwnedSemaphorePermit,
}

impl PluginInstance {
    /// Instantiates `compiled` in a fresh sandbox once the pool has room (waiting for
    /// it at most the engine's `instance_wait`); instantiation runs under the call limits.
    pub(crate) async fn new(
        engine: &PluginEngine,
        compiled: &CompiledPlugin,
        name: Arc<str>,
        settings: Arc<PluginSettings>,
        core_data: Arc<dyn CoreDataLookup>,
    ) -> Result<Self, StartFailure> {
        let busy = StartFailure::Busy(engine.config().instance_wait);
        let Some(pool_place) = engine.reserve_instance().await else {
            return Err(busy);
        };
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
        begin_call(&mut store).map_err(StartFailure::Failed)?;
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
        let plugin = settle(&store, outcome).map_err(|failure| {
            StartFailure::Failed(match failure {
                CallFailure::Trap(reason) => CallFailure::Instantiate(reason),
                other => other,
            })
        })?;
        Ok(Self {
            store,
            plugin,
            _pool_place: pool_place,
        })
    }

    /// Calls the plugin's `validate`.
    pub(crate) async fn validate(
        &mut self,
        event: Event,
    ) -> Result<Result<(), WitPluginError>, CallFailure> {
        let event = WitEvent::from(event);
        let handler = self.plugin.adtrack_plugin_handler();
        begin_call(&mut self.store)?;
        let wall_limit = self.store.data().wall_limit();
        let outcome =
            tokio::time::timeout(wall_limit, handler.call_validate(&mut self.store, &event)).await;
        settle(&self.store, outcome)
    }

    /// Calls the plugin's `transform` and enforces the output limits.
    pub(crate) async fn transform(
        &mut self,
        event: Event,
    ) -> Result<Result<Vec<Event>, WitPluginError>, CallFailure> {
        let event = WitEvent::from(event);
        let handler = self.plugin.adtrack_plugin_handler();
        begin_call(&mut self.store)?;
        let wall_limit = self.store.data().wall_limit();
        let outcome =
            tokio::time::timeout(wall_limit, handler.call_transform(&mut self.store, &event)).await;
        let output = settle(&self.store, outcome)?;
        let limits = &self.store.data().limits;
        Ok(match output {
            Ok(events) => Ok(check_output(events, limits)?),
            Err(error) => Err(error),
        })
    }
}

/// Arms the limits for the next guest call: fresh fuel, a fresh deadline, and a cap on
/// the data the guest may hand the host (results and import arguments), checked
/// before that data is copied out of guest memory.
fn begin_call(store: &mut Store<SandboxState>) -> Result<(), CallFailure> {
    if let Some(fuel) = store.data().limits.fuel {
        store
            .set_fuel(fuel)
            .map_err(|error| CallFailure::Instantiate(format!("{error:#}")))?;
    }
    let budget = store.data().limits.host_copy_budget();
    store.set_hostcall_fuel(budget);
    store.data_mut().start_call();
    store.set_epoch_deadline(1);
    Ok(())
}

/// The result of a guest call that ran under [`begin_call`]'s limits, with any
/// failure explained as a [`CallFailure`].
fn settle<R>(
    store: &Store<SandboxState>,
    outcome: Result<wasmtime::Result<R>, tokio::time::error::Elapsed>,
) -> Result<R, CallFailure> {
    let state = store.data();
    match outcome {
        Err(_elapsed) => Err(CallFailure::Timeout(state.limits.timeout)),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(classify(error, state)),
    }
}

/// Explains why a guest call failed.
fn classify(error: wasmtime::Error, state: &SandboxState) -> CallFailure {
    let limits = &state.limits;
    if error.downcast_ref::<DeadlineExceeded>().is_some() {
        return CallFailure::Timeout(limits.timeout);
    }
    if state.limiter.exceeded {
        return CallFailure::MemoryLimit(state.limiter.limit());
    }
    if let Some(Trap::OutOfFuel) = error.downcast_ref::<Trap>() {
        return CallFailure::FuelExhausted(limits.fuel.unwrap_or_default());
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

/// Refuses `transform` output beyond the plugin's event-count and byte limits.
fn check_output(events: Vec<WitEvent>, limits: &PluginLimits) -> Result<Vec<Event>, CallFailure> {
    if events.len() > limits.max_output_events {
        return Err(CallFailure::OutputTooLarge(format!(
            "{} events, the limit is {}",
            events.len(),
            limits.max_output_events
        )));
    }
    let events: Vec<Event> = events.into_iter().map(Event::from).collect();
    let bytes: usize = events.iter().map(Event::approximate_size).sum();
    if bytes > limits.max_output_bytes {
        return Err(CallFailure::OutputTooLarge(format!(
            "{bytes} bytes, the limit is {}",
            limits.max_output_bytes
        )));
    }
    Ok(events)
}
