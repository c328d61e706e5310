#!/usr/bin/env bash
# Benchmark (not a test): the service's resident memory under requests of mixed sizes.
# `examples/load.rs mixed` posts requests of 1 to 8 images at K from 1 to 16 (2 to 256 views,
# so forward passes of every size up to --max-batch-views) from CONCURRENCY client threads
# for SECONDS seconds on loopback, sampling the server's VmRSS every 0.5 s. Prints the
# memory after start-up, after warm-up (a sixth of the run), at the end, and the largest.
# tests/service.rs (resident_memory_stops_growing_after_the_first_round_of_shapes) asserts
# the same property on a smaller scale.
#
# SSLMEM_BIN runs another sslmem binary (e.g. an older build, to compare).
#
#   scripts/bench-memory.sh [SECONDS=60] [CONCURRENCY=32] [BUNDLE=models/fashion-mnist-canaries] [serve flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_=${1:-60} CONC=${2:-32} BUNDLE=${3:-models/fashion-mnist-canaries}
shift $(( $# > 3 ? 3 : $# ))
scripts/setup.sh --datasets >/dev/null 2>&1
cargo build --release --quiet --bin sslmem --example bench --example load
bin=${SSLMEM_BIN:-target/release/sslmem}
work=$(mktemp -d)
server=""
cleanup() { [[ -n $server ]] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
target/release/examples/bench pngs "$work/pngs" 200

$bin serve --bundle "$BUNDLE" --port 0 "$@" 2> "$work/serve.log" &
server=$!
for _ in $(seq 300); do grep -q "listening on" "$work/serve.log" && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/serve.log" | head -1)
[[ -n $url ]] || { cat "$work/serve.log" >&2; exit 1; }
start=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$server/status")
read -r reqs imgs errs warm end max < <(target/release/examples/load mixed "$url" "$work/pngs" "$CONC" "$SECONDS_" "$server")
printf 'machine: %s, %s cores; bundle %s; %d s of mixed requests (1-8 images, K 1-16) at concurrency %d\n' \
  "$(uname -m)" "$(nproc)" "$BUNDLE" "$SECONDS_" "$CONC"
printf 'requests %d (%d images, %d errors), %.1f images/s\n' "$reqs" "$imgs" "$errs" "$(awk -v i="$imgs" -v s="$SECONDS_" 'BEGIN{print i/s}')"
printf 'resident memory (MiB): after start-up %s, after warm-up %s, at the end %s, largest %s\n' "$start" "$warm" "$end" "$max"
awk -v w="$warm" -v e="$end" 'BEGIN { printf "end / after warm-up: %.3f\n", e / w }'
