#!/usr/bin/env bash
# `npm run bench` (quick profile, a few minutes) or `npm run bench -- --full`: builds the release
# worker and the load generator, runs every scenario against Switchboard, the Socket.IO peer and
# the native ceiling, and writes bench/results/<date>.json and the tables in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
profile=quick
for arg in "$@"; do
  case "$arg" in
    --full) profile=full ;;
    --quick) profile=quick ;;
    *) echo "usage: npm run bench [-- --full]" >&2; exit 2 ;;
  esac
done
bash scripts/setup.sh
bash scripts/build.sh
cargo build --release -p switchboard-bench --bins
mkdir -p bench/results
out="bench/results/$(date -u +%Y-%m-%d)-$profile.json"
SWITCHBOARD_ROOT="$PWD" ./target/release/switchboard-bench --profile "$profile" --out "$out" --report BENCHMARKS.md >/dev/null
echo "bench: wrote $out and BENCHMARKS.md"
