//! Hostile test plugin: `validate` accepts every event and `transform` returns 100 000 copies of it.
//!
//! It checks that the host bounds what a plugin may return (events per call, memory) rather than
//! forwarding an unbounded fan-out.
//!
//! Config keys: none.

wit_bindgen::generate!({
    path: "../../../../wit",
    world: "plugin",
});

use exports::adtrack::plugin::handler::{Event, Guest, PluginError};

/// How many copies of the input event `transform` returns.
const COPIES: usize = 100_000;

struct HugeOutput;

impl Guest for HugeOutput {
    fn validate(_event: Event) -> Result<(), PluginError> {
        Ok(())
    }

    fn transform(event: Event) -> Result<Vec<Event>, PluginError> {
        Ok(std::iter::repeat_n(event, COPIES).collect())
    }
}

export!(HugeOutput);
