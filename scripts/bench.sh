#!/usr/bin/env bash
# `npm run bench` (quick profile) or `npm run bench -- --full`: builds the release worker and the
# load generator, runs every scenario against Switchboard, the plain-JS Durable Object peer, the
# Socket.IO peer and the native ceiling, once with Durable Object storage on disk (the default
# table) and once on tmpfs (the same files in RAM), and writes bench/results/<date>-<profile>-<storage>.json and the
# tables in BENCHMARKS.md.
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
# A peer killed mid-run leaves its tmpfs storage behind, in RAM: remove this run's whatever happens.
export BENCH_RUN=$$
trap 'rm -rf /dev/shm/switchboard-bench-"$BENCH_RUN"-*' EXIT
for storage in disk tmpfs; do
  out="bench/results/$(date -u +%Y-%m-%d)-$profile-$storage.json"
  SWITCHBOARD_ROOT="$PWD" ./target/release/switchboard-bench --profile "$profile" --storage "$storage" \
    --out "$out" --report BENCHMARKS.md >/dev/null
  echo "bench: wrote $out and BENCHMARKS.md ($storage)"
done
