//! Hostile test plugin: opens a TCP connection, so the component imports `wasi:sockets`.
//!
//! The host grants no network to plugins by default, so a component like this one must be
//! refused when it is loaded (or, if the imports are stubbed, fail to connect). `validate` and
//! `transform` both try to connect to 127.0.0.1:9 and reject the event when that fails.
//!
//! Config keys: none.

wit_bindgen::generate!({
    path: "../../../../wit",
    world: "plugin",
});

use std::net::TcpStream;

use exports::adtrack::plugin::handler::{Event, Guest, PluginError};

/// Where the plugin tries to connect: the discard port on the loopback interface.
const TARGET: &str = "127.0.0.1:9";

struct DeniedImport;

impl Guest for DeniedImport {
    fn validate(_event: Event) -> Result<(), PluginError> {
        connect()
    }

    fn transform(event: Event) -> Result<Vec<Event>, PluginError> {
        connect()?;
        Ok(vec![event])
    }
}

/// Connects to [`TARGET`], turning a refused or impossible connection into a rejection.
fn connect() -> Result<(), PluginError> {
    TcpStream::connect(TARGET)
        .map(drop)
        .map_err(|error| PluginError::Reject(format!("cannot connect to {TARGET}: {error}")))
}

export!(DeniedImport);
