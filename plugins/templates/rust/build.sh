#!/bin/sh
# Builds {{name}}.wasm. Needs Rust with the wasm32-wasip2 target
# (`rustup target add wasm32-wasip2`); wit-bindgen reads wit/ at compile time.
set -eu
cd "$(dirname "$0")"
cargo build --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{name_snake}}.wasm" {{name}}.wasm
echo "built {{name}}.wasm"
