#!/bin/sh
# Builds {{name}}.wasm with componentize-py (`pip install componentize-py==0.25.1`), which
# generates the WIT bindings (`wit_world`) from wit/ as it builds; for an editor,
# `componentize-py -d wit -w plugin bindings .` writes them out. WASI is stubbed: CPython
# imports wasi:sockets, which the host refuses.
set -eu
cd "$(dirname "$0")"
PYTHONDONTWRITEBYTECODE=1 componentize-py -d wit -w plugin componentize --stub-wasi -p . app -o {{name}}.wasm
echo "built {{name}}.wasm"
