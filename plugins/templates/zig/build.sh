#!/bin/sh
# Builds {{name}}.wasm with Zig 0.17 (ZIG names the command; `pip install ziglang==0.17.1`
# gives `python -m ziglang`) over the C bindings of wit/, made a component by wasm-tools.
# The bindings step runs when bindings/ is missing:
#   wit-bindgen c wit --world plugin --out-dir bindings   (cargo install wit-bindgen-cli@0.61)
set -eu
cd "$(dirname "$0")"
ZIG=${ZIG:-zig}
if [ ! -f bindings/plugin.h ]; then
  wit-bindgen c wit --world plugin --out-dir bindings
fi
mkdir -p build
$ZIG translate-c -target wasm32-wasi -lc -I bindings bindings/plugin.h > build/bindings.zig
$ZIG build-exe -target wasm32-wasi -O ReleaseSmall -fno-entry -mexec-model=reactor -lc \
  --name {{name_snake}} -femit-bin=build/{{name}}.core.wasm --dep plugin -I bindings \
  -Mroot=plugin.zig bindings/plugin.c bindings/plugin_component_type.o -Mplugin=build/bindings.zig
wasm-tools component new build/{{name}}.core.wasm -o {{name}}.wasm
echo "built {{name}}.wasm"
