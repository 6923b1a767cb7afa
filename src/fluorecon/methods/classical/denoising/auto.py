"""Automatic choice of the classical denoiser by the self-supervised (J-invariant) loss."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from fluorecon.core.errors import ConfigError, message
from fluorecon.methods.classical.denoising import bm3d as _bm3d
from fluorecon.methods.classical.denoising import gaussian as _gaussian
from fluorecon.methods.classical.denoising import nlm as _nlm
from fluorecon.methods.classical.denoising import tv as _tv
from fluorecon.methods.classical.denoising._common import DenoiseConfig, SelfCalibratedDenoiser
from fluorecon.methods.classical.denoising.calibration import (
    CalibrationResult,
    MaskedLoss,
    calibrate,
    calibration_region,
)
from fluorecon.methods.classical.denoising.noise import NoiseModel, estimate_noise_model
from fluorecon.methods.classical.denoising.pipeline import (
    DenoiseResult,
    Denoiser,
    _check_block,
    stabilize,
)
from fluorecon.methods.registry import register

__all__ = ["AutoDenoiseResult", "AutoDenoiser", "CANDIDATES", "denoise_auto"]

Candidate = Literal["gaussian", "tv", "nlm", "bm3d"]
CANDIDATES: tuple[str, ...] = ("gaussian", "tv", "nlm", "bm3d")
AUTO_CROP_2D = 256
AUTO_CROP_3D = (8, 64, 64)
#: Prior preference used only to break statistical ties (see :func:`select_candidate`):
#: BM3D is the strongest classical Gaussian denoiser in published comparisons (e.g. Zhang
#: et al. 2019 on FMD, Makitalo & Foi 2013 with the Anscombe transform). No order is assumed
#: among the others: tied candidates other than BM3D are ranked by their loss.
PREFERENCE: tuple[str, ...] = ("bm3d",)
#: Candidates whose loss exceeds the best by less than this many standard errors of the
#: paired per-pixel difference count as tied.
TIE_Z = 2.0


def select_candidate(errors: dict[str, np.ndarray], *, z: float = TIE_Z,
                     preference: Sequence[str] = PREFERENCE) -> tuple[str, dict[str, float]]:
    """Pick a denoiser from per-pixel J-invariant errors, with a one-standard-error rule.

    Parameters
    ----------
    errors : dict of str to ndarray
        Squared errors of each candidate on the *same* masked pixels.
    z : float
        Tie threshold in standard errors.
    preference : sequence of str
        Candidates in order of prior preference; the others come after, by loss.

    Returns
    -------
    name : str
        The chosen candidate.
    z_scores : dict of str to float
        For each candidate, (its loss - the lowest loss) / standard error of the paired
        difference (0 for the lowest).

    Notes
    -----
    The self-supervised loss of every candidate is the true error plus the same noise
    variance, estimated from a few thousand masked pixels; differences between good
    denoisers are often far smaller than that estimate's noise. Comparing candidates
    *paired* on the same pixels removes the shared noise; candidates whose mean paired
    difference to the lowest loss is below ``z`` standard errors are statistically tied,
    and among tied candidates the one preferred a priori is taken (the "one standard
    error rule" of model selection, Hastie, Tibshirani & Friedman 2009, sec. 7.10).
    """
    names = list(errors)
    means = {n: float(errors[n].mean()) for n in names}
    best = min(names, key=means.__getitem__)
    scores: dict[str, float] = {}
    for n in names:
        if n == best:
            scores[n] = 0.0
            continue
        d = errors[n] - errors[best]
        se = float(d.std(ddof=1)) / math.sqrt(d.size) if d.size > 1 else 0.0
        scores[n] = float(d.mean()) / se if se > 0 else math.inf
    ranked = [n for n in preference if n in names]
    ranked += sorted((n for n in names if n not in preference), key=means.__getitem__)
    tied = [n for n in ranked if scores[n] < z]
    return tied[0], scores


@dataclass(frozen=True)
class AutoDenoiseResult(DenoiseResult):
    """:class:`DenoiseResult` of :func:`denoise_auto`, with every candidate's calibration.

    Attributes
    ----------
    candidates : dict of str to CalibrationResult
        Calibration of each candidate on the same masked crop (losses comparable).
    skipped : dict of str to str
        Candidates not run, with the reason (e.g. ``bm3d`` not installed).
    z_scores : dict of str to float
        Each candidate's loss excess over the lowest, in standard errors of the paired
        per-pixel difference (see :func:`select_candidate`).
    """

    candidates: dict[str, CalibrationResult] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    z_scores: dict[str, float] = field(default_factory=dict)

    @property
    def chosen(self) -> str:
        """Name of the denoiser that was applied."""
        return str(self.calibration.best_parameters["method"])


def _spec(name: str, ndim: int) -> Denoiser:
    if name == "gaussian":
        return _gaussian.DENOISER
    if name == "tv":
        return _tv.DENOISER
    if name == "nlm":
        return _nlm._nlm_denoiser(5, 6 if ndim == 2 else 3)
    if name == "bm3d":
        return _bm3d.DENOISER
    raise ConfigError(message(f"candidate {name!r}", f"one of {', '.join(CANDIDATES)}",
                              "Check the spelling."))


def denoise_auto(image: np.ndarray, *, candidates: Sequence[str] = CANDIDATES,
                 noise_model: NoiseModel | None = None, vst: bool = True, stride: int = 4,
                 n_masks: int | None = None, crop: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> AutoDenoiseResult:
    """Calibrate every candidate denoiser and apply the best by the J-invariant loss.

    Candidates whose losses are statistically tied with the lowest (paired test on the
    same masked pixels, :func:`select_candidate`) are resolved in favour of BM3D.

    Parameters
    ----------
    image : numpy.ndarray
        2D or 3D noisy image. Not modified.
    candidates : sequence of str
        Denoisers to compare, from ``"gaussian"``, ``"tv"``, ``"nlm"``, ``"bm3d"``.
        ``"bm3d"`` is skipped (and recorded in ``skipped``) when the optional, non-commercial
        ``bm3d`` package is not installed.
    noise_model : NoiseModel, optional
        Known noise model; estimated from ``image`` if omitted.
    vst : bool
        Variance-stabilise (generalised Anscombe) before denoising.
    stride, n_masks : int
        J-invariant mask spacing and number of masks.
    crop : int, optional
        Edge length of the shared calibration crop (default 256 in 2D, 8 x 64 x 64 in 3D).
    progress : callable, optional
        ``progress(done, total)`` after each candidate.

    Returns
    -------
    AutoDenoiseResult
        ``calibration.best_parameters`` holds ``{"method": name, <parameter>: value}``;
        ``calibration.parameters_tested``/``losses`` list each candidate's best
        parameters and loss.

    Notes
    -----
    All candidates are calibrated on the *same* masked copies of the same crop of the
    variance-stabilised image, so their self-supervised losses are estimates of the same
    quantity (true MSE in the stabilised domain plus one common constant), and their
    per-pixel errors can be compared pairwise. The lowest loss wins unless a candidate
    preferred a priori is within ``TIE_Z`` standard errors of it.

    References
    ----------
    .. [1] J. Batson, L. Royer, "Noise2Self: Blind denoising by self-supervision", ICML
       (2019).
    """
    if not candidates:
        raise ConfigError(message("no candidates", "at least one denoiser",
                                  f"Choose from {', '.join(CANDIDATES)}."))
    img = _check_block(image)
    nm = noise_model if noise_model is not None else estimate_noise_model(img)
    st = stabilize(img, nm, vst=vst)
    z = st.forward(img)
    size: int | tuple[int, ...] = crop or (AUTO_CROP_2D if img.ndim == 2 else AUTO_CROP_3D)
    region = calibration_region(z, max_size=size)
    loss = MaskedLoss(z[region], stride=stride, n_masks=n_masks)

    results: dict[str, CalibrationResult] = {}
    skipped: dict[str, str] = {}
    specs: dict[str, Denoiser] = {}
    for i, name in enumerate(candidates, start=1):
        spec = _spec(name, img.ndim)
        if name == "bm3d" and not _bm3d.bm3d_available():
            skipped[name] = "bm3d package not installed (optional extra fluorecon[bm3d])"
            continue
        specs[name] = spec
        cal = calibrate(spec.fn, z, parameter_ranges={spec.parameter: spec.grid},
                        fixed=spec.fixed, method=name, loss=loss, refine=spec.refine)
        results[name] = CalibrationResult(cal.method, cal.best_parameters, cal.best_loss,
                                          cal.parameters_tested, cal.losses, region)
        if progress is not None:
            progress(i, len(candidates))
    names = list(results)
    errors = {n: loss.pixel_errors(specs[n].fn, **results[n].best_parameters, **specs[n].fixed)
              for n in names}
    best, z_scores = select_candidate(errors)
    spec = specs[best]
    params = results[best].best_parameters
    out = np.asarray(spec.fn(z, **params, **spec.fixed), dtype=np.float32)
    summary = CalibrationResult(
        method="auto", best_parameters={"method": best, **params},
        best_loss=results[best].best_loss,
        parameters_tested=tuple({"method": n, **results[n].best_parameters} for n in names),
        losses=tuple(results[n].best_loss for n in names), region=region)
    return AutoDenoiseResult(st.inverse(out), nm, summary, candidates=results, skipped=skipped,
                             z_scores=z_scores)


class AutoConfig(DenoiseConfig):
    """Config of :class:`AutoDenoiser`."""

    candidates: tuple[Candidate, ...] = Field(
        default=CANDIDATES, min_length=1,
        description="Denoisers compared by the self-supervised loss; bm3d (optional extra "
                    "fluorecon[bm3d], non-commercial licence) is skipped if not installed.")

    @field_validator("candidates")
    @classmethod
    def _unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError(f"candidates must be unique, got {list(v)}")
        return v


@register
class AutoDenoiser(SelfCalibratedDenoiser):
    """Self-calibrates gaussian, tv, nlm (and bm3d if installed) and applies the best.

    After :meth:`predict`, ``calibration_.best_parameters["method"]`` names the chosen
    denoiser and ``calibration_.losses`` holds every candidate's loss; ``candidates_``
    maps each candidate to its full calibration.
    """

    name: ClassVar[str] = "auto"
    Config: ClassVar[type[AutoConfig]] = AutoConfig
    summary: ClassVar[str] = "Best of gaussian/tv/nlm/bm3d by the J-invariant loss."
    config: Any

    def __init__(self, config: AutoConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.candidates_: dict[str, CalibrationResult] = {}

    def _run(self, block: np.ndarray) -> DenoiseResult:
        c = self.config
        kw = c.pipeline_kwargs()
        res = denoise_auto(block, candidates=c.candidates, **kw)
        self.candidates_ = res.candidates
        return res
