#!/usr/bin/env bash
# Benchmark (not a test): `sslmem score` at K pairs on N PNG images of Fashion-MNIST's test
# set with a bundle (default: the bundled default pair), against, in the same run:
#   - a bare ONNX Runtime forward pass of the same views through the same encoders (same
#     sessions and batch size): what the pipeline around the encoders costs;
#   - a PyTorch-eager SSLMem script on the same encoders (scripts/bench_score.py: torchvision
#     v2 views per image, one batched forward per image and encoder);
#   - the machine's single-precision matrix-multiply rate (an N x N MatMul in ONNX Runtime):
#     the forward passes' FLOP rate (the architecture's FLOPs per view, ArchSpec::forward_flops,
#     times views per second) as a fraction of it.
# Each timing is the best of REPEATS. The sslmem figure is the whole process (start-up, bundle
# load and hash checks, decoding, augmentation, batching, distances, output); the PyTorch
# figure leaves out its start-up (imports, loading the encoders).
#
#   scripts/bench-score.sh [N=1000] [K=10] [REPEATS=3] [BUNDLE=models/fashion-mnist-canaries]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000} K=${2:-10} REPEATS=${3:-3} BUNDLE=${4:-models/fashion-mnist-canaries}
BATCH=256 SGEMM_N=2048
scripts/setup.sh --datasets --train >/dev/null 2>&1
home=${SSLMEM_HOME:-$HOME/.cache/sslmem}
python="$home/torch/2.13.0/bin/python"
cargo build --release --quiet --bin sslmem --example bench
bin=target/release/sslmem bench=target/release/examples/bench
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
$bench pngs "$work/pngs" "$N"
encoders=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(len(m["f"]) + len(m["g"]))' "$BUNDLE/sslmem.json")
views=$((N * 2 * K))
flops=$($bench flops "$BUNDLE")

best() { sort -g | head -1; }
bestmax() { sort -g | tail -1; }
score_times=() fwd_times=() py_rates=() sgemm_rates=()
for _ in $(seq "$REPEATS"); do
  t0=$(date +%s.%N)
  $bin score --bundle "$BUNDLE" --pairs "$K" --batch-size "$BATCH" --out "$work/scores.jsonl" "$work/pngs" 2>/dev/null
  t1=$(date +%s.%N)
  score_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')")
  fwd_times+=("$($bench forward "$BUNDLE" "$views" "$BATCH")")
  py_rates+=("$("$python" scripts/bench_score.py "$BUNDLE" "$work/pngs" "$K")")
  sgemm_rates+=("$($bench sgemm "$SGEMM_N" 10)")
done
s=$(printf '%s\n' "${score_times[@]}" | best)
f=$(printf '%s\n' "${fwd_times[@]}" | best)
py=$(printf '%s\n' "${py_rates[@]}" | bestmax)
sgemm=$(printf '%s\n' "${sgemm_rates[@]}" | bestmax)
lines=$(wc -l < "$work/scores.jsonl")
[[ $lines == "$N" ]] || { echo "expected $N scores, got $lines" >&2; exit 1; }
printf 'machine: %s, %s cores (%s)\n' "$(uname -m)" "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
printf 'bundle: %s, %d encoders, %.2f MFLOP per view\n' "$BUNDLE" "$encoders" "$(awk -v f="$flops" 'BEGIN{print f/1e6}')"
printf 'images: %d PNG (28x28), K=%d, %d views per encoder, batch %d, best of %d\n' "$N" "$K" "$views" "$BATCH" "$REPEATS"
awk -v n="$N" -v s="$s" -v f="$f" -v py="$py" -v sg="$sgemm" -v fl="$flops" -v v="$views" -v e="$encoders" -v sn="$SGEMM_N" 'BEGIN {
  rate = fl * v * e / f / 1e9
  printf "sslmem score (whole process):     %8.3f s  %8.1f images/s\n", s, n / s
  printf "bare forward passes:              %8.3f s  %8.1f images/s  %6.1f GFLOP/s\n", f, n / f, rate
  printf "PyTorch eager (bench_score.py):   %8.3f s  %8.1f images/s\n", n / py, py
  printf "ONNX Runtime sgemm %dx%d:                              %6.1f GFLOP/s\n", sn, sn, sg
  printf "score/forward time: %.3f (%.1f%% outside the forward passes)\n", s / f, 100 * (s - f) / s
  printf "forward FLOP rate / sgemm rate: %.2f\n", rate / sg
  printf "sslmem / PyTorch eager: %.2fx\n", (n / s) / py
}'
