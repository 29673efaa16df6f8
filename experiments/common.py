"""What the experiment scripts share: their command line, scoring, tables and reports.

Every report names the command that made it, the machine, the code revision and the wall
time, and holds both a markdown table and the same figures as JSON. Runs are cached
under ``--cache`` by name (:func:`locdiff.methods.train_or_load`): a re-run reuses
finished trainings and resumes a LocDiff run cut off mid-way (delete the cache to start
over).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

import numpy as np

from locdiff import data, files, metrics
from locdiff.provenance import git_revision, machine

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


def save_split(path: str, embeddings, latlon, index, *, encoder: str | None = None) -> str:
    """The rows ``index`` as a dataset ``.npz`` (written once), naming its ``encoder``."""
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        extra = {} if encoder is None else {"encoder": np.array(encoder)}
        data.save_npz(path, embeddings[index], latlon[index], **extra)
    return path


def score(pred, truth, groups=None, *, seed: int = 0) -> dict:
    """:func:`metrics.summarize` plus bootstrap standard errors (``se_<key>``)."""
    result = metrics.summarize(pred, truth)
    se = metrics.bootstrap_se(pred, truth, groups, n=200, seed=seed)
    return {**result, **{f"se_{k}": v for k, v in se.items()}}


BUDGET = ("steps", "best_step", "epochs", "samples_seen", "train_s")


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


def budget_table(rows: list[dict], columns: list[str]) -> str:
    """One line per trained run: ``columns``, then its :func:`budget` (duplicates of a
    run, e.g. its rows on several test sets, are listed once)."""
    head = columns + ["steps", "best step", "epochs", "samples seen", "stopped early", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    seen = set()
    for row in rows:
        key = tuple(row[c] for c in columns)
        if key in seen or not row.get("steps"):
            continue
        seen.add(key)
        cells = [str(v) for v in key] + [str(row[k]) for k in ("steps", "best_step", "epochs")]
        cells += [f"{row['samples_seen']:,}", "yes" if row["stopped_early"] else "no (cap)"]
        lines.append("| " + " | ".join(cells + [f"{row['train_s']:.0f}"]) + " |")
    return "\n".join(lines)


def table(rows: list[dict], columns: list[str], metric_keys=HEADLINE) -> str:
    """A markdown table: the ``columns`` as given, then each metric as ``value ± se``."""
    head = columns + [k.replace("acc_", "% ≤ ") for k in metric_keys] + ["median km", "GeoScore"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row[c]) for c in columns]
        for k in metric_keys:
            se = row.get(f"se_{k}")
            cells.append(f"{row[k]:.1f}" + (f" ± {se:.1f}" if se is not None else ""))
        cells += [f"{row['median_km']:.0f}", f"{row['geoscore']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out_dir: str, name: str, title: str, sections, payload: dict, wall_s: float):
    """``{out_dir}/{name}.md`` (title, provenance, sections) and ``{name}.json``."""
    os.makedirs(out_dir, exist_ok=True)
    command = shlex.join(["python", *sys.orig_argv[1:]])
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
    from locdiff.splits import in_box

    pred = np.asarray(pred)
    inside = np.zeros(len(pred), bool)
    for g, box in enumerate(boxes):
        sel = groups == g
        inside[sel] = in_box(pred[sel], box)
    return float(100 * inside.mean())
