#!/usr/bin/env python3
"""Plot the memorization monitor of one or more `sslmem-train pair` runs.

Reads the `train-<run>.jsonl` logs (or `.work/<run>/log.jsonl` of an unfinished run) and draws,
against the epoch, the AUC of "seen" against "unseen" alignment for the representation, the
projection and, when the run has canaries, the canaries' projection; plus the training loss.

    scripts/plot_monitor.py --out docs/reproduction/monitor.png LABEL=LOG.jsonl [LABEL=LOG.jsonl ...]

Needs matplotlib (`scripts/setup.sh --plots` installs it into the project's Python venv).
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    rows = []
    with open(path) as f:
        for line in f:
            try:
                v = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "epoch" in v:
                rows.append(v)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--title", default="Memorization while training: seen vs unseen alignment")
    ap.add_argument("logs", nargs="+", help="LABEL=PATH of a training log")
    a = ap.parse_args()
    fig, (ax, axl) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [2, 1]})
    styles = {
        "representation": ("-", "representation"),
        "projection": ("--", "projection"),
        "canaries_projection": (":", "canaries, projection"),
    }
    for k, spec in enumerate(a.logs):
        label, _, path = spec.partition("=")
        if not path:
            sys.exit(f"plot_monitor.py: expected LABEL=PATH, got {spec!r}")
        rows = read(path)
        color = f"C{k}"
        mon = [r for r in rows if "memorization" in r]
        for key, (ls, what) in styles.items():
            pts = [(r["epoch"], r["memorization"][key]["auc"]) for r in mon if key in r["memorization"]]
            if pts:
                ax.plot(*zip(*pts), ls, color=color, label=f"{label}: {what}")
        axl.plot([r["epoch"] for r in rows], [r["loss"] for r in rows], color=color, label=label)
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("AUC: seen aligned tighter than unseen")
    ax.set_title(a.title, fontsize=11)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    axl.set_xlabel("epoch")
    axl.set_ylabel("training loss")
    axl.set_title("loss", fontsize=11)
    axl.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)


if __name__ == "__main__":
    main()
