#!/bin/sh
# Builds {{name}}.wasm: clang for wasm32-wasi with wasi-libc (Debian: clang lld wasi-libc
# libclang-rt-14-dev-wasm32), over the C bindings of wit/, made a component by wasm-tools.
# The bindings step runs when bindings/ is missing:
#   wit-bindgen c wit --world plugin --out-dir bindings   (cargo install wit-bindgen-cli@0.61)
set -eu
cd "$(dirname "$0")"
if [ ! -f bindings/plugin.h ]; then
  wit-bindgen c wit --world plugin --out-dir bindings
fi
mkdir -p build
clang --target=wasm32-wasi -O2 -Wall -Wextra -mexec-model=reactor -I bindings \
  -o build/{{name}}.core.wasm plugin.c bindings/plugin.c bindings/plugin_component_type.o
wasm-tools component new build/{{name}}.core.wasm -o {{name}}.wasm
echo "built {{name}}.wasm"
