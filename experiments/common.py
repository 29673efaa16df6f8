"""What the experiment scripts share: their command line, scoring, tables and reports.

Every report names the command that made it, the machine, the code revision and the wall
time, and holds both a markdown table and the same figures as JSON. Runs are cached
under ``--cache`` by name (:func:`locdiff.methods.train_or_load`): a re-run reuses
finished trainings and resumes a LocDiff run cut off mid-way (delete the cache to start
over).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time

import numpy as np

from locdiff.data import datasets as data
from locdiff.data import splits
from locdiff.evaluation import metrics
from locdiff.io import files
from locdiff.io.provenance import git_revision, machine
from locdiff.methods.configs import BaselineConfig
from locdiff.training.early_stopping import validation_split

REVISION = git_revision()  # the code as this run loaded it
HEADLINE = ("acc_25km", "acc_200km", "acc_750km", "acc_2500km")


def parser(doc: str, name: str, profiles) -> argparse.ArgumentParser:
    """The flags every experiment takes: ``--profile``, ``--out``, ``--cache``, ``--seed``,
    ``--no-progress``."""
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--profile", choices=profiles, default="demo")
    p.add_argument("--out", default=f"experiments/results/{name}")
    p.add_argument("--cache", default="experiments/cache")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    return p


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def save_split(
    path: str, embeddings, latlon, index, *, encoder: str | None = None, far=None
) -> str:
    """The rows ``index`` as a dataset ``.npz`` (written once), naming its ``encoder``;
    ``far``: rows carried as its far-validation set (:data:`locdiff.data.splits.FAR_KEYS`)."""
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        extra = {} if encoder is None else {"encoder": np.array(encoder)}
        if far is not None and len(far):
            extra |= dict(zip(splits.FAR_KEYS, (embeddings[far], latlon[far]), strict=True))
        data.save_npz(path, embeddings[index], latlon[index], **extra)
    return path


def score(pred, truth, groups=None, *, seed: int = 0) -> dict:
    """:func:`metrics.summarize` plus bootstrap standard errors (``se_<key>``)."""
    result = metrics.summarize(pred, truth)
    se = metrics.bootstrap_se(pred, truth, groups, n=200, seed=seed)
    return {**result, **{f"se_{k}": v for k, v in se.items()}}


BUDGET = ("steps", "best_step", "epochs", "samples_seen", "train_s")


def against_parents(errors, parents: dict, *, groups=None, seed: int = 0) -> dict:
    """A hybrid's accuracy minus its better parent's at each threshold (the parent more
    accurate there), from errors ``[N]`` km and ``{parent: errors [N]}`` on the same
    points, with the paired bootstrap standard error (over ``groups`` when given):
    ``{acc_<t>km, se_acc_<t>km, parent_acc_<t>km, ok}``; ``ok``: within one standard
    error of the parent, or above, at every threshold."""
    diffs = {
        name: metrics.paired_difference(errors, theirs, groups=groups, seed=seed)
        for name, theirs in parents.items()
    }
    row = {}
    for t in metrics.THRESHOLDS_KM:
        k = f"acc_{t:g}km"
        worst = min(diffs, key=lambda p: diffs[p][k])  # the better parent at t
        row |= {k: diffs[worst][k], "se_" + k: diffs[worst]["se_" + k], "parent_" + k: worst}
    row["ok"] = all(row[k] >= -row["se_" + k] for k in row if k.startswith("acc_"))
    return row


def parents_table(rows: list[dict], columns: list[str]) -> str:
    """Markdown table of :func:`against_parents` rows, led by ``columns``."""
    keys = [f"acc_{t:g}km" for t in metrics.THRESHOLDS_KM]
    head = [*columns, "n", *(k.replace("acc_", "Δ% ≤ ") for k in keys), "ok"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r[c]:g}" if isinstance(r[c], float) else str(r[c]) for c in columns]
        cells += [str(r["n"])]
        cells += [f"{r[k]:+.1f} ± {r['se_' + k]:.1f} ({r['parent_' + k]})" for k in keys]
        lines.append("| " + " | ".join(cells + ["yes" if r["ok"] else "**no**"]) + " |")
    return "\n".join(lines)


def budget(meta: dict) -> dict:
    """What a method's training cost, from its ``method.json``: steps run, the step kept
    (best validation loss), epochs, samples seen and training seconds (cumulative)."""
    return {
        "steps": meta.get("steps", 0),
        "best_step": meta.get("best_step", 0),
        "epochs": round(meta.get("epochs", 0.0), 1),
        "samples_seen": meta.get("samples_seen", 0),
        "stopped_early": meta.get("stopped_early", False),
        "train_s": round(meta.get("train_seconds", 0.0), 1),
    }


def decoding(locator) -> dict:
    """``{"decoding": text}`` of a token decoder's locator (GeoToken: the decoding its run
    chose on validation, ``decoding.json``); ``{}`` for every other method."""
    model = getattr(getattr(locator, "config", None), "model", None)
    if not hasattr(model, "decode"):
        return {}
    if model.decode == "beam":
        return {"decoding": f"beam {model.beam_width}"}
    return {"decoding": f"{model.samples} samples at T {model.temperature:g}"}


def budget_table(rows: list[dict], columns: list[str]) -> str:
    """One line per trained run: ``columns``, then its :func:`budget` (duplicates of a
    run, e.g. its rows on several test sets, are listed once), and the decoding chosen
    on validation (:func:`decoding`) where a run has one."""
    decoded = any("decoding" in row for row in rows)
    head = columns + ["steps", "best step", "epochs", "samples seen", "stopped early", "train s"]
    head += ["decoding"] if decoded else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    seen = set()
    for row in rows:
        key = tuple(row[c] for c in columns)
        if key in seen or not row.get("steps"):
            continue
        seen.add(key)
        cells = [str(v) for v in key] + [str(row[k]) for k in ("steps", "best_step", "epochs")]
        cells += [f"{row['samples_seen']:,}", "yes" if row["stopped_early"] else "no (cap)"]
        cells += [f"{row['train_s']:.0f}"] + ([row.get("decoding", "—")] if decoded else [])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# What a LocDiff run chose on its validation split (``calibration.json``): key, column.
CHOICES = {
    "guidance": "guidance",
    "map_power": "map power",
    "map_tail": "tail",
    "map_by_bin": "power/tail(@softmax T) by bin (inner edges)",
    "snap_km": "snap km",
    "snap_max_doubt_km": "snap if doubt ≤ (km)",
}


def locdiff_choices(locator) -> dict:
    """:data:`CHOICES` of a LocDiff locator: guidance, the map rule's power and tail (for
    all inputs, and by bin of its signal where it chose so, with the bins' edges, or the
    two rules of a mixture by novelty), the
    radius its modes snap within and the largest doubt snapped (None: all)."""
    chosen = locator.geolocator.calibration
    out = {key: chosen.get(key) for key in CHOICES}
    bins = locator.geolocator.map_bins
    if bins:
        rules = "; ".join(
            f"{r['map_power']:g}/{r['map_tail']:g}"
            + (f"@{r['map_tail_temperature']:g}" if r.get("map_tail_temperature") else "")
            for r in bins["rules"]
        )
        if bins["signal"] == "novelty":  # two rules mixed by P(far) (locdiff.infer.novelty)
            sharpness = bins["novelty"]["sharpness"]
            fit = ", refitted jointly" if bins.get("fit") == "joint" else ""
            out["map_by_bin"] = f"{rules} (random; far: mixed by novelty, s = {sharpness:g}{fit})"
            return out
        if bins["signal"] == "spread_km2":  # areas: million km²
            edges = ", ".join(f"{e / 1e6:.3g}M km²" for e in bins["edges"])
        else:
            edges = ", ".join(f"{e:.0f} km" for e in bins["edges"])
        what = "spread" if bins["signal"] == "spread_km2" else "doubt"
        out["map_by_bin"] = f"{rules} ({what}: {edges})" if edges else rules
    return out


def choices_cells(row: dict) -> list[str]:
    """:func:`locdiff_choices` of ``row`` as table cells, in :data:`CHOICES`' order."""
    cell = lambda v: "—" if v is None else v if isinstance(v, str) else f"{v:.3g}"  # noqa: E731
    return [cell(row.get(key)) for key in CHOICES]


CURVE_ROWS = 500  # validation rows scored at each evaluation for the learning curves


def _budget_settings(config) -> tuple[float, int]:
    """``(validation_fraction, batch_size)`` of a learned method's config (0, 0 for one
    that learns nothing)."""
    t = getattr(config, "train", None)
    return (t.validation_fraction, t.batch_size) if t is not None else (0.0, 0)


def train_with_curve(method: str, train_npz: str, workdir: str, config, *, progress: bool):
    """:func:`locdiff.methods.train_or_load`, recording the learning curve: after every
    validation evaluation, the accuracy of the model of that moment on (at most 500 of)
    the validation rows goes into ``<workdir>/curve.jsonl``."""
    from locdiff.methods import train_or_load

    if isinstance(config, BaselineConfig):
        config = config.for_method(method)
    fraction, batch_size = _budget_settings(config)
    on_eval = None
    if fraction > 0:  # a learned method
        arrays = data.load_npz(train_npz)
        val = validation_split(len(arrays["latlon"]), fraction)[1][:CURVE_ROWS]
        x, truth = arrays["embeddings"][val], arrays["latlon"][val].astype(np.float64)

        def on_eval(step, locator):
            scores = metrics.summarize(locator.predict(x, top_k=1).top1, truth)
            point = {"step": step, "samples_seen": step * batch_size}
            point |= {k: scores[k] for k in ("acc_200km", "acc_750km")}
            with open(os.path.join(workdir, "curve.jsonl"), "a") as f:
                f.write(json.dumps(point) + "\n")

    return train_or_load(method, train_npz, workdir, config, progress=progress, on_eval=on_eval)


def read_curve(workdir: str, meta: dict) -> list[dict]:
    """The learning curve of a finished run (one point per evaluation; the kept step is
    flagged ``best``); empty for runs without one."""
    path = os.path.join(workdir, "curve.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        points = {p["step"]: p for p in map(json.loads, f)}  # a resumed run: the last
    best = meta.get("best_step")
    return [{**p, "best": p["step"] == best} for _, p in sorted(points.items())]


def write_curves(out_dir: str, curves: dict, title: str) -> str:
    """``{out_dir}/learning_curves.png`` of the methods with a curve; its path."""
    from locdiff.viz.plots import plot_learning_curves

    path = os.path.join(out_dir, "learning_curves.png")
    os.makedirs(out_dir, exist_ok=True)
    plot_learning_curves({k: v for k, v in curves.items() if v}, path, title=title)
    return path


def accuracy_cell(value: float, se: float | None, n: int | None) -> str:
    """``value ± se``; an accuracy of 0 or 100% over ``n`` points (where the bootstrap
    error is 0) shows its one-sided 95% exact binomial bound instead: ``0.0 (≤ 8.0)``
    for 0 of 36."""
    if se is None:
        return f"{value:.1f}"
    if se == 0 and n and value in (0.0, 100.0):
        bound = 100 * (1 - 0.05 ** (1 / n))  # rounded outwards
        if value == 0:
            return f"{value:.1f} (≤ {math.ceil(10 * bound) / 10:.1f})"
        return f"{value:.1f} (≥ {math.floor(10 * (100 - bound)) / 10:.1f})"
    return f"{value:.1f} ± {se:.1f}"


def table(rows: list[dict], columns: list[str], metric_keys=HEADLINE) -> str:
    """A markdown table: the ``columns`` as given, then each metric as ``value ± se``
    (:func:`accuracy_cell`)."""
    head = columns + [k.replace("acc_", "% ≤ ") for k in metric_keys] + ["median km", "GeoScore"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row[c]) for c in columns]
        for k in metric_keys:
            cells.append(accuracy_cell(row[k], row.get(f"se_{k}"), row.get("n")))
        cells += [f"{row['median_km']:.0f}", f"{row['geoscore']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def command_line(name: str, argv=None) -> str:
    """The command that wrote report ``name``, as a reader repeats it from the
    repository root: ``--cache`` and ``--out`` left out where they name the default
    places (:func:`parser`; a checkout whose cache links elsewhere is the same place),
    other paths inside the working directory written relative to it. ``argv``: the
    interpreter's arguments after ``python`` (``sys.orig_argv[1:]``)."""
    argv = list(sys.orig_argv[1:] if argv is None else argv)
    defaults = {"--cache": "experiments/cache", "--out": f"experiments/results/{name}"}
    here = os.path.realpath(os.getcwd())
    words, i = [], 0
    while i < len(argv):
        flag, eq, value = argv[i].partition("=")
        if flag not in defaults or (not eq and i + 1 == len(argv)):
            words.append(argv[i])
            i += 1
            continue
        if not eq:
            value, i = argv[i + 1], i + 1
        i += 1
        place = os.path.realpath(value)
        if place == os.path.realpath(defaults[flag]):
            continue
        if os.path.isabs(value) and os.path.commonpath([here, place]) == here:
            value = os.path.relpath(place, here)
        words += [flag, value]
    return shlex.join(["python", *words])


def write_report(out_dir: str, name: str, title: str, sections, payload: dict, wall_s: float):
    """``{out_dir}/{name}.md`` (title, provenance, sections) and ``{name}.json``."""
    os.makedirs(out_dir, exist_ok=True)
    command = command_line(name)
    provenance = (
        f"Command: `{command}`  \nMachine: {machine()}  \n"
        f"Code: {REVISION}; written {time.strftime('%Y-%m-%d %H:%M')} UTC; "
        f"wall time {wall_s / 60:.1f} min"
    )
    body = [f"# {title}", "", provenance, ""]
    for heading, text in sections:
        body += [f"## {heading}", "", text.strip(), ""]
    with files.atomic_path(os.path.join(out_dir, f"{name}.md")) as tmp, open(tmp, "w") as f:
        f.write("\n".join(body))
    files.write_json(
        os.path.join(out_dir, f"{name}.json"),
        {"command": command, "machine": machine(), "wall_s": wall_s, **payload},
    )
    log(f"wrote {out_dir}/{name}.md")


def share_inside(pred, boxes, groups) -> float:
    """Percent of predictions ``[N, 2]`` inside the box of their own group."""
    from locdiff.data.splits import in_box

    pred = np.asarray(pred)
    inside = np.zeros(len(pred), bool)
    for g, box in enumerate(boxes):
        sel = groups == g
        inside[sel] = in_box(pred[sel], box)
    return float(100 * inside.mean())
