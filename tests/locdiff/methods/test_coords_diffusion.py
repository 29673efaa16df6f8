"""Flow matching on raw coordinates: its samples and the modes ranked over them."""

import numpy as np

import shdd
from locdiff import methods

FAST = methods.BaselineConfig(hidden=32, steps=50, batch_size=64, learning_rate=3e-3)


def test_coords_diffusion_modes_are_distinct_and_on_samples(clusters, tmp_path):
    test_emb = clusters.test_emb
    locator = methods.train_method(
        "coords-diffusion", clusters.train, str(tmp_path / "f"), config=FAST, progress=False
    )
    samples = locator.samples(test_emb[:5], seed=3)
    assert samples.shape == (5, FAST.num_samples, 3)
    np.testing.assert_allclose(np.linalg.norm(samples, axis=-1), 1.0, atol=1e-5)
    modes = locator.locate(test_emb[:5], top_k=2, seed=3)
    sample_latlon = shdd.sphere.xyz_to_latlon_np(samples)
    for i in range(5):
        d = shdd.haversine_km_np(modes[i, :, None], sample_latlon[i][None])  # [2, K]
        assert d.min(axis=1).max() < 1e-3  # each mode is one of the samples
        assert shdd.haversine_km_np(modes[i, 0], modes[i, 1]) > 2 * FAST.kde_km - 1e-6 or (
            np.all(modes[i, 0] == modes[i, 1])  # fewer separated samples than top_k
        )
