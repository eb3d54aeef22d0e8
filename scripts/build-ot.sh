#!/usr/bin/env bash
# The OT type of src/core/ot compiled on its own to wasm (ot-js/): for Node into target/ot-js/,
# where the differential tests and ot-fuzzer run the server's transform through it, and for
# browsers into target/ot-js/web/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --target wasm32-unknown-unknown -p switchboard-ot-js
wasm-bindgen --target nodejs --out-dir target/ot-js target/wasm32-unknown-unknown/release/switchboard_ot_js.wasm
# The project's package.json says "type": "module"; wasm-bindgen's Node output is CommonJS.
echo '{"type": "commonjs"}' > target/ot-js/package.json
# The same module for browsers (an ES module with an async init), for client SDKs to load.
wasm-bindgen --target web --out-dir target/ot-js/web target/wasm32-unknown-unknown/release/switchboard_ot_js.wasm
echo '{"type": "module"}' > target/ot-js/web/package.json
ls -l target/ot-js/*.wasm | awk '{ printf "build-ot: %s is %d bytes\n", $NF, $5 }'
