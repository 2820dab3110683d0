//! Hostile test plugin: `validate` and `transform` spin forever.
//!
//! It checks that the host's time limit (epoch deadline) interrupts a plugin that never returns.
//!
//! Config keys: none.

wit_bindgen::generate!({
    path: "../../../../wit",
    world: "plugin",
});

use exports::adtrack::plugin::handler::{Event, Guest, PluginError};

struct InfiniteLoop;

impl Guest for InfiniteLoop {
    fn validate(_event: Event) -> Result<(), PluginError> {
        spin()
    }

    fn transform(_event: Event) -> Result<Vec<Event>, PluginError> {
        spin()
    }
}

/// Loops forever; `black_box` keeps the optimizer from proving the loop useless.
fn spin() -> ! {
    let mut turns: u64 = 0;
    loop {
        turns = std::hint::black_box(turns.wrapping_add(1));
    }
}

export!(InfiniteLoop);
