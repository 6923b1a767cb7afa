"""Classical methods (NumPy / SciPy / scikit-image; no torch). Importing registers them."""

from fluorecon.methods.classical import deconvolution, denoising  # noqa: F401
