#!/usr/bin/env bash
# Benchmark (not a test): images per second of SimCLR training in `sslmem-train bench-epoch`
# against the same recipe in Python with PyTorch eager (scripts/bench_train.py), on the same
# machine in the same run, in two configurations:
#   - memorization: what `sslmem-train pair --subset SUBSET` trains as f (90% of the first
#     SUBSET images) for EPOCHS epochs, with pair's memorization monitor every 5 epochs and
#     its checkpoints; target: at least 1.5x PyTorch;
#   - full size: one epoch over the first IMAGES images; target: at least as fast as PyTorch.
# Images per second cover the whole epoch loop (monitor and checkpoints included).
# ARCH=vit-tiny-28x28x1 compares the trainer's ViT (AdamW) with the same ViT in PyTorch
# (STEM_STRIDE is then ignored: a ViT has no stem convolution).
#
#   [SUBSET=2000] [EPOCHS=10] [IMAGES=10240] [BATCH=256] [STEM_STRIDE=1] [WORKERS=2] \
#       [ARCH=resnet-mini-28x28x1] scripts/bench-train.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SUBSET=${SUBSET:-2000} EPOCHS=${EPOCHS:-10} IMAGES=${IMAGES:-10240} BATCH=${BATCH:-256}
STEM_STRIDE=${STEM_STRIDE:-1} WORKERS=${WORKERS:-2} ARCH=${ARCH:-resnet-mini-28x28x1}
stem=(--stem-stride "$STEM_STRIDE") shape="stem stride $STEM_STRIDE"
[[ $ARCH == vit-* ]] && stem=() shape="AdamW"
scripts/setup.sh --datasets --train >/dev/null 2>&1
home=${SSLMEM_HOME:-$HOME/.cache/sslmem}
LIBTORCH=$(cat "$home/torch/LIBTORCH"); export LIBTORCH
cargo build --release --quiet --features train --bin sslmem-train
python="$home/torch/2.13.0/bin/python"
breakdown=$(mktemp); trap 'rm -f "$breakdown"' EXIT

printf 'machine: %s, %s cores; SimCLR, batch %d, %s, %s\n' \
    "$(uname -m)" "$(nproc)" "$BATCH" "$ARCH" "$shape"
compare() { # label, sslmem-train bench-epoch args, bench_train.py args
    local rust py
    rust=$(RUST_LOG=warn target/release/sslmem-train --device cpu bench-epoch $2 \
        --batch-size "$BATCH" --arch "$ARCH" "${stem[@]}" 2>"$breakdown")
    py=$("$python" scripts/bench_train.py $3 --batch "$BATCH" --arch "$ARCH" "${stem[@]}" \
        --workers "$WORKERS")
    printf '%s\n' "$1"
    printf '  sslmem-train (tch):          %8s images/s\n' "$rust"
    printf '  PyTorch eager (%d workers):   %8s images/s\n' "$WORKERS" "$py"
    awk -v a="$rust" -v b="$py" 'BEGIN { printf "  ratio sslmem-train / PyTorch: %.2f\n", a / b }'
    printf '  sslmem-train: %s\n' "$(tail -n 1 "$breakdown")"
}
compare "memorization: pair --subset $SUBSET's f, $EPOCHS epochs, monitor every 5, checkpoints" \
    "--subset $SUBSET --epochs $EPOCHS" "--subset $SUBSET --epochs $EPOCHS --monitor-every 5"
compare "full size: one epoch over the first $IMAGES images" \
    "--images $IMAGES" "--images $IMAGES"
