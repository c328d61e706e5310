#!/usr/bin/env bash
# Copies what docs/reproduction.md's tables are made from, for each NAME, out of $RUNS (where
# scripts/findings-runs.sh trains and audits) into the checkout, small enough to commit:
#   docs/reproduction/audits/NAME/summary.json    the audit's summary
#   docs/reproduction/audits/NAME/scores.csv      its candidates' rows (findings.py agreement)
#   docs/reproduction/bundles/NAME/               the bundle's sslmem.json and train-*.jsonl,
#                                                 without its ONNX encoders (findings.py methods)
# so that `findings.py methods 'NAME=docs/reproduction/audits/NAME@docs/reproduction/bundles/NAME'`
# remakes a row from the repository alone.
#   scripts/keep-findings.sh vit-simclr vit-dino
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-$HOME/.cache/sslmem/runs}
[[ $# -gt 0 ]] || { echo "usage: scripts/keep-findings.sh NAME..." >&2; exit 2; }
for name in "$@"; do
  audit=$RUNS/audits/$name bundle=$RUNS/$name
  for f in "$audit/summary.json" "$audit/scores.csv" "$bundle/sslmem.json"; do
    [[ -f $f ]] || { echo "keep-findings: $f does not exist (train and audit $name first)" >&2; exit 1; }
  done
  mkdir -p "docs/reproduction/audits/$name" "docs/reproduction/bundles/$name"
  cp "$audit/summary.json" "docs/reproduction/audits/$name/"
  python3 - "$audit/scores.csv" "docs/reproduction/audits/$name/scores.csv" <<'PY'
import csv, sys
with open(sys.argv[1], newline="") as src, open(sys.argv[2], "w", newline="") as dst:
    rows = csv.DictReader(src)
    out = csv.DictWriter(dst, fieldnames=rows.fieldnames, lineterminator="\n")
    out.writeheader()
    out.writerows(r for r in rows if r["set"] == "candidate")
PY
  cp "$bundle/sslmem.json" "$bundle"/train-*.jsonl "docs/reproduction/bundles/$name/"
  echo "kept $name" >&2
done
