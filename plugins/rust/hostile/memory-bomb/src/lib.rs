//! Hostile test plugin: `validate` and `transform` allocate memory until allocation fails.
//!
//! Each round allocates 1 MiB, writes every byte and keeps it, so the linear memory really grows.
//! When the host's memory limit refuses to grow memory, the allocation fails and the Rust
//! runtime aborts, which the host sees as a trap. It checks that the host's memory limit holds.
//!
//! Config keys: none.

wit_bindgen::generate!({
    path: "../../../../wit",
    world: "plugin",
});

use std::hint::black_box;

use exports::adtrack::plugin::handler::{Event, Guest, PluginError};

/// The size of one allocation.
const CHUNK_BYTES: usize = 1 << 20;

struct MemoryBomb;

impl Guest for MemoryBomb {
    fn validate(_event: Event) -> Result<(), PluginError> {
        hoard()
    }

    fn transform(_event: Event) -> Result<Vec<Event>, PluginError> {
        hoard()
    }
}

/// Allocates and touches 1 MiB chunks forever; only a failed allocation ends it.
fn hoard() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = Vec::with_capacity(CHUNK_BYTES);
        // Write every byte: freshly grown pages are zero, so zeroed allocations would not touch them.
        chunk.resize(CHUNK_BYTES, 0xA5_u8);
        chunks.push(black_box(chunk));
        black_box(&mut chunks);
    }
}

export!(MemoryBomb);
