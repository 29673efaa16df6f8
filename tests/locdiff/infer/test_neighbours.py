"""Cosine nearest neighbours: the most similar gallery rows, in chunks, with exclusion."""

import numpy as np
import pytest

from locdiff.infer import neighbours


def test_most_similar_is_sorted_exact_and_skips_the_excluded_row():
    rng = np.random.default_rng(0)
    gallery = neighbours.normalise(rng.standard_normal((50, 8)))
    query = np.concatenate([gallery[:5], neighbours.normalise(rng.standard_normal((3, 8)))])
    index, sim = neighbours.most_similar(query, gallery, k=4, max_scores=100)  # chunks of 2
    full = query @ gallery.T
    np.testing.assert_array_equal(index, np.argsort(-full, axis=1)[:, :4])
    np.testing.assert_allclose(sim, np.sort(full, axis=1)[:, ::-1][:, :4], rtol=1e-6)
    assert (index[:5, 0] == np.arange(5)).all()  # a gallery row finds itself first ...
    exclude = np.array([0, 1, 2, 3, 4, -1, -1, -1])
    index, _ = neighbours.most_similar(query, gallery, k=4, exclude=exclude)
    assert not (index[:5] == np.arange(5)[:, None]).any()  # ... unless it is excluded
    np.testing.assert_array_equal(index[:5], np.argsort(-full[:5], axis=1)[:, 1:5])
    with pytest.raises(ValueError, match="need 1 <= k <= 49"):
        neighbours.most_similar(query, gallery, k=50, exclude=exclude)
