#!/usr/bin/env bash
# `npm run bench:profile [-- <scenarios>]`: CPU profiles of workerd (V8 inspector) for Switchboard
# and the plain-JS Durable Object peer over the measured windows of the quick profile's connect,
# fanout and rooms scenarios (or the ones named), storage on disk. Writes
# bench/results/profiles/<target>-<storage>-<window>.{cpuprofile,txt}; never touches BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scenarios="${1:-connect,fanout,rooms}"
bash scripts/setup.sh
bash scripts/build.sh
cargo build --release -p switchboard-bench --bins
dir="$PWD/bench/results/profiles"
rm -rf "$dir"
BENCH_PROFILE="$dir" SWITCHBOARD_ROOT="$PWD" ./target/release/switchboard-bench --profile quick \
  --targets switchboard,js-do --scenarios "$scenarios" --out "$dir/run.json" >/dev/null
echo "bench:profile: wrote $dir (open a .cpuprofile in Chrome DevTools; the .txt files sum self time by bucket)"
