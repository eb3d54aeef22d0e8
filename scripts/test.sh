#!/usr/bin/env bash
# `npm test`: set-up, the core's host tests, a release build, the OT type's differential tests,
# then the workerd suites, then the client SDK (built with tsc) against the same build.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh
cargo test --workspace --all-targets
cargo build -p switchboard-bench --bins
bash scripts/build.sh
bash scripts/build-ot.sh
# The OT type against ot-text-unicode and ot-fuzzer, then the workerd suites. A hung socket
# fails its test after 60 s instead of stalling CI.
node --test --test-concurrency=1 --test-timeout=60000 ot-js/test/*.test.mjs miniflare/*.test.mjs
# The client SDK: its types must compile, then its suites run against the built worker.
npm run build --workspace clients/js
# The demo page's types (esbuild bundles it without checking them).
npx tsc -p demo/tsconfig.json
node --test --test-concurrency=1 --test-timeout=60000 clients/js/test/*.test.mjs
# Real browser: Debian's Chromium (installed when missing) drives the demo page and the SDK.
bash scripts/setup-browser.sh
node --test --test-concurrency=1 --test-timeout=120000 browser/*.test.mjs
