"""LocDiff-H: the one implementation of the hybrid."""

import numpy as np
import pytest

import shdd
from locdiff.hybrid import locdiff_h
from locdiff.inference import Geolocator
from locdiff.prediction import Prediction


def test_snaps_to_the_densest_gallery_point_near_the_mode(tiny_locdiff, clusters):
    geo = Geolocator.from_checkpoint(tiny_locdiff)
    out = geo.predict(clusters.test_emb[:4], top_k=2)
    truth = clusters.test_latlon[:4].astype(np.float64)
    gallery = np.concatenate([truth, [[0.0, 0.0], [-60, 100]]])
    snapped = locdiff_h(out, gallery, L=8, neighbours=3)
    np.testing.assert_array_equal(snapped.latlon[:, 1], out.latlon[:, 1])  # others unchanged
    np.testing.assert_array_equal(snapped.coeffs, out.coeffs)
    mean = out.coeffs.mean(axis=1)
    for i in range(4):
        values = np.asarray(shdd.evaluate(mean[i], gallery.astype(np.float32), L=8))
        chosen = np.argmin(np.abs(gallery - snapped.latlon[i, 0]).sum(-1))
        assert np.abs(gallery[chosen] - snapped.latlon[i, 0]).max() < 1e-9  # a gallery point
        assert values[chosen] >= np.sort(values)[-3]


def test_needs_coefficients_and_a_gallery():
    bare = Prediction(latlon=np.zeros((2, 1, 2)))
    with pytest.raises(ValueError, match="coefficients"):
        locdiff_h(bare, np.zeros((3, 2)), L=4)
    with_coeffs = Prediction(latlon=np.zeros((2, 1, 2)), coeffs=np.zeros((2, 1, 25)))
    with pytest.raises(ValueError, match=r"gallery must be \[G, 2\]"):
        locdiff_h(with_coeffs, np.zeros((3,)), L=4)
