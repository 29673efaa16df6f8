"""LocDiff: geolocation by latent diffusion in the space of SHDD coefficients.

The SHDD mathematics (harmonics, encoder, decoder, probability maps) live in the
``shdd`` package; ``locdiff`` builds the model, its training and inference on top.
"""

__version__ = "0.1.0"
