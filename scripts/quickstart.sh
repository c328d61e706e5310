#!/usr/bin/env bash
# The main job on the default model pair, with its own set-up: installs ONNX Runtime and the
# datasets, builds sslmem, and audits the trained pair in models/fashion-mnist-simclr on real
# Fashion-MNIST: N examples (default 500) of each split set (candidate, shared, independent,
# extra) are scored, compared, and written up in out/quickstart/report.html.
# SSLMEM_BUNDLE picks another bundle (with a split); N=0 audits every example.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --datasets
cargo build --release --locked --bin sslmem
bin=target/release/sslmem
bundle=${SSLMEM_BUNDLE:-models/fashion-mnist-simclr}
out=out/quickstart
n=${N:-500}
limit=()
[[ $n != 0 ]] && limit=(--limit "$n")
rm -rf "$out"
$bin audit --bundle "$bundle" --out "$out" --pairs 10 "${limit[@]}"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
s = json.load(open(f"{out}/summary.json"))
print(f"\naudit of {s['bundle']['path']} ({s['params']['pairs']} view pairs per image) in {out}/:")
print("  report.html, scores.csv, scores.jsonl, summary.json, figures/")
print("mean SSLMem score by set (candidate: f saw them, g did not; independent: the reverse):")
for name, v in s["sets"].items():
    print(f"  {name:<12} n={v['count']:<6} mean {v['mean']:+.4f}  significantly > 0: {v['significant_positive_fraction']:.1%}")
print("expected signs (SPEC section 4):")
for c in s["checks"]:
    print(f"  {'pass' if c['pass'] else 'FAIL'}  {c['check']}")
rows = [json.loads(l) for l in open(f"{out}/scores.jsonl")]
rows = sorted((r for r in rows if r["set"] == "candidate"), key=lambda r: r["score"], reverse=True)
print("most memorized candidates:")
for r in rows[:5]:
    print(f"  {r['input']:<26} class {r['label']}  score {r['score']:+.4f}  95% CI [{r['ci95_low']:+.4f}, {r['ci95_high']:+.4f}]")
PY
