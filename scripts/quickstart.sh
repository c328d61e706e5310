#!/usr/bin/env bash
# The main job on the default model pair, with its own set-up: installs ONNX Runtime and the
# datasets, builds sslmem, and audits the trained pair in models/fashion-mnist-canaries on real
# Fashion-MNIST: every example of its split sets (candidate, shared, independent, extra) and of
# its planted canaries is scored, compared, evaluated as a membership test, and written up in
# out/quickstart/report.html.
# SSLMEM_BUNDLE picks another bundle (with a split); N=500 audits the first 500 of each set.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --datasets
cargo build --release --locked --bin sslmem
bin=target/release/sslmem
bundle=${SSLMEM_BUNDLE:-models/fashion-mnist-canaries}
out=out/quickstart
n=${N:-0}
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
    print(f"  {name:<19} n={v['count']:<5} mean {v['mean']:+.4f}  significantly > 0: {v['significant_positive_fraction']:.1%}")
print("checks (expected signs of the split sets; the canary positive control):")
for c in s["checks"]:
    if c.get("auc") is not None:
        detail = f"AUC {c['auc']:.3f} [{c['auc_ci95'][0]:.3f}, {c['auc_ci95'][1]:.3f}]"
    elif c.get("p") is not None:
        detail = f"t {c['t']:+.2f}, p {c['p']:.2g}"
    else:
        detail = f"mean {c['mean']:+.4f} vs candidate {c['candidate_mean']:+.4f}"
    print(f"  {'pass' if c['pass'] else 'FAIL'}  {c['check']:<48} {detail}")
print("membership evaluation (members: seen by f; non-members: seen by neither):")
for m in s.get("membership", []):
    def at(t):
        if not t["reachable"]:
            return f"not reachable with {t['non_members']} non-members"
        threshold = "none" if t["threshold"] is None else f"{t['threshold']:.4f}"
        return f"{t['tpr']:.3f} (FPR {t['fpr']:.4f}, threshold {threshold})"
    print(f"  {m['members']} vs {m['non_members']}: AUC {m['auc']:.3f} "
          f"[{m['auc_ci95'][0]:.3f}, {m['auc_ci95'][1]:.3f}], TPR at FPR 1%: {at(m['tpr_at_fpr'][0])}")
sp = s.get("typicality", {}).get("candidate")
if sp:
    print(f"Spearman(score, atypicality) among candidates: rho {sp['rho']:+.3f}, p {sp['p_two_sided']:.2g}")
rows = [json.loads(l) for l in open(f"{out}/scores.jsonl")]
rows = sorted((r for r in rows if r["set"] == "candidate"), key=lambda r: r["score"], reverse=True)
print("most memorized candidates:")
for r in rows[:5]:
    print(f"  {r['input']:<26} class {r['label']}  score {r['score']:+.4f}  95% CI [{r['ci95_low']:+.4f}, {r['ci95_high']:+.4f}]")
print(f"report: {out}/report.html")
PY
