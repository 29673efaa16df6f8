"""LocDiff: geolocation by latent diffusion in the space of SHDD coefficients.

The SHDD mathematics (harmonics, encoder, decoder, probability maps) live in the
``shdd`` package; ``locdiff`` builds the model, its training and inference on top:

* the model core: :mod:`.config`, :mod:`.model`, :mod:`.diffusion`, :mod:`.train_step`,
  :mod:`.sampling`, :mod:`.trainer` (with :mod:`.data` and :mod:`.sharding`);
* inference: :mod:`.inference` (``Geolocator``), :mod:`.hybrid` (LocDiff-H), the one
  answer type :mod:`.prediction`;
* every method behind one surface: :mod:`.methods` (a module per method, a registry);
* evaluation: :mod:`.evaluate`, :mod:`.metrics`, :mod:`.calibration`, :mod:`.readers`
  (benchmark metadata shipped in ``locdiff/resources``), :mod:`.places`, :mod:`.splits`;
* around them: :mod:`.encoders` and :mod:`.embed` (images), :mod:`.plots`,
  :mod:`.worldmap` and :mod:`.export` (maps and files), :mod:`.bluemarble` and
  :mod:`.oracle` (the two real-data settings), :mod:`.rundir`, :mod:`.files`,
  :mod:`.errors`, :mod:`.provenance`, and the command line :mod:`.cli`.
"""

from locdiff.config import Config, DiffusionConfig, ModelConfig, TrainConfig, override
from locdiff.data import open_dataset, save_npz, write_array_record
from locdiff.errors import DataError, NonFiniteLossError, RunError
from locdiff.evaluate import evaluate
from locdiff.hybrid import Gallery, Rule, locdiff_h
from locdiff.inference import Geolocator
from locdiff.methods import METHODS, load_locator, train_method, train_or_load
from locdiff.model import CSUNet
from locdiff.places import PlaceIndex
from locdiff.prediction import Prediction
from locdiff.readers import Locations, read_benchmark, read_locations
from locdiff.rundir import RunDir
from locdiff.sampling import sample_coefficients
from locdiff.trainer import train

__version__ = "0.2.0"

__all__ = [
    "METHODS",
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
    "RunDir",
    "RunError",
    "TrainConfig",
    "evaluate",
    "load_locator",
    "locdiff_h",
    "Gallery",
    "Rule",
    "open_dataset",
    "override",
    "read_benchmark",
    "read_locations",
    "sample_coefficients",
    "save_npz",
    "train",
    "train_method",
    "train_or_load",
    "write_array_record",
]
