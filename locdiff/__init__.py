"""LocDiff: geolocation by latent diffusion in the space of SHDD coefficients.

The SHDD mathematics (harmonics, encoder, decoder, probability maps) live in the
``shdd`` package; ``locdiff`` builds the model, its training and inference on top.
"""

from locdiff.config import Config, DiffusionConfig, ModelConfig, TrainConfig, override
from locdiff.data import DataError, open_dataset, save_npz, write_array_record
from locdiff.evaluate import evaluate, predict_all
from locdiff.inference import Geolocator, Prediction, rerank_gallery
from locdiff.model import CSUNet
from locdiff.places import PlaceIndex
from locdiff.readers import Locations, read_locations
from locdiff.sampling import sample_coefficients
from locdiff.trainer import NonFiniteLossError, train

__version__ = "0.1.0"

__all__ = [
    "CSUNet",
    "Config",
    "DataError",
    "DiffusionConfig",
    "Geolocator",
    "Locations",
    "ModelConfig",
    "NonFiniteLossError",
    "PlaceIndex",
    "Prediction",
    "TrainConfig",
    "evaluate",
    "open_dataset",
    "override",
    "predict_all",
    "read_locations",
    "rerank_gallery",
    "sample_coefficients",
    "save_npz",
    "train",
    "write_array_record",
]
