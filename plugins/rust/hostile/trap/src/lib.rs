//! Hostile test plugin: `validate` panics and `transform` executes `unreachable`.
//!
//! Both end the call with a trap. It checks that the host fails that call only and keeps serving.
//!
//! Config keys: none.

wit_bindgen::generate!({
    path: "../../../../wit",
    world: "plugin",
});

use exports::adtrack::plugin::handler::{Event, Guest, PluginError};

struct Trap;

impl Guest for Trap {
    fn validate(_event: Event) -> Result<(), PluginError> {
        panic!("hostile plugin panicked on purpose");
    }

    fn transform(_event: Event) -> Result<Vec<Event>, PluginError> {
        // The `unreachable` instruction exists only on wasm; elsewhere (native `cargo test`) panic.
        #[cfg(target_arch = "wasm32")]
        core::arch::wasm32::unreachable();
        #[cfg(not(target_arch = "wasm32"))]
        unreachable!("hostile plugin reached unreachable on purpose");
    }
}

export!(Trap);
