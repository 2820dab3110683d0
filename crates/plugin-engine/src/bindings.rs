//! Host bindings generated from the `adtrack:plugin` world.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../../wit",
    imports: {
        "adtrack:plugin/core-data": async,
        default: tracing,
    },
    exports: { default: async },
});

pub use adtrack::plugin::log::Level as LogLevel;
pub use adtrack::plugin::types::{Event as WitEvent, PluginError as WitPluginError};
