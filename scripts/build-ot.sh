#!/usr/bin/env bash
# The OT type of src/core/ot compiled on its own to wasm for Node (ot-js/), into target/ot-js/:
# the differential tests and ot-fuzzer run the server's transform through it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --target wasm32-unknown-unknown -p switchboard-ot-js
wasm-bindgen --target nodejs --out-dir target/ot-js target/wasm32-unknown-unknown/release/switchboard_ot_js.wasm
# The project's package.json says "type": "module"; wasm-bindgen's Node output is CommonJS.
echo '{"type": "commonjs"}' > target/ot-js/package.json
ls -l target/ot-js/*.wasm | awk '{ printf "build-ot: %s is %d bytes\n", $NF, $5 }'
