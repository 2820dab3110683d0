//! Test plugin: keeps state between calls, which the contract allows an instance to
//! have but never promises to keep. `transform` stamps each event with `instanceCalls`,
//! the number of `transform` calls this instance has served (1 for a fresh instance),
//! then, as the event's attributes ask: leaks `leakBytes` bytes of linear memory, looks
//! up `lookup` in core data (a lookup that never answers holds the call), traps on
//! `trap`, or reports itself broken (`fail`) on `fail`; it returns `copies` copies of the
//! event when asked to. Tests watch instances being
//! reused and replaced through it, one event per call and many (`batch-handler`).
//!
//! Config keys: none.

use std::sync::atomic::{AtomicU64, Ordering};

wit_bindgen::generate!({
    path: "../../../../wit",
    world: "batch-plugin",
});

use adtrack::plugin::core_data;
use exports::adtrack::plugin::handler::{Event, Guest, PluginError};

/// `transform` calls served by this instance.
static CALLS: AtomicU64 = AtomicU64::new(0);

struct Stateful;

impl Guest for Stateful {
    fn validate(_event: Event) -> Result<(), PluginError> {
        Ok(())
    }

    fn transform(mut event: Event) -> Result<Vec<Event>, PluginError> {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        let attribute = |wanted: &str| {
            event
                .attributes
                .iter()
                .find(|(name, _)| name == wanted)
                .map(|(_, value)| value.clone())
        };
        if let Some(bytes) = attribute("leakBytes").and_then(|value| value.parse().ok()) {
            Vec::leak(vec![1u8; bytes]);
        }
        if let Some(key) = attribute("lookup") {
            core_data::lookup(&key).map_err(PluginError::Retry)?;
        }
        if attribute("fail").is_some() {
            return Err(PluginError::Fail(format!(
                "asked to fail after {calls} calls"
            )));
        }
        if attribute("trap").is_some() {
            // The `unreachable` instruction exists only on wasm; elsewhere panic.
            #[cfg(target_arch = "wasm32")]
            core::arch::wasm32::unreachable();
            #[cfg(not(target_arch = "wasm32"))]
            unreachable!("asked to trap");
        }
        let copies = attribute("copies").and_then(|value| value.parse().ok());
        event
            .attributes
            .push(("instanceCalls".to_owned(), calls.to_string()));
        Ok(vec![event; copies.unwrap_or(1)])
    }
}

export!(Stateful);
plugin_batch::export_batch_handler!(Stateful);
