#!/usr/bin/env bash
# Benchmark (not a test): images per second of one SimCLR epoch in `sslmem-train` against the
# same model, batch and augmentations in Python with PyTorch eager (scripts/bench_train.py),
# on the same machine in the same run. Target: at least as fast as the PyTorch script.
#
#   scripts/bench-train.sh [IMAGES=10240] [BATCH=256] [PYTORCH_WORKERS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES=${1:-10240} BATCH=${2:-256} WORKERS=${3:-2}
scripts/setup.sh --datasets --train >/dev/null 2>&1
home=${SSLMEM_HOME:-$HOME/.cache/sslmem}
LIBTORCH=$(cat "$home/torch/LIBTORCH"); export LIBTORCH
cargo build --release --quiet --features train --bin sslmem-train
rust=$(target/release/sslmem-train --device cpu bench-epoch --images "$IMAGES" --batch-size "$BATCH" 2>/dev/null)
py=$("$home/torch/2.13.0/bin/python" scripts/bench_train.py "$IMAGES" "$BATCH" "$WORKERS")
printf 'machine: %s, %s cores; one SimCLR epoch, %d Fashion-MNIST images, batch %d, resnet-mini-28x28x1\n' "$(uname -m)" "$(nproc)" "$IMAGES" "$BATCH"
printf 'sslmem-train (tch):            %8s images/s\n' "$rust"
printf 'PyTorch eager (%d workers):     %8s images/s\n' "$WORKERS" "$py"
awk -v a="$rust" -v b="$py" 'BEGIN { printf "ratio sslmem-train / PyTorch: %.2f\n", a / b }'
