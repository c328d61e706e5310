#!/usr/bin/env bash
# Benchmark (not a test): the HTTP service under load at concurrency 1, 8 and 32
# (single-image requests to /v1/score at K pairs), against `sslmem score` on the same
# images and K in the same run. Prints throughput, p50/p99 latency and the ratio.
#
#   scripts/bench-serve.sh [REQUESTS=400] [K=10] [extra `sslmem serve` flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-400} K=${2:-10}
shift $(( $# > 2 ? 2 : $# ))
scripts/setup.sh --datasets >/dev/null 2>&1
cargo build --release --quiet --bin sslmem --example bench --example load
bin=target/release/sslmem
work=$(mktemp -d)
server=""
cleanup() { [[ -n $server ]] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
$bin bundle random --out "$work/bundle" --seed 1 2>/dev/null
target/release/examples/bench pngs "$work/pngs" "$REQUESTS"

t0=$(date +%s.%N)
$bin score --bundle "$work/bundle" --pairs "$K" --out "$work/cli.jsonl" "$work/pngs" 2>/dev/null
t1=$(date +%s.%N)
cli=$(awk -v a="$t0" -v b="$t1" -v n="$REQUESTS" 'BEGIN{printf "%.1f", n/(b-a)}')

$bin serve --bundle "$work/bundle" --port 0 --max-images 64 "$@" 2> "$work/serve.log" &
server=$!
for _ in $(seq 200); do grep -q "listening on" "$work/serve.log" && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/serve.log" | head -1)
[[ -n $url ]] || { cat "$work/serve.log" >&2; exit 1; }

printf 'machine: %s, %s cores; %d single-image requests, K=%d, 1 f + 1 g encoder\n' "$(uname -m)" "$(nproc)" "$REQUESTS" "$K"
printf 'sslmem score on the same %d images: %s images/s\n' "$REQUESTS" "$cli"
printf '%-11s %9s %9s %9s %7s %s\n' concurrency images/s p50_ms p99_ms errors ratio_to_cli
for c in 1 8 32; do
  read -r conc _ _ ips p50 p99 errs < <(target/release/examples/load "$url" "$work/pngs" "$c" "$REQUESTS" "$K")
  printf '%-11s %9s %9s %9s %7s %.2f\n' "$conc" "$ips" "$p50" "$p99" "$errs" "$(awk -v a="$ips" -v b="$cli" 'BEGIN{print a/b}')"
done
