#!/usr/bin/env bash
# The long training runs behind docs/reproduction.md's method matrix (issue 24) and ViT rows
# (issue 20), one after another, each resumable: run it again (after a crash, or in a later
# session on a machine whose $RUNS survived) and every finished step is skipped, every
# unfinished one continues from its last checkpoint (`--resume`).
#
#   RUNS=~/.cache/sslmem/runs    where the bundles and audits go (outside the checkout)
#   STEPS="mnist vicreg ..."     which steps, in order (default: all, in the order below)
#   DEVICE=cpu THREADS=2         the trainer's --device and --threads
#   NICE=10                      niceness of the training processes
#
# Steps (the default's recipe: 1,000 Fashion-MNIST images, split 50/25/25, 50 pattern canaries
# repeated 4 times, 1,000 epochs, projection scored; each pair then audited with 10 view pairs):
#   mnist       SimCLR on MNIST digits (the second dataset), temperature 0.2
#   vicreg      VICReg
#   byol-bn     BYOL with batch norm in the projector
#   barlow-bn   Barlow Twins, lambda 0.02, batch norm in the projector
#   simsiam-bn  SimSiam with batch norm in the projector and predictor
#   removal     the removal experiment on the default bundle (models/fashion-mnist-canaries, the
#               pair that memorizes): its audit ranks the 250 candidates; the top 50 and 100,
#               and as many random ones with the same class histogram, are removed and f is
#               retrained with the bundle's recipe (1,000 epochs), seeds 0-2, plus k = 0: 15
#               encoders, into $RUNS/removal-default; SSLMEM_TRAIN_REMOVAL_EPOCHS=200 retrains
#               each for 200 epochs instead (docs/reproduction.md's run: 3.5 min each, idle)
#   vit-mae     MAE on vit-tiny-28x28x1 (AdamW 1e-3, weight decay 0.05, 10 warm-up epochs as
#               the ViT papers' 5%), 200 epochs, tokens scored
#   vit-simclr  SimCLR on vit-tiny-28x28x1, the same optimiser, 200 epochs, temperature 0.2
#   vit-dino    DINO on vit-tiny-28x28x1, the same optimiser at DINO's --lr 5e-4 (per 256
#               images, as every --lr), teacher temperature 0.02 (at DINO's 0.04 the outputs
#               drifted toward the uniform one, docs/reproduction.md), 2 local crops, BYOL's
#               augmentations (blur, solarize), 400 epochs, class token scored
# It runs for hours and bash reads a script while running it, so run it from a checkout you will
# not edit meanwhile (for example `git worktree add --detach ../runs-tree`).
# A step resumes only under the recipe it started with: after changing a step's flags here,
# delete its folder under $RUNS (the trainer refuses the old checkpoints, and `set -e` stops the
# queue there).
# Build the binaries first (scripts/reproduce.sh does the same):
#   cargo build --release --locked --features train --bin sslmem --bin sslmem-train
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-$HOME/.cache/sslmem/runs}
STEPS=${STEPS:-mnist vicreg byol-bn barlow-bn simsiam-bn vit-mae vit-simclr vit-dino removal}
DEVICE=${DEVICE:-cpu}
THREADS=${THREADS:-2}
NICE=${NICE:-10}
bin=${BIN:-target/release}
mkdir -p "$RUNS/audits"

common=(--subset 1000 --test-subset 1000 --candidate 0.25 --independent 0.25 --crop-scale-min 0.3
  --batch-size 64 --stem-stride 2 --canaries 50 --canary-kind patterns --canary-min-distance 0.2
  --canary-repeats 4 --monitor-every 50 --models 1 --resume)
vit=(--subset 1000 --test-subset 1000 --candidate 0.25 --independent 0.25 --crop-scale-min 0.3
  --batch-size 64 --canaries 50 --canary-kind patterns --canary-min-distance 0.2 --canary-repeats 4
  --monitor-every 25 --models 1 --resume --arch vit-tiny-28x28x1 --optimizer adamw --warmup-epochs 10
  --weight-decay 0.05)

train() { # name args...
  local name=$1
  shift
  echo "== $(date -u +%FT%TZ) train $name" >&2
  nice -n "$NICE" "$bin/sslmem-train" --device "$DEVICE" --threads "$THREADS" "$@" \
    >>"$RUNS/$name.log" 2>&1
}
audit() { # name
  local name=$1
  if [[ -f $RUNS/audits/$name/summary.json ]]; then
    return
  fi
  echo "== $(date -u +%FT%TZ) audit $name" >&2
  local extra=()
  [[ $name == mnist-canaries ]] && extra=(--grid-classes 3,6)
  nice -n "$NICE" "$bin/sslmem" audit --bundle "$RUNS/$name" --out "$RUNS/audits/$name" \
    --pairs 10 "${extra[@]}" >>"$RUNS/$name.log" 2>&1
}
pair() { # name args...
  local name=$1
  shift
  train "$name" pair "$@" --epochs 1000 --score-output projection --out "$RUNS/$name" "${common[@]}"
  audit "$name"
}

for step in $STEPS; do
  case $step in
    mnist) pair mnist-canaries --dataset mnist --temperature 0.2 ;;
    vicreg) pair vicreg --method vicreg ;;
    byol-bn) pair byol-bn --method byol --projector-bn ;;
    barlow-bn) pair barlow-bn --method barlow --barlow-lambda 0.02 --projector-bn ;;
    simsiam-bn) pair simsiam-bn --method simsiam --projector-bn ;;
    removal)
      if [[ ! -f $RUNS/audits/simclr-default/summary.json ]]; then
        nice -n "$NICE" "$bin/sslmem" audit --bundle models/fashion-mnist-canaries \
          --out "$RUNS/audits/simclr-default" --pairs 10 >>"$RUNS/removal-default.log" 2>&1
      fi
      train removal-default removal --bundle models/fashion-mnist-canaries \
        --scores "$RUNS/audits/simclr-default/scores.csv" --k 50,100 --seeds 0,1,2 \
        --out "$RUNS/removal-default"
      ;;
    vit-mae)
      train vit-mae pair --method mae --score-output tokens --lr 1e-3 --epochs 200 --out "$RUNS/vit-mae" \
        "${vit[@]}"
      audit vit-mae
      ;;
    vit-simclr)
      train vit-simclr pair --temperature 0.2 --score-output projection --lr 1e-3 \
        --epochs 200 --out "$RUNS/vit-simclr" "${vit[@]}"
      audit vit-simclr
      ;;
    vit-dino)
      train vit-dino pair --method dino --augment byol --score-output representation \
        --lr 5e-4 --dino-teacher-temp 0.02 --local-crops 2 --epochs 400 \
        --out "$RUNS/vit-dino" "${vit[@]}"
      audit vit-dino
      ;;
    *) echo "findings-runs: unknown step '$step'" >&2; exit 2 ;;
  esac
  echo "== $(date -u +%FT%TZ) done $step" >&2
done
