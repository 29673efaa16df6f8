"""What every method answers: one :class:`Prediction` type, and the checks on its input.

Every locator (:mod:`locdiff.methods`) returns a :class:`Prediction`: the top-k
locations always, and whatever else the method can give: the probability of each
location, the sampled SHDD coefficients, probability maps and credible-region areas.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Prediction:
    """The answer of a method for ``N`` inputs (numpy arrays; None where it has none).

    Attributes:
      latlon: ``[N, k, 2]`` locations in degrees, best first.
      prob: ``[N, k]`` probability mass of each location (LocDiff: ``shdd.decode``'s mass;
        GeoToken: its cell's share of the decoded cells' probability, its map's mass).
      coeffs: ``[N, K, D]`` the K sampled SHDD vectors (LocDiff).
      maps: ``[N, n_lat, n_lon]`` probability maps on ``shdd.latlon_grid`` (LocDiff's, and
        GeoToken's of its decoded cells, on request).
      credible_km2: ``[N, 2]`` areas of the 50% and 90% credible regions (with maps).
      doubt_km: ``[N]`` km between LocDiff's (unsnapped) mode and the place of the most
        similar training condition (:mod:`locdiff.infer.reference`): large far from training
        (LocDiff, with ``predict(..., doubt=True)``, or where the run's snapping gate or
        map bins read it).
    """

    latlon: np.ndarray
    prob: np.ndarray | None = None
    coeffs: np.ndarray | None = None
    maps: np.ndarray | None = None
    credible_km2: np.ndarray | None = None
    doubt_km: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.latlon)

    @property
    def top1(self) -> np.ndarray:
        """``[N, 2]`` the best location of each input, float64 degrees."""
        return np.asarray(self.latlon[:, 0], np.float64)

    def __getitem__(self, index) -> Prediction:
        """The rows ``index`` of every field (a slice or an index array)."""
        return Prediction(**{k: None if v is None else v[index] for k, v in self._fields()})

    def _fields(self):
        return ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))

    @property
    def map_resolution(self) -> float | None:
        """The maps' cell size in degrees (None without maps)."""
        return None if self.maps is None else 180.0 / self.maps.shape[1]

    def show(self, i: int = 0, **options):
        """Input ``i``'s map with its credible regions and labelled modes
        (:func:`locdiff.viz.plots.plot_prediction`; ``options``: truth, title, path, ...): a
        matplotlib Figure, which a notebook displays."""
        from locdiff.viz.plots import plot_prediction

        return plot_prediction(self, i, resolution_deg=self.map_resolution, **options)

    def _repr_html_(self) -> str:
        """A notebook's view: the top-k of the first inputs as a table and, with maps,
        the first input's map."""
        import base64
        import html
        import io

        shown = min(len(self), 10)
        head = "<tr><th>input</th><th>rank</th><th>lat</th><th>lon</th><th>mass</th></tr>"
        rows = []
        for i in range(shown):
            for r, (lat, lon) in enumerate(self.latlon[i]):
                mass = "" if self.prob is None else f"{100 * float(self.prob[i, r]):.1f}%"
                rows.append(f"<tr><td>{i}</td><td>{r + 1}</td><td>{lat:.4f}</td>"
                            f"<td>{lon:.4f}</td><td>{mass}</td></tr>")  # fmt: skip
        more = f"<p>{len(self) - shown} more inputs not shown.</p>" if len(self) > shown else ""
        out = f"<p>{html.escape(type(self).__name__)} of {len(self)} inputs</p>"
        out += f"<table>{head}{''.join(rows)}</table>{more}"
        if self.maps is not None:
            png = io.BytesIO()
            self.show(0).savefig(png, format="png", dpi=70, bbox_inches="tight")
            image = base64.b64encode(png.getvalue()).decode()
            out += f"<p>Input 0:</p><img src='data:image/png;base64,{image}'>"
        return out

    @classmethod
    def concatenate(cls, parts: list[Prediction]) -> Prediction:
        """The rows of ``parts`` one after another (fields that all parts have)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        out = {}
        for f in dataclasses.fields(cls):
            values = [getattr(p, f.name) for p in parts]
            out[f.name] = None if any(v is None for v in values) else np.concatenate(values)
        return cls(**out)


def check_embeddings(embeddings, embed_dim: int) -> np.ndarray:
    """``embeddings`` as float32 ``[N, embed_dim]``.

    Raises:
      ValueError: a wrong shape or width, or a NaN or infinite value.
    """
    embeddings = np.asarray(embeddings, np.float32)
    if embeddings.ndim != 2 or embeddings.shape[1] != embed_dim:
        raise ValueError(
            f"embeddings must be [N, {embed_dim}] for this run, got {list(embeddings.shape)}"
        )
    if not np.all(np.isfinite(embeddings)):
        raise ValueError("embeddings must be finite")
    return embeddings


def broadcast_top_k(latlon: np.ndarray, top_k: int) -> np.ndarray:
    """``[N, top_k, 2]`` from one location per input ``[N, 2]`` (repeated)."""
    return np.repeat(np.asarray(latlon, np.float64)[:, None, :], top_k, axis=1)
