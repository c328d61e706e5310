"""The "how much does g buy?" table of docs/reproduction.md (standard library only): every
estimator's membership evaluation from the `estimators` of audits' summary.json files.

    python3 scripts/how_much_g_buys.py NAME=AUDIT_DIR [NAME=AUDIT_DIR ...]

Each audit must have been run with `--reference` (else only sslmem and align-f are in it).
"""

import json
import sys
from pathlib import Path


def fmt(x):
    return "–" if x is None else f"{x:.3f}"


def tpr(m, i):
    t = m["tpr_at_fpr"][i] if i < len(m["tpr_at_fpr"]) else None
    if t is None:
        return "–"
    if not t["reachable"]:
        return f"not reachable ({t['non_members']} non-members)"
    return fmt(t["tpr"])


def main(args):
    print("| pair | members vs non-members | estimator | AUC [95% CI] | TPR at FPR 1% | TPR at FPR 0.1% |")
    print("|---|---|---|---|---|---|")
    for arg in args:
        name, _, path = arg.partition("=")
        s = json.loads((Path(path) / "summary.json").read_text())
        for e in s.get("estimators", []):
            print(
                f"| {name} | {e['members']} vs {e['non_members']} ({e['n_members']} / {e['n_non_members']}) "
                f"| {e['estimator']} | {fmt(e['auc'])} [{fmt(e['auc_ci95'][0])}, {fmt(e['auc_ci95'][1])}] "
                f"| {tpr(e, 0)} | {tpr(e, 1)} |"
            )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
