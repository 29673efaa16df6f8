"""Setting B's condition: a normalised location embedding plus noise."""

import numpy as np
import pytest

from locdiff.oracle import oracle_condition


def test_oracle_condition_is_normalised_plus_noise():
    x = np.random.default_rng(0).normal(size=(2000, 64)) * 7
    clean = oracle_condition(x, 0.0)
    np.testing.assert_allclose(np.linalg.norm(clean, axis=1), 1.0, rtol=1e-5)
    noisy = oracle_condition(x, 0.2, seed=1)
    assert np.std(noisy - clean) == pytest.approx(0.2, rel=0.02)
    with pytest.raises(ValueError, match="noise must be >= 0"):
        oracle_condition(x, -1.0)
