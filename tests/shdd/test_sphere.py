import jax.numpy as jnp
import numpy as np
import pytest

from shdd import sphere


def test_index_layout_round_trips():
    L = 7
    l, m = sphere.degree_order(L)
    assert l.shape == (64,)
    for k, (ll, mm) in enumerate(zip(l, m, strict=True)):
        assert sphere.flat_index(int(ll), int(mm)) == k
    assert sphere.band_limit(64) == L
    with pytest.raises(ValueError, match="coeffs"):
        sphere.band_limit(63)


def test_haversine_known_distances():
    paris, new_york = [48.8566, 2.3522], [40.7128, -74.0060]
    assert sphere.haversine_km_np(paris, new_york) == pytest.approx(5837.0, rel=2e-3)
    assert sphere.haversine_km_np([0, 0], [0, 0]) == 0.0
    half = np.pi * sphere.EARTH_RADIUS_KM
    assert sphere.haversine_km_np([0, 0], [0, 180]) == pytest.approx(half)
    assert sphere.haversine_km_np([90, 0], [-90, 0]) == pytest.approx(half)
    # across the antimeridian
    assert sphere.haversine_km_np([0, 179.5], [0, -179.5]) == pytest.approx(half / 180, rel=1e-9)


def test_haversine_jax_matches_numpy(x64, rng):
    a = np.stack([rng.uniform(-90, 90, 100), rng.uniform(-180, 180, 100)], -1)
    b = np.stack([rng.uniform(-90, 90, 100), rng.uniform(-180, 180, 100)], -1)
    np.testing.assert_allclose(sphere.haversine_km(a, b), sphere.haversine_km_np(a, b), rtol=1e-12)


def test_xyz_round_trip_and_wrap(x64, rng):
    latlon = np.stack([rng.uniform(-89, 89, 50), rng.uniform(-180, 180, 50)], -1)
    back = sphere.xyz_to_latlon(sphere.latlon_to_xyz(latlon))
    np.testing.assert_allclose(back, latlon, atol=1e-10)
    np.testing.assert_allclose(sphere.wrap_longitude(jnp.array([180.0, -180.0, 540.0])), -180.0)


def test_tangent_frame_is_orthonormal_and_tangent(x64, rng):
    latlon = np.stack([rng.uniform(-90, 90, 20), rng.uniform(-180, 180, 20)], -1)
    north, east = sphere.tangent_frame(latlon)
    xyz = sphere.latlon_to_xyz(latlon)
    for u, v in [(north, east), (north, xyz), (east, xyz)]:
        np.testing.assert_allclose(jnp.sum(u * v, -1), 0.0, atol=1e-12)
    np.testing.assert_allclose(jnp.linalg.norm(north, axis=-1), 1.0)
    np.testing.assert_allclose(jnp.linalg.norm(east, axis=-1), 1.0)


def test_exp_map_moves_by_the_tangent_length(x64):
    start = sphere.latlon_to_xyz(jnp.array([10.0, 20.0]))
    north, _ = sphere.tangent_frame(jnp.array([10.0, 20.0]))
    moved = sphere.exp_map(start, 0.1 * north)
    np.testing.assert_allclose(sphere.xyz_to_latlon(moved), [10.0 + np.rad2deg(0.1), 20.0])


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.array([91.0, 0.0]), r"latitude must lie in \[-90, 90\]"),
        (np.array([[0.0, 0.0], [-90.5, 0.0]]), "latitude"),
        (np.array([np.nan, 0.0]), "finite"),
        (np.array([0.0, np.inf]), "finite"),
        (np.zeros((4, 3)), r"shape \[..., 2\]"),
        (np.float64(3.0), r"shape \[..., 2\]"),
    ],
)
def test_check_latlon_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        sphere.check_latlon(bad)


@pytest.mark.parametrize("L", [0, -3, 2.5, True, "8"])
def test_check_band_limit(L):
    with pytest.raises(ValueError, match="L must be an integer >= 1"):
        sphere.check_band_limit(L)
