"""LocDiff: geolocation by latent diffusion in the space of SHDD coefficients.

The SHDD mathematics (harmonics, encoder, decoder, probability maps) live in the
``shdd`` package; ``locdiff`` builds the model, its training and inference on top, one
subpackage per layer:

* :mod:`.model`: the CS-UNet, diffusion in SHDD space, sampling (with :mod:`.config`);
* :mod:`.data`: embedding datasets, shards and the Grain pipeline, benchmark readers,
  splits, synthetic data;
* :mod:`.training`: the trainer, the jitted step, checkpoints, early stopping, the
  device mesh;
* :mod:`.infer`: the ``Geolocator``, the one answer type ``Prediction``, map rules,
  calibration, snapping, the doubt, LocDiff-H;
* :mod:`.methods`: every method behind one surface (a module per method, a registry);
* :mod:`.evaluation`: the field's protocol and metrics;
* :mod:`.viz`: probability-map plots, credible regions, places, the Jupyter explorer,
  the local page (``locdiff serve``);
* :mod:`.io`: the run directory, atomic files, provenance, exports;
* :mod:`.encoders`: frozen image encoders and the embedding of image collections;
* :mod:`.settings`: the data builders of the two real-data settings (Blue Marble, the
  oracle);
* :mod:`.errors` and the command line :mod:`.cli`.
"""

from locdiff.config import Config, DiffusionConfig, ModelConfig, TrainConfig, override
from locdiff.data.datasets import open_dataset, save_npz, write_array_record
from locdiff.data.readers import Locations, read_benchmark, read_locations
from locdiff.errors import DataError, NonFiniteLossError, RunError
from locdiff.evaluation.protocol import evaluate
from locdiff.infer.geolocator import Geolocator
from locdiff.infer.hybrid import Gallery, Rule, locdiff_h
from locdiff.infer.prediction import Prediction
from locdiff.io.rundir import RunDir
from locdiff.methods import METHODS, load_locator, train_method, train_or_load
from locdiff.model.csunet import CSUNet
from locdiff.model.sampling import sample_coefficients
from locdiff.training.trainer import train
from locdiff.viz.places import PlaceIndex

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
