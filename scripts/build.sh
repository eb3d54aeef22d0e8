#!/usr/bin/env bash
# Release build of the Worker into build/. The *_BIN variables keep worker-build from trying to
# download its helpers: wasm-bindgen from cargo, wasm-opt and esbuild from npm.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
WASM_BINDGEN_BIN="$(command -v wasm-bindgen)"
export WASM_BINDGEN_BIN
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"
worker-build --release
ls -l build/*.wasm | awk '{ printf "build: %s is %d bytes\n", $NF, $5 }'
