#!/bin/sh
# Builds {{name}}.wasm with componentize-js (`npm install` first), which reads the WIT
# bindings from wit/ as it builds. COMPONENTIZE_JS may name another install's cli.js.
# `http` and `fetch-event` are disabled: they import wasi:http, which the host refuses.
set -eu
cd "$(dirname "$0")"
node "${COMPONENTIZE_JS:-node_modules/@bytecodealliance/componentize-js/src/cli.js}" \
  plugin.js --wit wit --world-name plugin --disable http fetch-event --out {{name}}.wasm
echo "built {{name}}.wasm"
