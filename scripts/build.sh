#!/usr/bin/env bash
# Release build of the Worker into build/. The *_BIN variables keep worker-build from trying to
# download its helpers: wasm-bindgen from cargo, wasm-opt and esbuild from npm.
# Skipped when build/ was made from exactly the current inputs (the Rust sources, the manifests,
# the lockfiles and the worker-build version): `npm run dev` then starts in seconds instead of re-running wasm-opt.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

# The demo page (the Worker's static assets, demo/dist/): rebuilt every time, it takes a moment.
node scripts/build-demo.mjs

stamp=build/.inputs
hash_inputs() {
  { find src -type f -print0 | sort -z | xargs -0 sha256sum; sha256sum Cargo.toml Cargo.lock package-lock.json; worker-build --version; } | sha256sum | cut -d' ' -f1
}
inputs=$(hash_inputs)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ] && [ -f build/index.js ] && [ -f build/index_bg.wasm ]; then
  echo "build: build/ is up to date with src/ and the manifests; skipped"
  exit 0
fi

WASM_BINDGEN_BIN="$(command -v wasm-bindgen)"
export WASM_BINDGEN_BIN
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"
rm -f "$stamp"
worker-build --release
# A source edited while the build ran is not in this build: leave no stamp, so the next run builds.
if [ "$(hash_inputs)" = "$inputs" ]; then
  echo "$inputs" > "$stamp"
else
  echo "build: the inputs changed during the build; the next build will not be skipped" >&2
fi
ls -l build/*.wasm | awk '{ printf "build: %s is %d bytes\n", $NF, $5 }'
