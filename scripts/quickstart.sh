#!/usr/bin/env bash
# The main job on the default model pair, with its own set-up: installs ONNX Runtime and
# the datasets, builds sslmem, and scores Fashion-MNIST training images (candidate and
# shared ones, by the bundle's split) with the trained pair in models/fashion-mnist-simclr.
# SSLMEM_BUNDLE picks another bundle; without a trained pair a seeded random one is used.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --datasets
cargo build --release --locked --bin sslmem
bin=target/release/sslmem
home=${SSLMEM_HOME:-$HOME/.cache/sslmem}
bundle=${SSLMEM_BUNDLE:-}
if [[ -z $bundle && -f models/fashion-mnist-simclr/sslmem.json ]]; then
  bundle=models/fashion-mnist-simclr
elif [[ -z $bundle ]]; then
  bundle=$home/bundles/random-resnet-mini-28x28x1
  [[ -f $bundle/sslmem.json ]] || $bin bundle random --out "$bundle" --seed 0
fi
mkdir -p out
$bin score --bundle "$bundle" --pairs 10 --set-normalize range --out out/quickstart.jsonl "fashion-mnist:train[0:${N:-1000}]"
python3 - "$bundle" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open("out/quickstart.jsonl")]
manifest = json.load(open(f"{sys.argv[1]}/sslmem.json"))
split = manifest.get("split") or {}
def which(i):
    for name in ("candidate", "independent", "shared"):
        if any(a <= i < b for a, b in split.get(name, [])):
            return name
    return "unknown"
print(f"{len(rows)} images scored into out/quickstart.jsonl with {sys.argv[1]}")
if split:
    groups = {}
    for r in rows:
        groups.setdefault(which(int(r["input"].split("#")[1])), []).append(r["score"])
    print("mean SSLMem score by set (candidate: f saw them, g did not; independent: the reverse):")
    for name in ("candidate", "shared", "independent"):
        s = groups.get(name, [])
        if s:
            print(f"  {name:<12} n={len(s):<5} mean {statistics.mean(s):+.4f}")
rows.sort(key=lambda r: r["score"], reverse=True)
print("highest scores:")
for r in rows[:5]:
    print(f"  {r['input']:<26} score {r['score']:+.4f}  95% CI [{r['ci95'][0]:+.4f}, {r['ci95'][1]:+.4f}]")
PY
