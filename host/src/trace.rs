//! `pipeline run --trace`: an event through a chain one plugin at a time, printing for
//! each step the plugin, its input and outcome, the lines it logged and how long it
//! took.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use plugin_engine::{
    CoreDataLookup, Event, Outcome, PluginChain, PluginEngine, PluginRef, RegisteredPlugin,
};
use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

use crate::views::{EventView, OutcomeView, PluginView};

/// The target plugin log lines are emitted under.
const PLUGIN_LOG_TARGET: &str = "plugin_engine::sandbox";

/// Plugin log lines captured since the last [`PluginLogs::take`].
#[derive(Clone, Default)]
pub struct PluginLogs {
    lines: Arc<Mutex<Vec<String>>>,
}

impl PluginLogs {
    /// The lines captured so far, and a fresh start.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl<S: tracing::Subscriber> Layer<S> for PluginLogs {
    fn on_event(&self, event: &tracing::Event<'_>, _context: Context<'_, S>) {
        if event.metadata().target() != PLUGIN_LOG_TARGET {
            return;
        }
        let mut line = LogLine::default();
        event.record(&mut line);
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(format!("{} {}", event.metadata().level(), line.message));
    }
}

/// Collects a log event's message.
#[derive(Default)]
struct LogLine {
    message: String,
}

impl Visit for LogLine {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        }
    }
}

/// One plugin's part in a trace.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceStep {
    /// The plugin and its version.
    #[serde(flatten)]
    pub plugin: PluginView,
    /// The events it was given.
    pub input: Vec<EventView>,
    /// What it made of each, in order.
    pub outcomes: Vec<OutcomeView>,
    /// The lines it logged.
    pub logs: Vec<String>,
    /// Microseconds the step took (instantiation included).
    pub elapsed_us: u128,
}

/// Runs `event` through `chain` (whose plugins run on `engine`) one plugin at a time;
/// stops after the step that refuses or fails it, or that leaves nothing.
pub async fn trace(
    engine: &PluginEngine,
    chain: &PluginChain,
    core_data: Arc<dyn CoreDataLookup>,
    event: Event,
    logs: &PluginLogs,
) -> Vec<TraceStep> {
    let mut steps = Vec::new();
    let mut events = vec![event];
    for plugin in chain.steps() {
        if events.is_empty() {
            break;
        }
        let single = PluginChain::new(engine.clone(), vec![plugin.clone()], core_data.clone());
        logs.take();
        let started = Instant::now();
        let outcomes = single.process(events.clone()).await;
        let elapsed_us = started.elapsed().as_micros();
        let mut next = Vec::new();
        let mut stopped = false;
        for outcome in &outcomes {
            match &outcome.outcome {
                Outcome::Accepted(outputs) => next.extend(outputs.iter().cloned()),
                _ => stopped = true,
            }
        }
        steps.push(TraceStep {
            plugin: PluginView::from(&plugin_ref(plugin)),
            input: events.iter().map(EventView::from).collect(),
            outcomes: outcomes
                .iter()
                .map(|outcome| OutcomeView::new(outcome, true))
                .collect(),
            logs: logs.take(),
            elapsed_us,
        });
        if stopped {
            break;
        }
        events = next;
    }
    steps
}

fn plugin_ref(plugin: &RegisteredPlugin) -> PluginRef {
    PluginRef {
        name: plugin.name().clone(),
        version: plugin.active().version(),
    }
}
