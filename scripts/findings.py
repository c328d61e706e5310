"""The findings pages' tables and figures, built from the runs' own files (summary.json of
`sslmem audit`, sslmem.json and train-*.jsonl of a bundle, removal.json of `sslmem-train
removal`), never typed by hand. Each table is printed as Markdown after the command that made
it, so that every number in docs/reproduction.md sits next to the command that makes it again.

    python3 scripts/findings.py reproduce OUT > OUT/findings.md      # a scripts/reproduce.sh run
    python3 scripts/findings.py methods NAME=AUDIT[@BUNDLE] ...       # the method matrix
    python3 scripts/findings.py agreement [--figure PNG] NAME=AUDIT ... # agreement between methods
    python3 scripts/findings.py removal REMOVAL_DIR                   # the removal experiment
    python3 scripts/findings.py layermem AUDIT                        # LayerMem by layer

AUDIT is an `sslmem audit --out` folder; BUNDLE the bundle it audited (default: the path its
summary.json records). The tables need only the standard library; `agreement` needs SciPy
(Spearman's ρ, the hypergeometric tail) and, for --figure, matplotlib: both are in the venv
that `scripts/setup.sh --plots` makes (`~/.cache/sslmem/py/bin/python`).
"""

import argparse
import csv
import gzip
import json
import shlex
import sys
from pathlib import Path

# Where `scripts/setup.sh --datasets` and Debian put Fashion-MNIST (src/data/mod.rs).
FASHION_MNIST_DIRS = [Path("/usr/share/datasets/fashion-mnist")]


def fmt(x, digits=4):
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.2e}"
    return f"{x:.{digits}f}"


def interval(iv, digits=4):
    """`mean [low, high]` of a MeanInterval or an AUC with `auc_ci95`; – when absent."""
    if not iv:
        return "–"
    lo, hi = iv["ci95"]
    return f"{fmt(iv['mean'], digits)} [{fmt(lo, digits)}, {fmt(hi, digits)}]"


def command():
    """The command line that made this output, as a shell reads it."""
    return "python3 scripts/findings.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def header():
    return ["```sh", command(), "```", ""]


# --- one audit ----------------------------------------------------------------------------


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
    out += ["", "| set | against | mean difference | Welch t | p (greater) | p (less) | Mann–Whitney p (two-sided) |",
            "|---|---|---|---|---|---|---|"]
    for t in s["tests"]:
        w, mw = t.get("welch") or {}, t.get("mann_whitney") or {}
        out.append(f"| {t['a']} | {t['b']} | {fmt(t['mean_difference'])} | {fmt(w.get('t'), 3)} | "
                   f"{fmt((w.get('p') or {}).get('greater'))} | {fmt((w.get('p') or {}).get('less'))} | "
                   f"{fmt((mw.get('p') or {}).get('two_sided'))} |")
    out += ["", "| expected sign (docs/science.md#expected-signs) | result |", "|---|---|"]
    for c in s["checks"]:
        out.append(f"| {c['check']} | {'pass' if c['pass'] else 'FAIL'} |")
    if s.get("layer_mem"):
        out += [""] + layer_mem_table(s["layer_mem"])
    return out + [""]


def layer_mem_table(lm):
    rows = ["| layer | LayerMem (mean ratio score) [95%] | ΔLayerMem [95%] | n |", "|---|---|---|---|"]
    for layer in lm.get("layers", []):
        rows.append(f"| {layer['layer']} | {interval(layer.get('layer_mem'))} | "
                    f"{interval(layer.get('delta'))} | {(layer.get('layer_mem') or {}).get('n', '–')} |")
    return rows


def layer_mem_runs(specs, figure):
    """The LayerMem tables of `[NAME=]AUDIT` specs (a heading per audit when there are several)
    and, with `figure`, a PNG with one panel per audit: LayerMem by layer with its 95% interval."""
    named = [spec if "=" in spec else f"{Path(spec).name}={spec}" for spec in specs]
    runs = [(name, s) for name, _, _, s in parse_runs(named)]
    for name, s in runs:
        if not s.get("layer_mem"):
            sys.exit(f"findings.py: {name}'s summary.json has no layer_mem (a bundle without layers?)")
    lines = header()
    for name, s in runs:
        lm = s["layer_mem"]
        if len(runs) > 1:
            lines += [f"**{name}**", ""]
        lines += [f"{lm['images']} {lm['set']} images, {s['params']['pairs']} view pairs each; "
                  "95% intervals over the images.", ""] + layer_mem_table(lm) + [""]
    if figure:
        layer_mem_figure(runs, figure)
        lines.append(f"Figure: `{figure}`.")
    return lines


def layer_mem_figure(runs, figure):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(8, 2.6 * len(runs)), squeeze=False)
    for ax, (name, s) in zip(axes[:, 0], runs):
        layers = [x for x in s["layer_mem"]["layers"] if x.get("layer_mem")]
        mean = [x["layer_mem"]["mean"] for x in layers]
        lo = [m - x["layer_mem"]["ci95"][0] for m, x in zip(mean, layers)]
        hi = [x["layer_mem"]["ci95"][1] - m for m, x in zip(mean, layers)]
        ax.errorbar(range(len(layers)), mean, yerr=[lo, hi], marker="o", capsize=3)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_xticks(range(len(layers)), [x["layer"] for x in layers], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("LayerMem")
        ax.set_title(f"{name}: mean ratio score of {s['layer_mem']['images']} {s['layer_mem']['set']} images, 95% CI",
                     fontsize=9)
    fig.tight_layout()
    fig.savefig(figure, dpi=120)
    plt.close(fig)


# --- the method matrix --------------------------------------------------------------------


def parse_runs(specs):
    """NAME=AUDIT[@BUNDLE] → (name, audit folder, bundle folder)."""
    runs = []
    for spec in specs:
        name, sep, rest = spec.partition("=")
        if not sep or not name or not rest:
            sys.exit(f"findings.py: expected NAME=AUDIT[@BUNDLE], got {spec!r}")
        audit, _, bundle = rest.partition("@")
        audit = Path(audit)
        if not (audit / "summary.json").is_file():
            sys.exit(f"findings.py: {audit}/summary.json does not exist (run `sslmem audit --out {audit}` first)")
        summary = json.loads((audit / "summary.json").read_text())
        bundle = Path(bundle or summary["bundle"]["path"])
        runs.append((name, audit, bundle, summary))
    return runs


def check(summary, name):
    return next((c for c in summary["checks"] if c["check"] == name), None)


def membership(summary, members, non_members):
    return next((m for m in summary.get("membership", [])
                 if m["members"] == members and m["non_members"] == non_members), None)


def training(bundle):
    """(linear probe of f0, raw-pixel probe, projection effective rank of f0, training minutes
    of every encoder, method flags) from the bundle's manifest and training logs. A folder
    holding only the logs (a bundle whose manifest was lost) gives what they record: f0's
    probe (the evaluation line training appends) and the monitor's rank."""
    manifest_path = bundle / "sslmem.json"
    m = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    t = m.get("training") or {}
    runs = t.get("runs") or []
    f0 = next((r for r in runs if r.get("side") == "f" and r.get("index") == 0), {})
    rank = (((f0.get("spread") or {}).get("projection")) or {}).get("effective_rank")
    seconds, monitor_rank, logged_eval = 0.0, None, None
    for log in sorted(bundle.glob("train-*.jsonl")):
        for line in log.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a killed run
            if not isinstance(rec, dict):
                continue
            seconds += rec.get("seconds", 0.0)
            if log.name == "train-f0.jsonl" and rec.get("memorization"):
                monitor_rank = rec["memorization"].get("projection_spread", {}).get("effective_rank")
            if log.name == "train-f0.jsonl" and rec.get("eval"):
                logged_eval = rec["eval"]
    if not (m or seconds or logged_eval or monitor_rank):
        return {}
    method = (t.get("config") or {}).get("method") or {}
    return {
        "probe": (f0.get("eval") or logged_eval or {}).get("linear_probe_accuracy"),
        "raw": t.get("raw_pixel_linear_probe_accuracy"),
        "rank": rank if rank is not None else monitor_rank,
        "rank_source": "test images" if rank is not None else "monitor sample",
        "minutes": seconds / 60 if seconds else None,
        "method": method.get("method"),
        "command": t.get("command") or ("no training command in the manifest" if m else
                                        "no manifest kept: the command is beside its row in docs/reproduction.md"),
    }


def methods(specs):
    runs = parse_runs(specs)
    out = header()
    out += ["| method | candidate | shared | independent | extra | candidate > shared (Welch p) | "
            "independent < shared (p) | extra vs shared (p, two-sided) | canary AUC [95%] | "
            "candidate vs extra AUC [95%] | TPR at 1% FPR | Spearman(score, typicality), candidates | "
            "linear probe (raw pixels) | projection eff. rank | training (min) | checks |",
            "|" + "---|" * 16]
    for name, _, bundle, s in runs:
        sets = s["sets"]
        mean = lambda k: fmt((sets.get(k) or {}).get("mean"))  # noqa: E731
        p = lambda c: fmt((check(s, c) or {}).get("p"), 3)  # noqa: E731
        canary = membership(s, "canary-candidate", "canary-heldout")
        ce = membership(s, "candidate", "extra")
        tpr = next((x for x in (ce or {}).get("tpr_at_fpr", []) if x["target_fpr"] == 0.01), None)
        auc = lambda m: f"{fmt(m['auc'], 3)} [{fmt(m['auc_ci95'][0], 3)}, {fmt(m['auc_ci95'][1], 3)}]" if m else "–"  # noqa: E731
        rho = (s.get("typicality") or {}).get("candidate") or {}
        tr = training(bundle)
        passed = sum(c["pass"] for c in s["checks"])
        out.append(
            f"| {name} | {mean('candidate')} | {mean('shared')} | {mean('independent')} | {mean('extra')} | "
            f"{p('candidate above shared')} | {p('independent below shared')} | "
            f"{p('extra indistinguishable from shared')} | {auc(canary)} | {auc(ce)} | "
            f"{fmt((tpr or {}).get('tpr'), 3) if tpr and tpr.get('reachable') else '–'} | "
            f"{fmt(rho.get('rho'), 3)} | {fmt(tr.get('probe'), 3)} ({fmt(tr.get('raw'), 3)}) | "
            f"{fmt(tr.get('rank'), 1)}{' (monitor)' if tr.get('rank') is not None and tr['rank_source'] != 'test images' else ''} | "
            f"{fmt(tr.get('minutes'), 0)} | {passed}/{len(s['checks'])} |")
    out += ["", "Bundles and the commands that trained them:", ""]
    for name, audit, bundle, s in runs:
        tr = training(bundle)
        out.append(f"- {name}: `{bundle}` (audit `{audit}`, {s['params']['pairs']} view pairs): "
                   f"`{tr.get('command') or 'no bundle there: no manifest, no training logs'}`")
    return out


# --- agreement between methods ------------------------------------------------------------


def candidate_scores(audit):
    """{training index: score} of the candidates in the audit's scores.csv."""
    with open(audit / "scores.csv", newline="") as f:
        return {int(r["index"]): float(r["score"]) for r in csv.DictReader(f) if r["set"] == "candidate"}


def agreement(specs, figure, top_fraction, shown):
    from scipy import stats  # scripts/setup.sh --plots

    runs = parse_runs(specs)
    scores = {name: candidate_scores(audit) for name, audit, _, _ in runs}
    common = sorted(set.intersection(*(set(s) for s in scores.values())))
    n = len(common)
    if n == 0:
        sys.exit("findings.py: the audits share no scored candidate (were they made on the same split?)")
    k = max(1, round(top_fraction * n))
    top = {name: set(sorted(common, key=lambda i: -s[i])[:k]) for name, s in scores.items()}
    out = header()
    out += [f"{n} candidates scored by every method; top {round(100 * top_fraction)}% = {k} images. "
            f"Chance overlap of two top sets drawn at random: {fmt(k * k / n, 1)} images "
            "(hypergeometric mean); p is the chance of an overlap at least as large.", "",
            "| method A | method B | Spearman ρ | p | top overlap | chance | p (overlap ≥) |", "|---|---|---|---|---|---|---|"]
    names = list(scores)
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            x = [scores[names[a]][i] for i in common]
            y = [scores[names[b]][i] for i in common]
            rho = stats.spearmanr(x, y)
            overlap = len(top[names[a]] & top[names[b]])
            p_overlap = stats.hypergeom.sf(overlap - 1, n, k, k)
            out.append(f"| {names[a]} | {names[b]} | {fmt(float(rho.statistic), 3)} | {fmt(float(rho.pvalue), 3)} | "
                       f"{overlap} | {fmt(k * k / n, 1)} | {fmt(float(p_overlap), 3)} |")
    if figure:
        draw_agreement(figure, runs, scores, shown)
        out += ["", f"![the most memorized candidates of each method]({figure})"]
    return out


def read_idx(path):
    import numpy as np

    data = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * d: 8 + 4 * d], "big") for d in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def training_images(dataset):
    if dataset != "fashion-mnist":
        sys.exit(f"findings.py: the agreement figure reads fashion-mnist only, not {dataset}")
    for d in FASHION_MNIST_DIRS:
        for name in ["train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"]:
            if (d / name).is_file():
                return read_idx(d / name)
    sys.exit("findings.py: Fashion-MNIST not found (scripts/setup.sh --datasets)")


def draw_agreement(figure, runs, scores, shown):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dataset = runs[0][3]["params"].get("dataset") or "fashion-mnist"
    images = training_images(dataset)
    fig, axes = plt.subplots(len(runs), shown, figsize=(shown * 0.9, len(runs) * 1.2), squeeze=False)
    for row, (name, _, _, _) in enumerate(runs):
        order = sorted(scores[name], key=lambda i: -scores[name][i])[:shown]
        for col in range(shown):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(order):
                i = order[col]
                ax.imshow(images[i], cmap="gray_r")
                ax.set_title(f"#{i}", fontsize=6)
        axes[row][0].set_ylabel(name.replace(", ", ",\n"), fontsize=7)
    fig.suptitle("Most memorized candidates per method (rank 1 left; # = training index)", fontsize=8)
    fig.tight_layout()
    Path(figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=120)


# --- the removal experiment ---------------------------------------------------------------


def removal_section(path, title="## Removal experiment"):
    r = json.loads((path / "removal.json").read_text())
    out = [title, "", f"f retrained for {r['epochs']} epochs per run from `{r['bundle']}`, ranked by "
           f"`{r['scores']}`; random control: {r.get('random_control', 'uniform')}; figure `{path / 'removal.png'}`.", "",
           "| removed | k | linear probe (mean) | sd | seeds |", "|---|---|---|---|---|"]
    for row in r["table"]:
        out.append(f"| {row['strategy']} | {row['k']} | {fmt(row['linear_probe_mean'])} | "
                   f"{fmt(row['linear_probe_sd'])} | {row['seeds']} |")
    out += ["", "Whole test set, top − random probe accuracy, paired by seed:", "",
            "| k | per seed | mean [95% over seeds] | minimum detectable | t-test p (two-sided) |", "|---|---|---|---|---|"]
    for d in r["top_minus_random"]:
        iv = d.get("interval") or {}
        t = (iv.get("t_test") or d.get("paired_t") or {})
        out.append(f"| {d['k']} | {', '.join(fmt(x) for x in d['top_minus_random'])} | "
                   f"{interval(iv) if iv else fmt(d.get('mean'))} | {fmt(iv.get('minimum_detectable'))} | "
                   f"{fmt((t.get('p') or {}).get('two_sided'))} |")
    if r.get("subpopulations"):
        out += ["", f"Subpopulations ({r.get('subpopulation', '')}):", "",
                "| k | arm | test images per seed | probe accuracy, removed − kept [95% over seeds] | "
                "align_f, removed − kept [95% over seeds] | per seed: probe difference [95% over images] |",
                "|---|---|---|---|---|---|"]
        for sp in r["subpopulations"]:
            per_seed = "; ".join(
                f"{s['seed']}: {interval(s.get('probe_difference_over_images'), 3)}" for s in sp["seeds"])
            out.append(f"| {sp['k']} | {sp['arm']} | {', '.join(str(s['test_images']) for s in sp['seeds'])} | "
                       f"{interval(sp.get('probe_difference'))} | {interval(sp.get('align_f_difference'))} | "
                       f"{per_seed or '–'} |")
    return out + [""]


# --- a scripts/reproduce.sh run -----------------------------------------------------------


def reproduce(out):
    out = Path(out)
    lines = ["# Findings of scripts/reproduce.sh", "", f"Parameters: `{(out / 'parameters.txt').read_text().strip()}`", ""]
    for name, sub in [("Default Fashion-MNIST pair", "fashion-mnist"), ("MNIST pair", "mnist")]:
        if (out / sub / "summary.json").is_file():
            lines += audit_section(name, out / sub)
    if (out / "removal" / "removal.json").is_file():
        lines += removal_section(out / "removal", "## Removal experiment (default pair)")
    return lines


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("reproduce", help="the findings of a scripts/reproduce.sh run")
    r.add_argument("out")
    m = sub.add_parser("methods", help="the method matrix, one row per audited bundle")
    m.add_argument("runs", nargs="+", metavar="NAME=AUDIT[@BUNDLE]")
    a = sub.add_parser("agreement", help="Spearman's rho and top-set overlap of the candidates' scores")
    a.add_argument("runs", nargs="+", metavar="NAME=AUDIT")
    a.add_argument("--figure", help="PNG of the most memorized candidates of each method, side by side")
    a.add_argument("--top", type=float, default=0.1, help="the top fraction compared (default 0.1)")
    a.add_argument("--shown", type=int, default=10, help="images per method in the figure (default 10)")
    lm = sub.add_parser("layermem", help="LayerMem and ΔLayerMem of audits, layer by layer")
    lm.add_argument("runs", nargs="+", metavar="[NAME=]AUDIT")
    lm.add_argument("--figure", help="PNG of LayerMem by layer with its intervals, one panel per audit")
    rm = sub.add_parser("removal", help="the removal experiment's tables")
    rm.add_argument("dir")
    args = ap.parse_args(argv)
    if args.what == "reproduce":
        lines = reproduce(args.out)
    elif args.what == "methods":
        lines = methods(args.runs)
    elif args.what == "agreement":
        if len(args.runs) < 2:
            ap.error("agreement needs two audits or more")
        if not 0 < args.top <= 1:
            ap.error("--top is a fraction in (0, 1]")
        lines = agreement(args.runs, args.figure, args.top, args.shown)
    elif args.what == "layermem":
        lines = layer_mem_runs(args.runs, args.figure)
    else:
        lines = header() + removal_section(Path(args.dir))
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
