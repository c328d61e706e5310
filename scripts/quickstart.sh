#!/usr/bin/env bash
# The main job on the default model pair, with its own set-up: installs ONNX Runtime and
# the datasets, builds sslmem, and scores Fashion-MNIST test images.
#
# Until the trainer's pair exists in models/, the default pair is a *random* one that this
# script writes (seeded, untrained): the scores show the pipeline working, not memorization.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --datasets
cargo build --release --locked --bin sslmem
bin=target/release/sslmem
home=${SSLMEM_HOME:-$HOME/.cache/sslmem}
bundle=${SSLMEM_BUNDLE:-}
if [[ -z $bundle ]]; then
  bundle=$home/bundles/random-resnet-mini-28x28x1
  [[ -f $bundle/sslmem.json ]] || $bin bundle random --out "$bundle" --seed 0
fi
mkdir -p out
$bin score --bundle "$bundle" --pairs 10 --set-normalize range --out out/quickstart.jsonl "fashion-mnist:test[0:${N:-200}]"
python3 - <<'PY'
import json
rows = [json.loads(line) for line in open("out/quickstart.jsonl")]
rows.sort(key=lambda r: r["score"], reverse=True)
print(f"{len(rows)} images scored into out/quickstart.jsonl; highest scores:")
for r in rows[:5]:
    print(f"  {r['input']:<24} score {r['score']:+.4f}  95% CI [{r['ci95'][0]:+.4f}, {r['ci95'][1]:+.4f}]")
PY
