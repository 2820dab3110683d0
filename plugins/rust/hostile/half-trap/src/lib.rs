//! Hostile test plugin: a broken release candidate. `transform` traps on the events whose
//! client id (the `clientEventId` attribute a client's own `id` is kept in; else the
//! event id) ends in an even byte, about half of them, and passes the others through
//! unchanged, so a canary of it fails far more often than the version it replaces.
//!
//! Config keys: none.

wit_bindgen::generate!({
    path: "../../../../wit",
    world: "plugin",
});

use exports::adtrack::plugin::handler::{Event, Guest, PluginError};

struct HalfTrap;

impl Guest for HalfTrap {
    fn validate(_event: Event) -> Result<(), PluginError> {
        Ok(())
    }

    fn transform(event: Event) -> Result<Vec<Event>, PluginError> {
        let id = event
            .attributes
            .iter()
            .find(|(name, _)| name == "clientEventId")
            .map_or(event.id.as_str(), |(_, value)| value.as_str());
        if id.bytes().last().is_some_and(|byte| byte % 2 == 0) {
            // The `unreachable` instruction exists only on wasm; elsewhere panic.
            #[cfg(target_arch = "wasm32")]
            core::arch::wasm32::unreachable();
            #[cfg(not(target_arch = "wasm32"))]
            unreachable!("hostile plugin reached unreachable on purpose");
        }
        Ok(vec![event])
    }
}

export!(HalfTrap);
