"""Pieces of the result blocks (:mod:`experiments.readme`): reading a report, the cells
of a table, and the blocks of the studies (the strict held-out regions, the ablations,
the signal the map rules are binned by)."""

from __future__ import annotations

import json
import os

RESULTS = os.path.join(os.path.dirname(__file__), "results")
KEYS = ("acc_200km", "acc_750km", "acc_2500km")
TESTS = {
    "im2gps3k": "Im2GPS3k",
    "yfcc26k": "YFCC26k",
    "land": "land",
    "confirm": "YFCC26k confirmation",
    "validation": "validation (in-sample: the rules were chosen on it)",
}


def read_report(results_dir: str, name: str) -> dict:
    """``experiments/results/<name>/<name>.json`` under ``results_dir``."""
    with open(os.path.join(results_dir, name, f"{name}.json")) as f:
        return json.load(f)


def misses_of(row: dict) -> list[str]:
    """The ``acc_*`` keys where a paired difference is more than one SE below zero."""
    return [k for k in row if k.startswith("acc_") and row[k] < -row["se_" + k]]


def plus_minus(value: float, se: float) -> str:
    """``+x.x ± y.y`` points (two decimals where both round to 0.0)."""
    digits = 2 if abs(value) < 1 else 1
    return f"{value:+.{digits}f} ± {se:.{digits}f}"


def cells_of(row: dict, keys=KEYS) -> str:
    return " / ".join(f"{row[k]:.1f}" for k in keys)


def provenance(report: dict) -> str:
    machine = report["machine"].split(";")[0]
    return f"`{report['command']}`, {report['wall_s'] / 60:.1f} min on {machine}"


def budget_cell(row: dict) -> str:
    if not row.get("steps"):
        return "—"
    stop = "stopped" if row.get("stopped_early") else "cap"
    return f"{row['steps']:,} ({stop}; best {row['best_step']:,}), {row['train_s']:.0f} s"


def regions(results_dir: str = RESULTS) -> str:
    """The strict held-out-region study (``unseen.json``): each method's accuracy on the
    held-out regions and in distribution, and its share of held-out answers inside them."""
    report = read_report(results_dir, "unseen")
    rows = {(r["setting"], r["test"], r["method"]): r for r in report["rows"]}
    out = [
        f"{provenance(report)}. % within 750 / 2500 km and median error (km) on the "
        "held-out regions, the share of held-out answers inside the held-out region, and "
        "% within 750 / 2500 km in distribution:",
        "",
        "| setting | method | held-out (n) | median km | % inside | in distribution |",
        "|---|---|---|---|---|---|",
    ]
    two = ("acc_750km", "acc_2500km")
    for (setting, test, method), r in rows.items():
        if test != "held-out":
            continue
        inside = "—" if r.get("inside_pct") is None else f"{r['inside_pct']:.2g}"
        near = rows.get((setting, "in-distribution", method))
        out.append(
            f"| {setting} | {method} | {cells_of(r, two)} ({r['n']}) | {r['median_km']:,.0f} | "
            f"{inside} | {cells_of(near, two) if near else '—'} |"
        )
    return "\n".join(out) + "\n"


def ablations(results_dir: str = RESULTS) -> str:
    """Each ablation group (``ablations/**/ablations.json``): validation accuracy, the
    Im2GPS3k accuracy beside, and how each run stopped."""
    out = []
    for sub, label in (("", "setting B's base recipe at noise 0.1"),
                       ("loss", "the loss, on setting B's recipe"),
                       ("noise0.2", "noise 0.2")):  # fmt: skip
        path = os.path.join(results_dir, "ablations", sub, "ablations.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            report = json.load(f)
        out += [
            f"{label[0].upper() + label[1:]} ({provenance(report)}): % within 25 / 200 / "
            "750 / 2500 km on the validation rows that choose, mean of the four, and "
            "Im2GPS3k beside:",
            "",
            "| group | variant | validation | mean | Im2GPS3k | steps, seconds |",
            "|---|---|---|---|---|---|",
        ]
        four = ("acc_25km",) + KEYS
        for r in report["rows"]:
            val = [r[f"val_{k}"] for k in four]
            cells = [r["ablation"], r["setting"], " / ".join(f"{v:.1f}" for v in val)]
            cells += [f"{sum(val) / 4:.1f}", cells_of(r, four), budget_cell(r)]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def doubt(results_dir: str = RESULTS) -> str:
    """The signals that may bin the map rules (``doubt.json``), on validation rows."""
    report = read_report(results_dir, "doubt")
    out = [
        f"{provenance(report)}. On setting B's calibration queries (random and far "
        "validation rows): each candidate's 50% / 90% coverage where each half of the "
        "queries is scored by map rules chosen per bin on the other half, the miss (the run "
        "takes the fewest bins within 2 points of the least), and each signal's AUC of far "
        "against random rows and Spearman correlation with LocDiff's error:",
        "",
        "| noise | signal | bins | coverage, random | coverage, far | miss | AUC | Spearman |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        for c in run["choice"]:
            s = run["signals"].get(c["signal"]) if c["signal"] else None
            stats = ["—", "—"] if s is None else [f"{s['auc_far']:.2f}",
                                                  f"{s['spearman_error']:.2f}"]  # fmt: skip
            name = c["signal"] or "one rule"
            chosen = run["chosen"]
            mark = c["bins"] == chosen["bins"] and c["signal"] in (chosen["signal"], None)
            cells = [f"{run['noise']:g}", f"**{name}**" if mark else name, str(c["bins"])]
            cells += [
                f"{c[f'coverage_50_{p}']:.1f} / {c[f'coverage_90_{p}']:.1f}"
                for p in ("random", "far")
            ]
            out.append("| " + " | ".join(cells + [f"{c['miss']:.1f}", *stats]) + " |")
    out += ["", "In bold: each run's choice (`calibration.choose_map_signal`)."]
    return "\n".join(out) + "\n"
