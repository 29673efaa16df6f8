"""Embedding image collections: resumable, skipping unreadable files."""

import numpy as np
import pytest
from PIL import Image

from locdiff import cli
from locdiff.data import datasets as data
from locdiff.encoders import ColorStatsEncoder
from locdiff.encoders.embed import embed_images


def _images(rng, n, size=(48, 40)):
    return [Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)) for _ in range(n)]


def test_embed_skips_corrupt_images_and_resumes(tmp_path, rng):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, image in enumerate(_images(rng, 7)):
        image.save(folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    with open(tmp_path / "list.csv", "w") as f:
        f.write("path,lat,lon\n")
        for i in range(7):
            f.write(f"photos/{i}.png,{10 * i},{-20 * i}\n")
        f.write("photos/broken.jpg,1,1\n")

    class Crashing(ColorStatsEncoder):
        calls = 0

        def embed(self, images):
            Crashing.calls += 1
            if Crashing.calls == 3:
                raise RuntimeError("simulated crash")
            return super().embed(images)

    out = str(tmp_path / "emb.npz")
    with pytest.raises(RuntimeError, match="simulated crash"):
        embed_images(
            Crashing(), str(tmp_path / "list.csv"), out, batch_size=2, save_every=1, progress=False
        )
    counted = []

    class Counting(ColorStatsEncoder):
        def embed(self, images):
            counted.append(len(images))
            return super().embed(images)

    result = embed_images(Counting(), str(tmp_path / "list.csv"), out, batch_size=2, progress=False)
    assert result == {"embedded": 7, "skipped": 1, "out": out}
    assert sum(counted) == 3  # the first 4 images were kept from before the crash
    arrays = data.load_npz(out)
    assert arrays["embeddings"].shape == (7, 30) and str(arrays["encoder"]) == "color-stats"
    np.testing.assert_allclose(arrays["latlon"][3], [30, -60])
    np.testing.assert_array_equal(
        arrays["embeddings"],
        ColorStatsEncoder().embed([Image.open(folder / f"{i}.png") for i in range(7)]),
    )
    assert "photos/broken.jpg" in (tmp_path / "emb.npz.skipped.txt").read_text()


def test_cli_embed_directory_without_locations(tmp_path, rng, capsys):
    for i, image in enumerate(_images(rng, 3)):
        image.save(tmp_path / f"{i}.jpg")
    out = str(tmp_path / "e.npz")
    assert (
        cli.main(
            [
                "embed",
                "--encoder",
                "color-stats",
                "--images",
                str(tmp_path),
                "--out",
                out,
                "--no-progress",
            ]
        )
        == 0
    )
    assert "embedded 3 images" in capsys.readouterr().out
    arrays = data.load_npz(out, require_latlon=False)
    assert "latlon" not in arrays and arrays["embeddings"].shape == (3, 30)
    with pytest.raises(data.DataError, match="missing key 'latlon'"):
        data.load_npz(out)
    assert (
        cli.main(
            ["embed", "--encoder", "color-stats", "--images", str(tmp_path / "none"), "--out", out]
        )
        == 2
    )
