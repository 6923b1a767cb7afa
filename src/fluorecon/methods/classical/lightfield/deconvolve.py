"""3D Richardson-Lucy deconvolution of light-field images (Broxton et al. 2013).

.. math:: x^{(t+1)} = \\frac{x^{(t)}}{A^T \\mathbf 1}\\;
          A^T\\!\\left(\\frac{y}{A x^{(t)} + b}\\right)

with ``A`` the light-field forward operator (volume -> views), ``A^T`` its adjoint, ``y`` the
measured views in photons and ``b`` the background. Each iteration costs one forward and one
adjoint projection. The iteration is the EM algorithm for Poisson data: it keeps ``x >= 0``
and, started from a positive constant, increases the Poisson likelihood monotonically.

References
----------
.. [1] M. Broxton et al., "Wave optics theory and 3-D deconvolution for the light field
   microscope", Opt. Express 21(21), 25418-25439, 2013.
.. [2] L. B. Lucy, "An iterative technique for the rectification of observed distributions",
   Astron. J. 79, 745-754, 1974.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.simulate.lightfield import LightFieldOperator

__all__ = ["LightFieldReconstruction", "lightfield_richardson_lucy"]


@dataclass(frozen=True)
class LightFieldReconstruction:
    """Result of a light-field deconvolution.

    Attributes
    ----------
    volume : ndarray, shape (nz, ny, nx)
        float32 volume, photons per voxel (non-negative).
    n_iter : int
        Iterations run.
    seconds : float
        Wall time of the iterations.
    """

    volume: np.ndarray
    n_iter: int
    seconds: float


def lightfield_richardson_lucy(
    views: Any,
    operator: LightFieldOperator,
    *,
    n_iter: int = 30,
    background: float = 0.0,
    eps: float = 1e-6,
    progress: Callable[[int, int], None] | None = None,
) -> LightFieldReconstruction:
    """Reconstruct a volume from light-field views by Richardson-Lucy.

    Parameters
    ----------
    views : array_like, shape (nv, nv, ny, nx)
        Light field in photons (see :func:`~fluorecon.simulate.lightfield.lenslet_to_views`
        and :func:`~fluorecon.simulate.camera.camera_inverse`). Negative values (noise after
        offset subtraction) are clipped to 0.
    operator : LightFieldOperator
        Forward model for the volume shape wanted.
    n_iter : int
        Iterations (more: sharper and noisier; 10-50 is typical).
    background : float
        Background photons per sensor pixel, kept out of the volume.
    eps : float
        Floor of the denominator, photons.
    progress : callable, optional
        ``progress(done, total)`` after each iteration.

    Returns
    -------
    LightFieldReconstruction
    """
    check_image_array(views, name="light-field views")
    y = np.clip(as_float32(views), 0, None)
    if y.shape != operator.views_shape:
        raise DataError(message(f"views of shape {y.shape}", f"shape {operator.views_shape}",
                                "Build the operator for this image's lenslet grid."))
    if n_iter < 1 or background < 0 or eps <= 0:
        raise ConfigError(message(f"n_iter={n_iter}, background={background}, eps={eps}",
                                  "n_iter >= 1, background >= 0, eps > 0",
                                  "Use e.g. n_iter=30."))
    t0 = time.perf_counter()
    norm = operator.adjoint(np.ones(operator.views_shape, dtype=np.float32))
    norm = np.maximum(norm, 1e-6 * float(norm.max()))
    # Start from the constant volume whose projection has the data's mean signal.
    signal = max(float(y.mean()) - background, eps)
    ones = np.ones(operator.volume_shape, dtype=np.float32)
    x = ones * (signal / max(float(operator.forward(ones).mean()), 1e-30))
    for it in range(n_iter):
        est = operator.forward(x) + np.float32(background)
        ratio = y / np.maximum(est, np.float32(eps))
        x *= operator.adjoint(ratio) / norm
        np.clip(x, 0, None, out=x)
        if progress is not None:
            progress(it + 1, n_iter)
    return LightFieldReconstruction(volume=x.astype(np.float32), n_iter=n_iter,
                                    seconds=time.perf_counter() - t0)
