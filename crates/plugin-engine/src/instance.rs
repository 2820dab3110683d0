//! One live plugin instance and guarded calls into it.

use std::sync::Arc;

use wasmtime::{Store, Trap, UpdateDeadline};

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

/// A plugin instance with its own store; used for one batch, dropped after a failure.
pub(crate) struct PluginInstance {
    store: Store<SandboxState>,
    plugin: Plugin,
}

impl PluginInstance {
    /// Instantiates `compiled` in a fresh sandbox; instantiation runs under the call limits.
    pub(crate) async fn new(
        engine: &PluginEngine,
        compiled: &CompiledPlugin,
        name: Arc<str>,
        settings: Arc<PluginSettings>,
        core_data: Arc<dyn CoreDataLookup>,
    ) -> Result<Self, CallFailure> {
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
        begin_call(&mut store)?;
        let wall_limit = store.data().wall_limit();
        let outcome =
            tokio::time::timeout(wall_limit, compiled.pre.instantiate_async(&mut store)).await;
        let plugin = settle(&store, outcome).map_err(|failure| match failure {
            CallFailure::Trap(reason) => CallFailure::Instantiate(reason),
            other => other,
        })?;
        Ok(Self { store, plugin })
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

/// Arms the limits for the next guest call: fresh fuel and a fresh deadline.
fn begin_call(store: &mut Store<SandboxState>) -> Result<(), CallFailure> {
    if let Some(fuel) = store.data().limits.fuel {
        store
            .set_fuel(fuel)
            .map_err(|error| CallFailure::Instantiate(format!("{error:#}")))?;
    }
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
