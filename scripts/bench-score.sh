#!/usr/bin/env bash
# Benchmark (not a test): throughput of `sslmem score` at K pairs on N PNG images, against
# a bare ONNX Runtime forward pass over the same number of views through the same encoders,
# measured in the same run. Prints the overhead: the share of wall time spent outside the
# forward passes (decode, augmentation, batching, distances, start-up).
#
#   scripts/bench-score.sh [N=500] [K=10] [REPEATS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-500} K=${2:-10} REPEATS=${3:-3}
scripts/setup.sh --datasets >/dev/null
cargo build --release --quiet --bin sslmem --example bench
bin=target/release/sslmem bench=target/release/examples/bench
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
$bin bundle random --out "$work/bundle" --seed 1 2>/dev/null
$bench pngs "$work/pngs" "$N"
views=$((N * 2 * K))

best() { sort -g | head -1; }
score_times=() fwd_times=()
for _ in $(seq "$REPEATS"); do
  t0=$(date +%s.%N)
  $bin score --bundle "$work/bundle" --pairs "$K" --out "$work/scores.jsonl" "$work/pngs" 2>/dev/null
  t1=$(date +%s.%N)
  score_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')")
  fwd_times+=("$($bench forward "$work/bundle" "$views" 256)")
done
s=$(printf '%s\n' "${score_times[@]}" | best)
f=$(printf '%s\n' "${fwd_times[@]}" | best)
lines=$(wc -l < "$work/scores.jsonl")
[[ $lines == "$N" ]] || { echo "expected $N scores, got $lines" >&2; exit 1; }
printf 'machine: %s, %s cores\n' "$(uname -m)" "$(nproc)"
printf 'images: %d PNG (28x28), K=%d, views: %d, encoders: 1 f + 1 g, best of %d\n' "$N" "$K" "$views" "$REPEATS"
awk -v n="$N" -v s="$s" -v f="$f" 'BEGIN {
  printf "sslmem score (whole process):   %8.3f s  %8.1f images/s\n", s, n / s
  printf "bare forward passes (baseline): %8.3f s  %8.1f images/s\n", f, n / f
  printf "ratio score/forward: %.3f   overhead outside forward passes: %.1f%%\n", s / f, 100 * (s - f) / s
}'
