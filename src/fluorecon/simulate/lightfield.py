"""Light-field microscope (microlens array in the native image plane) forward model.

A light-field microscope (LFM) places a microlens array at the image plane; the sensor, one
microlens focal length behind it, records behind every lenslet a small image of the objective
pupil. Pixel ``(i, j)`` under each lenslet therefore collects the light that passed through
one cell ``(i, j)`` of the pupil: the ``n_views x n_views`` pixels behind the lenslets form as
many *views* (sub-aperture images), each sampled at the lenslet pitch. A point at depth ``z``
appears in view ``(i, j)`` displaced in proportion to ``z`` and the cell's direction
(parallax), blurred by the diffraction of that small sub-aperture.

Model (a documented approximation of the wave-optics model of Broxton et al. 2013): the
intensity PSF of view ``(i, j)`` at depth ``z`` is

.. math:: h_{ij}(\\mathbf r, z) = \\left|\\mathcal F^{-1}\\left[P_{ij}(\\mathbf f)\\,
          e^{2\\pi i z \\sqrt{(n/\\lambda)^2 - |\\mathbf f|^2}}\\right](\\mathbf r)\\right|^2

(``P_ij`` the pupil disc ``|f| <= NA / lambda`` restricted to square cell ``(i, j)``; the
defocus phase is the exact Born-Wolf one of :mod:`fluorecon.simulate.psf`), computed on a grid
finer than the lenslet pitch and integrated over each lenslet area. The volume is sampled at the
lenslet pitch laterally; the light field is ``L_ij = sum_z h_ij(., z) * V_z`` (2D convolutions,
zero outside the field). Neglected: the lenslet's own diffraction and the sub-lenslet
(aliased) information Broxton's model exploits for super-resolution, crosstalk between
lenslets, and the pupil image's inversion (pixel ``(i, j)`` here is pupil cell ``(i, j)``).
This is the geometry VCD-Net trains on (views in, volume out).

References
----------
.. [1] M. Levoy, R. Ng, A. Adams, M. Footer, M. Horowitz, "Light field microscopy",
   ACM Trans. Graph. 25(3), 924-934, 2006.
.. [2] M. Broxton et al., "Wave optics theory and 3-D deconvolution for the light field
   microscope", Opt. Express 21(21), 25418-25439, 2013.
.. [3] Z. Wang et al., "Real-time volumetric reconstruction of biological dynamics with
   light-field microscopy and deep learning", Nat. Methods 18, 551-556, 2021 (VCD-Net).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft as sfft
from pydantic import Field, model_validator

from fluorecon.core.config import BaseConfig
from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import DataError, message
from fluorecon.core.rng import SeedLike, make_rng
from fluorecon.simulate.camera import CameraModel, camera_forward

__all__ = [
    "LightFieldImage",
    "LightFieldOperator",
    "LightFieldOptics",
    "lenslet_to_views",
    "lightfield_psf",
    "simulate_lightfield",
    "views_to_lenslet",
]


class LightFieldOptics(BaseConfig):
    """Optics of a light-field microscope, in sample-space units (micrometres).

    Examples
    --------
    >>> LightFieldOptics().n_views
    9
    """

    version: int = Field(default=1, ge=1, description="Schema version of this config.")
    na: float = Field(default=0.8, gt=0.0, lt=1.6, description="Objective numerical aperture.")
    wavelength: float = Field(default=0.52, gt=0.2, lt=2.0,
                              description="Emission wavelength, micrometres.")
    n_immersion: float = Field(default=1.33, ge=1.0, lt=2.0,
                               description="Refractive index of the immersion/sample medium.")
    lenslet_pitch: float = Field(
        default=1.5, gt=0.0,
        description="Lenslet pitch divided by the magnification (sample-space), micrometres.")
    n_views: int = Field(default=9, ge=3, le=31,
                         description="Sensor pixels behind one lenslet along each axis (odd).")
    kernel_size: int = Field(default=15, ge=3, le=101,
                             description="Lateral PSF support per view, lenslets (odd).")

    @model_validator(mode="after")
    def _check(self) -> "LightFieldOptics":
        if self.n_views % 2 == 0 or self.kernel_size % 2 == 0:
            raise ValueError(f"n_views ({self.n_views}) and kernel_size ({self.kernel_size}) "
                             "must be odd")
        if self.na >= self.n_immersion:
            raise ValueError(f"na {self.na} must be below n_immersion {self.n_immersion}")
        return self


def lightfield_psf(optics: LightFieldOptics, depths: Sequence[float]) -> np.ndarray:
    """Per-view, per-depth intensity PSFs of the light-field model.

    Parameters
    ----------
    optics : LightFieldOptics
        Microscope parameters.
    depths : sequence of float
        Axial positions of the volume planes relative to the native focal plane, micrometres.

    Returns
    -------
    ndarray, shape (n_views, n_views, n_depths, kernel_size, kernel_size)
        float32 kernels at the lenslet pitch, centred; for every depth the sum over views and
        pixels is 1 (each view receives its sub-aperture's share of the light).
    """
    z = np.asarray(depths, dtype=np.float64)
    if z.ndim != 1 or z.size < 1 or not np.all(np.isfinite(z)):
        raise DataError(message(f"depths {depths!r}", "a 1D list of finite depths in um",
                                "Pass e.g. numpy.linspace(-8, 8, 9)."))
    nv, ks = optics.n_views, optics.kernel_size
    os_ = max(3, int(math.ceil(optics.lenslet_pitch / (optics.wavelength / (4 * optics.na)))))
    m = ks * os_ + 2 * os_  # fine grid with a margin of one lenslet on each side
    dx = optics.lenslet_pitch / os_
    f = np.fft.fftfreq(m, d=dx)
    fy, fx = f[:, None], f[None, :]
    rad = optics.na / optics.wavelength
    disc = np.hypot(fy, fx) <= rad
    kz = np.sqrt(np.clip((optics.n_immersion / optics.wavelength) ** 2 - fy**2 - fx**2, 0, None))
    # Pupil cell (i, j): row i spans fy in [-rad + 2 rad i / nv, -rad + 2 rad (i + 1) / nv).
    cy = np.floor((fy + rad) / (2 * rad) * nv).astype(int)
    cx = np.floor((fx + rad) / (2 * rad) * nv).astype(int)
    out = np.zeros((nv, nv, z.size, ks, ks), dtype=np.float64)
    start = (m - ks * os_) // 2
    for iz, depth in enumerate(z):
        defocus = np.exp(2j * np.pi * depth * kz)
        for i in range(nv):
            for j in range(nv):
                pupil = disc & (cy == i) & (cx == j)
                if not np.any(pupil):
                    continue
                field = np.fft.fftshift(np.fft.ifft2(pupil * defocus))
                inten = np.abs(field) ** 2
                crop = inten[start:start + ks * os_, start:start + ks * os_]
                out[i, j, iz] = crop.reshape(ks, os_, ks, os_).sum(axis=(1, 3))
        total = out[:, :, iz].sum()
        if total > 0:
            out[:, :, iz] /= total
    return out.astype(np.float32)


def views_to_lenslet(views: np.ndarray) -> np.ndarray:
    """Rearrange views ``(nv, nv, ny, nx)`` into the sensor image ``(ny * nv, nx * nv)``:
    pixel ``(y * nv + i, x * nv + j)`` is view ``(i, j)`` at lenslet ``(y, x)``."""
    nv, nv2, ny, nx = views.shape
    return np.ascontiguousarray(views.transpose(2, 0, 3, 1).reshape(ny * nv, nx * nv2))


def lenslet_to_views(image: Any, n_views: int) -> np.ndarray:
    """Inverse of :func:`views_to_lenslet`: a rectified lenslet image (lenslets aligned with the
    pixel grid, ``n_views`` pixels each) to views ``(nv, nv, ny, nx)``."""
    check_image_array(image, name="lenslet image")
    arr = as_float32(image)
    if arr.ndim != 2 or arr.shape[0] % n_views or arr.shape[1] % n_views:
        raise DataError(message(f"a lenslet image of shape {arr.shape}",
                                f"a 2D image whose sides are multiples of n_views={n_views}",
                                "Rectify and crop the raw image to whole lenslets first."))
    ny, nx = arr.shape[0] // n_views, arr.shape[1] // n_views
    return np.ascontiguousarray(arr.reshape(ny, n_views, nx, n_views).transpose(1, 3, 0, 2))


class LightFieldOperator:
    """Linear forward operator ``A: volume (nz, ny, nx) -> views (nv, nv, ny, nx)`` and its
    exact adjoint, by zero-padded FFT convolution.

    Parameters
    ----------
    kernels : ndarray, shape (nv, nv, nz, k, k)
        View PSFs from :func:`lightfield_psf`.
    shape : (int, int)
        Lateral volume shape ``(ny, nx)`` in lenslets.
    workers : int
        Threads for ``scipy.fft``.

    Notes
    -----
    ``A x = C F^{-1} diag(K) F Z x`` with ``Z`` zero padding, ``C`` cropping and ``K`` the
    kernel spectra, so ``A^T y = Z^T F^{-1} diag(conj K) F C^T y`` exactly:
    ``<A x, y> = <x, A^T y>`` to rounding (the dot-product test).
    """

    def __init__(self, kernels: np.ndarray, shape: tuple[int, int], *, workers: int = 1) -> None:
        k = np.asarray(kernels, dtype=np.float32)
        if k.ndim != 5 or k.shape[0] != k.shape[1]:
            raise DataError(message(f"kernels of shape {k.shape}", "(nv, nv, nz, k, k)",
                                    "Build them with lightfield_psf."))
        self.n_views, self.nz = k.shape[0], k.shape[2]
        self.shape = (int(shape[0]), int(shape[1]))
        ks = k.shape[-2:]
        self.padded = tuple(sfft.next_fast_len(n + s - 1, real=True)
                            for n, s in zip(self.shape, ks))
        self.workers = workers
        wrapped = np.zeros(k.shape[:3] + self.padded, dtype=np.float32)
        cy, cx = ks[0] // 2, ks[1] // 2
        iy = (np.arange(ks[0]) - cy) % self.padded[0]
        ix = (np.arange(ks[1]) - cx) % self.padded[1]
        wrapped[..., iy[:, None], ix[None, :]] = k
        self._spec = sfft.rfftn(wrapped, axes=(-2, -1), workers=workers).astype(np.complex64)

    @property
    def volume_shape(self) -> tuple[int, int, int]:
        """Shape of the volumes this operator maps, ``(nz, ny, nx)``."""
        return (self.nz, *self.shape)

    @property
    def views_shape(self) -> tuple[int, int, int, int]:
        """Shape of the light fields it produces, ``(nv, nv, ny, nx)``."""
        return (self.n_views, self.n_views, *self.shape)

    def _fft(self, x: np.ndarray) -> np.ndarray:
        return sfft.rfftn(x, s=self.padded, axes=(-2, -1), workers=self.workers)

    def _ifft(self, s: np.ndarray) -> np.ndarray:
        out = sfft.irfftn(s, s=self.padded, axes=(-2, -1), workers=self.workers)
        return np.ascontiguousarray(out[..., : self.shape[0], : self.shape[1]], dtype=np.float32)

    def forward(self, volume: np.ndarray) -> np.ndarray:
        """Light field ``(nv, nv, ny, nx)`` of a volume ``(nz, ny, nx)`` (float32)."""
        vol = np.asarray(volume, dtype=np.float32)
        if vol.shape != self.volume_shape:
            raise DataError(message(f"a volume of shape {vol.shape}",
                                    f"shape {self.volume_shape}", "Match the operator's shape."))
        vs = self._fft(vol)  # (nz, py, px/2+1)
        spec = np.einsum("ijzyx,zyx->ijyx", self._spec, vs, optimize=True)
        return self._ifft(spec)

    def adjoint(self, views: np.ndarray) -> np.ndarray:
        """Adjoint (back-projection) of views ``(nv, nv, ny, nx)`` into a volume."""
        lf = np.asarray(views, dtype=np.float32)
        if lf.shape != self.views_shape:
            raise DataError(message(f"views of shape {lf.shape}", f"shape {self.views_shape}",
                                    "Match the operator's shape."))
        ls = self._fft(lf)
        spec = np.einsum("ijzyx,ijyx->zyx", np.conj(self._spec), ls, optimize=True)
        return self._ifft(spec)


@dataclass(frozen=True)
class LightFieldImage:
    """A simulated light-field acquisition.

    Attributes
    ----------
    lenslet : ndarray, shape (ny * nv, nx * nv)
        float32 sensor image in camera ADU.
    views : ndarray, shape (nv, nv, ny, nx)
        The same data rearranged into views (ADU).
    truth : ndarray, shape (nz, ny, nx)
        float32 volume in photons per voxel.
    depths : ndarray, shape (nz,)
        Plane positions, micrometres.
    optics : LightFieldOptics
    camera : CameraModel
    background : float
        Photons per sensor pixel.
    """

    lenslet: np.ndarray
    views: np.ndarray
    truth: np.ndarray
    depths: np.ndarray
    optics: LightFieldOptics
    camera: CameraModel
    background: float


def simulate_lightfield(volume: Any, *, optics: LightFieldOptics | None = None,
                        depths: Sequence[float] | None = None, photons: float = 200.0,
                        background: float = 5.0, camera: CameraModel | None = None,
                        rng: SeedLike, workers: int = 1) -> LightFieldImage:
    """Simulate the lenslet image of a volume (phantom) through the light-field model.

    Parameters
    ----------
    volume : array_like, shape (nz, ny, nx)
        Non-negative sample, laterally sampled at the lenslet pitch.
    optics : LightFieldOptics, optional
        Default :class:`LightFieldOptics`.
    depths : sequence of float, optional
        Plane positions in micrometres; default ``nz`` planes 2 um apart centred on focus.
    photons : float
        Expected photons in the brightest sensor pixel (99.9th percentile).
    background : float
        Uniform background photons per sensor pixel.
    camera : CameraModel, optional
        Default sCMOS.
    rng : int or Generator or None
        Noise seed.
    workers : int
        FFT threads.

    Returns
    -------
    LightFieldImage
    """
    check_image_array(volume, name="volume")
    vol = as_float32(volume)
    if vol.ndim != 3 or np.any(vol < 0):
        raise DataError(message(f"a volume of shape {vol.shape}", "a non-negative ZYX volume",
                                "Pass a 3D phantom (e.g. make_phantom('beads', (9, 48, 48)))."))
    opt = optics if optics is not None else LightFieldOptics()
    z = (np.asarray(depths, dtype=np.float64) if depths is not None
         else 2.0 * (np.arange(vol.shape[0]) - (vol.shape[0] - 1) / 2))
    if z.shape != (vol.shape[0],):
        raise DataError(message(f"{z.size} depths for {vol.shape[0]} planes",
                                "one depth per plane", "Pass len(depths) == nz."))
    op = LightFieldOperator(lightfield_psf(opt, z), vol.shape[1:], workers=workers)
    clean = np.clip(op.forward(vol), 0, None).astype(np.float64)
    level = float(np.percentile(clean, 99.9))
    if level <= 0:
        raise DataError(message("an all-zero volume", "some signal", "Pass a non-empty volume."))
    scale = photons / level
    cam = camera if camera is not None else CameraModel.scmos()
    views = camera_forward(clean * scale + background, cam, rng=make_rng(rng))
    return LightFieldImage(lenslet=views_to_lenslet(views), views=views,
                           truth=(vol * scale).astype(np.float32), depths=z, optics=opt,
                           camera=cam, background=float(background))
