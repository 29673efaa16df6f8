"""Shared parts of the experiment scripts: train-or-reuse a method, score it, write reports.

Every report names the command that made it, the machine, the code revision and the wall
time, and holds both a markdown table and the same figures as JSON. Runs are cached
under ``--cache`` by name: a re-run reuses finished trainings and resumes a LocDiff run
cut off mid-way (delete the cache to start over).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks._report import git_revision, machine  # noqa: E402
from locdiff import data, methods, metrics  # noqa: E402

REVISION = git_revision()  # the code as this run loaded it
HEADLINE = ("acc_25km", "acc_200km", "acc_750km", "acc_2500km")

# The ``smoke`` profiles' models: seconds of training, to check that a script runs.
SMOKE_LOCDIFF = {
    "model.L": 8,
    "model.hidden": 32,
    "model.depth": 2,
    "model.embed_dim": 16,
    "model.time_dim": 8,
    "train.steps": 20,
    "train.checkpoint_every": 20,
    "diffusion.steps": 5,
    "diffusion.num_samples": 2,
}
SMOKE_BASELINE = {"hidden": 16, "steps": 20, "num_samples": 4, "flow_steps": 5}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def train_or_load(method: str, train_npz: str, workdir: str, config, *, progress: bool = True):
    """``(locator, train_seconds)``: reuse a finished run in ``workdir`` or train one."""
    timing = os.path.join(workdir, "train_seconds.json")
    if os.path.exists(os.path.join(workdir, "method.json")) and os.path.exists(timing):
        with open(timing) as f:
            return methods.load_locator(workdir), float(json.load(f))
    start = time.perf_counter()
    locator = methods.train_method(method, train_npz, workdir, config=config, progress=progress)
    seconds = time.perf_counter() - start
    with open(timing, "w") as f:
        json.dump(seconds, f)
    return locator, seconds


def save_split(path: str, embeddings, latlon, index) -> str:
    if not os.path.exists(path):
        data.save_npz(path, embeddings[index], latlon[index])
    return path


def score(pred, truth, groups=None, *, seed: int = 0) -> dict:
    """:func:`metrics.summarize` plus bootstrap standard errors (``se_<key>``)."""
    result = metrics.summarize(pred, truth)
    se = metrics.bootstrap_se(pred, truth, groups, n=200, seed=seed)
    return {**result, **{f"se_{k}": v for k, v in se.items()}}


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
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    provenance = (
        f"Command: `{command}`  \nMachine: {machine()}  \n"
        f"Code: {REVISION}; written {time.strftime('%Y-%m-%d %H:%M')} UTC; "
        f"wall time {wall_s / 60:.1f} min"
    )
    body = [f"# {title}", "", provenance, ""]
    for heading, text in sections:
        body += [f"## {heading}", "", text.strip(), ""]
    with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
        f.write("\n".join(body))
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(
            {"command": command, "machine": machine(), "wall_s": wall_s, **payload}, f, indent=2
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


SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
TEST_SETS = {"im2gps3k": "im2gps3k_places365.csv", "yfcc26k": "yfcc25600_places365.csv"}


def oracle_data(
    cache: str, shared: str = SHARED, *, yfcc_n: int | None = None, gallery_n: int | None = None
) -> dict:
    """Setting B's locations and GeoCLIP location embeddings (cached in ``cache``).

    Returns ``{"gallery": (latlon, emb), "im2gps3k": (latlon, emb, scene), "yfcc26k": ...}``:
    the 100K MP16 gallery from the ``geoclip`` wheel and the benchmark test locations
    from ``shared``; ``yfcc_n`` keeps a fixed random subset of YFCC26k.
    """
    from locdiff.encoders import GeoCLIPLocationEncoder, geoclip_file
    from locdiff.readers import read_locations

    path = os.path.join(cache, f"oracle_geoclip_{gallery_n}_{yfcc_n}.npz")
    if not os.path.exists(path):
        log("embedding the MP16 gallery and the test locations with GeoCLIP's location encoder")
        encoder = GeoCLIPLocationEncoder()
        gallery = read_locations(geoclip_file("model", "gps_gallery", "coordinates_100K.csv"))
        g = gallery.latlon
        if gallery_n is not None and gallery_n < len(g):
            g = g[np.sort(np.random.default_rng(0).choice(len(g), gallery_n, replace=False))]
        arrays = {"gallery_latlon": g, "gallery_emb": encoder.embed_locations(g)}
        for name, file in TEST_SETS.items():
            test = read_locations(os.path.join(shared, file))
            keep = np.arange(len(test))
            if name == "yfcc26k" and yfcc_n is not None and yfcc_n < len(test):
                keep = np.sort(np.random.default_rng(0).choice(len(test), yfcc_n, replace=False))
            arrays[f"{name}_latlon"] = test.latlon[keep]
            arrays[f"{name}_emb"] = encoder.embed_locations(test.latlon[keep])
            arrays[f"{name}_scene"] = test.scene[keep]
        os.makedirs(cache, exist_ok=True)
        np.savez(path + ".tmp.npz", **arrays)
        os.replace(path + ".tmp.npz", path)
    with np.load(path) as f:
        a = {k: f[k] for k in f.files}
    out = {"gallery": (a["gallery_latlon"], a["gallery_emb"])}
    for name in TEST_SETS:
        out[name] = (a[f"{name}_latlon"], a[f"{name}_emb"], a[f"{name}_scene"])
    return out
