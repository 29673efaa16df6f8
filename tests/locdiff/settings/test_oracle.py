"""Setting B's condition: a normalised location embedding plus noise."""

import numpy as np
import pytest

from locdiff.settings.oracle import oracle_condition


def test_oracle_condition_is_normalised_plus_noise():
    x = np.random.default_rng(0).normal(size=(2000, 64)) * 7
    clean = oracle_condition(x, 0.0)
    np.testing.assert_allclose(np.linalg.norm(clean, axis=1), 1.0, rtol=1e-5)
    noisy = oracle_condition(x, 0.2, seed=1)
    assert np.std(noisy - clean) == pytest.approx(0.2, rel=0.02)
    with pytest.raises(ValueError, match="noise must be >= 0"):
        oracle_condition(x, -1.0)


def test_land_test_is_cached_and_embeds_its_points(tmp_path, monkeypatch):
    from global_land_mask import globe

    from locdiff import encoders
    from locdiff.settings.oracle import land_test

    latlon, emb = land_test(str(tmp_path), n=20, seed=5)
    assert latlon.shape == (20, 2) and emb.shape == (20, 512)
    assert globe.is_land(latlon[:, 0], latlon[:, 1]).all()
    assert [p.name for p in tmp_path.iterdir()] == ["oracle_land_20_5.npz"]

    def no_encoder():
        raise AssertionError("the cached embeddings should have been read")

    monkeypatch.setattr(encoders, "GeoCLIPLocationEncoder", no_encoder)
    again = land_test(str(tmp_path), n=20, seed=5)
    np.testing.assert_array_equal(again[0], latlon)
    np.testing.assert_array_equal(again[1], emb)
