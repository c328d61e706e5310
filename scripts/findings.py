"""Writes the findings of a scripts/reproduce.sh run as Markdown (standard library only):

    python3 scripts/findings.py OUT > OUT/findings.md
"""

import json
import sys
from pathlib import Path


def fmt(x, digits=4):
    if x is None:
        return "–"
    if isinstance(x, int):
        return str(x)
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.2e}"
    return f"{x:.{digits}f}"


def audit_section(name, path):
    s = json.loads((path / "summary.json").read_text())
    out = [f"## {name}", "", f"Bundle `{s['bundle']['path']}`, {s['params']['pairs']} view pairs per example, "
           f"limit per set: {s['params']['limit'] or 'none'}; report: `{path / 'report.html'}`.", ""]
    out += ["| set | n | mean score | sd | significant > 0 | Spearman(score, typicality) |", "|---|---|---|---|---|---|"]
    for set_name, v in s["sets"].items():
        sp = s.get("typicality", {}).get(set_name) or {}
        out.append(f"| {set_name} | {v['count']} | {fmt(v.get('mean'))} | {fmt(v.get('sd'))} | "
                   f"{fmt(v.get('significant_positive_fraction'), 3)} | "
                   f"{fmt(sp.get('rho'), 3)} (p {fmt(sp.get('p_two_sided'), 3)}) |")
    out += ["", "| vs shared | mean difference | Welch t | p (greater) | p (less) | Mann–Whitney p (two-sided) |",
            "|---|---|---|---|---|---|"]
    for t in s["tests"]:
        w, mw = t.get("welch") or {}, t.get("mann_whitney") or {}
        out.append(f"| {t['a']} | {fmt(t['mean_difference'])} | {fmt(w.get('t'), 3)} | "
                   f"{fmt((w.get('p') or {}).get('greater'))} | {fmt((w.get('p') or {}).get('less'))} | "
                   f"{fmt((mw.get('p') or {}).get('two_sided'))} |")
    out += ["", "| expected sign (docs/science.md#expected-signs) | result |", "|---|---|"]
    for c in s["checks"]:
        out.append(f"| {c['check']} | {'pass' if c['pass'] else 'FAIL'} |")
    return out + [""]


def removal_section(path):
    r = json.loads((path / "removal.json").read_text())
    out = ["## Removal experiment (MNIST pair)", "",
           f"f retrained for {r['epochs']} epochs per run; figure `{path / 'removal.png'}`.", "",
           "| removed | k | linear probe (mean) | sd | seeds |", "|---|---|---|---|---|"]
    for row in r["table"]:
        out.append(f"| {row['strategy']} | {row['k']} | {fmt(row['linear_probe_mean'])} | "
                   f"{fmt(row['linear_probe_sd'])} | {row['seeds']} |")
    out += ["", "| k | top − random (per seed) | mean | paired t p (less) |", "|---|---|---|---|"]
    for d in r["top_minus_random"]:
        t = d.get("paired_t") or {}
        out.append(f"| {d['k']} | {', '.join(fmt(x) for x in d['top_minus_random'])} | {fmt(d['mean'])} | "
                   f"{fmt((t.get('p') or {}).get('less'))} |")
    return out + [""]


def main(out):
    out = Path(out)
    lines = ["# Findings of scripts/reproduce.sh", "", f"Parameters: `{(out / 'parameters.txt').read_text().strip()}`", ""]
    for name, sub in [("Default Fashion-MNIST pair", "fashion-mnist"), ("MNIST pair", "mnist")]:
        if (out / sub / "summary.json").is_file():
            lines += audit_section(name, out / sub)
    if (out / "removal" / "removal.json").is_file():
        lines += removal_section(out / "removal")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
