"""Hallucination and generalisation tests.

Two questions of the review [1]_ answered with numbers:

*Can the trust maps see a hallucination?* :func:`injected_hallucination_test` inserts
artificial structures (beads or short filaments) that the measurement does not support
into a reconstruction, and measures with the area under the ROC curve (AUROC) how well the
data-consistency score (:mod:`~fluorecon.trust.consistency`) and, for ensembles, the
members' disagreement single them out from the rest of the image.

*Can we discover structures not present in the training data?*
:func:`generalisation_test` trains a method on one structure class (e.g. filaments),
tests it on others (beads, rings, nuclei) and on its own class, and reports the fidelity
per class together with maps of where the network invented or erased structure.

References
----------
.. [1] M. Belthangady, L. A. Royer, "Applications, promises, and pitfalls of deep learning
   for fluorescence image reconstruction", Nature Methods 16, 1215 (2019).
.. [2] T. Fawcett, "An introduction to ROC analysis", Pattern Recognition Letters 27,
   861 (2006).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import ndimage as ndi
from scipy import stats

from fluorecon.core.dtypes import as_float32
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.core.rng import SeedLike, make_rng
from fluorecon.methods.base import Method
from fluorecon.methods.classical.denoising.noise import NoiseModel
from fluorecon.normalize import affine_fit
from fluorecon.simulate.pairs import simulate_pair
from fluorecon.trust.consistency import ForwardModel, IdentityForward, check_consistency

__all__ = [
    "ClassFidelity", "GeneralisationResult", "InjectionResult", "auroc", "generalisation_test",
    "inject_structures", "injected_hallucination_test",
]


def auroc(scores: Any, labels: Any, *, max_negatives: int = 500_000,
          seed: SeedLike = 0) -> float:
    """Area under the ROC curve of ``scores`` for the binary ``labels``.

    Parameters
    ----------
    scores : array_like
        Detection scores (higher: more likely positive).
    labels : array_like of bool
        Same shape; True for positives.
    max_negatives : int
        Negatives are subsampled (seeded) to this many for speed.
    seed : int or Generator

    Returns
    -------
    float
        ``P(score_pos > score_neg) + 0.5 P(equal)`` (Mann-Whitney U / (n_pos n_neg)).
        0.5 is chance, 1 perfect separation.
    """
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels, bool).ravel()
    if s.shape != y.shape:
        raise DataError(message(f"{s.size} scores and {y.size} labels", "one label per score",
                                "Pass arrays of one shape."))
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        raise DataError(message(f"{pos.size} positives and {neg.size} negatives",
                                "both classes", "Check the labels."))
    if neg.size > max_negatives:
        neg = make_rng(seed).choice(neg, size=max_negatives, replace=False)
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def inject_structures(image: Any, *, kind: Literal["beads", "filaments"] = "beads",
                      n: int = 8, amplitude: float = 1.0, width: float = 1.5,
                      length: int = 12, margin: int | None = None, seed: SeedLike = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Add bright artificial structures to an image.

    Parameters
    ----------
    image : array_like, ``YX`` or ``ZYX``
    kind : {"beads", "filaments"}
        Gaussian spots of std ``width``, or straight segments of ``length`` pixels
        blurred by ``width`` (filaments: 2D, or every Z plane of a volume at one Z).
    n : int
        Number of structures, placed uniformly at random (not overlapping the margin).
    amplitude : float
        Peak added intensity (image units).
    width : float
        Gaussian std in pixels.
    length : int
        Segment length (filaments).
    margin : int, optional
        Distance from the border (default ``ceil(3 width) + 1``).
    seed : int or Generator

    Returns
    -------
    injected : ndarray, float32
        ``image + structure``.
    structure : ndarray, float32
        What was added (peak ``amplitude``).
    """
    img = as_float32(np.asarray(image))
    if img.ndim not in (2, 3):
        raise DataError(message(f"a {img.ndim}D image", "2D or 3D", "Pass YX or ZYX."))
    if n < 1 or amplitude <= 0 or width <= 0 or length < 1:
        raise ConfigError(message(f"n={n}, amplitude={amplitude}, width={width}, "
                                  f"length={length}", "positive values",
                                  "Pass e.g. n=8, amplitude=1, width=1.5."))
    rng = make_rng(seed)
    mg = int(np.ceil(3 * width)) + 1 if margin is None else int(margin)
    if kind == "filaments":
        mg = max(mg, length // 2 + 1)
    if any(s <= 2 * mg for s in img.shape[-2:]):
        raise DataError(message(f"an image of shape {img.shape}", f"Y and X larger than "
                                f"{2 * mg}", "Use a larger image or a smaller width."))
    seedmap = np.zeros(img.shape, np.float64)
    for _ in range(n):
        pos = [int(rng.integers(mg, s - mg)) if i >= img.ndim - 2
               else int(rng.integers(0, s)) for i, s in enumerate(img.shape)]
        if kind == "beads":
            seedmap[tuple(pos)] += 1.0
        elif kind == "filaments":
            theta = rng.uniform(0, np.pi)
            t = np.linspace(-length / 2, length / 2, 4 * length)
            yy = np.clip(np.rint(pos[-2] + t * np.sin(theta)).astype(int), 0, img.shape[-2] - 1)
            xx = np.clip(np.rint(pos[-1] + t * np.cos(theta)).astype(int), 0, img.shape[-1] - 1)
            lead = tuple(pos[:-2])
            seedmap[lead + (yy, xx)] = 1.0
        else:
            raise ConfigError(message(f"kind={kind!r}", "'beads' or 'filaments'",
                                      "Pick a structure kind."))
    sig = [width] * img.ndim
    if kind == "filaments" and img.ndim == 3:
        sig[0] = 0.0
    blob = ndi.gaussian_filter(seedmap, sig, mode="constant")
    peak = blob.max()
    structure = (blob * (amplitude / peak)).astype(np.float32) if peak > 0 else \
        np.zeros(img.shape, np.float32)
    return (img + structure).astype(np.float32), structure


@dataclass(frozen=True)
class InjectionResult:
    """Outcome of :func:`injected_hallucination_test`.

    Attributes
    ----------
    auroc : dict of str to float
        AUROC of each score map: ``"consistency"`` (local residual ``|z|``), and with
        ensemble members ``"ensemble_std"`` (members' spread after one member
        hallucinates) and ``"combined"`` (sum of the two, each divided by its median).
    positives, negatives : int
        Pixels counted as injected / clean (the ring between them is left out).
    amplitude : float
        Peak of the inserted structures (reconstruction units).
    amplitude_sigma : float
        Peak after re-imaging, in units of the measurement noise std at the median level:
        how visible the hallucination is against the noise.
    detected_fraction : float
        Fraction of the injected structures overlapping a flagged region.
    false_flag_fraction : float
        Fraction of clean pixels flagged, counting only pixels farther from every
        structure than half the largest window (a window reaching a structure may
        rightly flag its centre).
    injected : ndarray
        The tampered reconstruction.
    structure_mask : ndarray of bool
        Positive pixels on the measurement grid.
    """

    auroc: dict[str, float]
    positives: int
    negatives: int
    amplitude: float
    amplitude_sigma: float
    detected_fraction: float
    false_flag_fraction: float
    injected: np.ndarray = field(repr=False)
    structure_mask: np.ndarray = field(repr=False)


def injected_hallucination_test(measurement: Any, reconstruction: Any,
                                forward: ForwardModel | None = None, *,
                                members: Any = None, noise: NoiseModel | None = None,
                                units: str | tuple[float, float] = "fit",
                                kind: Literal["beads", "filaments"] = "beads", n: int = 8,
                                amplitude: float = 0.3, width: float = 1.5,
                                windows: Sequence[int] = (3, 7, 15), alpha: float = 0.01,
                                seed: SeedLike = 0) -> InjectionResult:
    """Insert unsupported structures into a reconstruction and score their detection.

    Parameters
    ----------
    measurement : array_like
        The measured image the reconstruction came from.
    reconstruction : array_like
        An (honest) reconstruction of it (for ensembles: the ensemble mean).
    forward : ForwardModel, optional
        Default identity (denoising).
    members : array_like, optional
        ``(K, *shape)`` ensemble member predictions. The structures are inserted into
        member 0 only (a hallucination of one network), and the members' std is scored.
    noise : NoiseModel, optional
        Noise model of the measurement (default estimated from it).
    units : "fit", "same" or (alpha, beta)
        See :func:`~fluorecon.trust.consistency.check_consistency`. With ``"fit"`` the
        units are fitted on the honest reconstruction and reused for the tampered one
        (a hallucination must not be absorbed by the units fit).
    kind, n, width
        See :func:`inject_structures`.
    amplitude : float
        Peak of the inserted structures as a fraction of the reconstruction's 0.1-99.9
        percentile range.
    windows, alpha
        See :func:`~fluorecon.trust.consistency.check_consistency`.
    seed : int or Generator

    Returns
    -------
    InjectionResult

    Notes
    -----
    Positives are the measurement pixels where the re-imaged structure exceeds 25 % of
    its peak; negatives where it is below 1 % (pixels in between are ambiguous and left
    out). The scores are compared by :func:`auroc`.
    """
    y = as_float32(np.asarray(measurement))
    x = as_float32(np.asarray(reconstruction))
    fwd = forward if forward is not None else IdentityForward()
    honest = check_consistency(y, x, fwd, noise=noise, units=units, windows=windows,
                               alpha=alpha)
    lo, hi = np.percentile(x, [0.1, 99.9])
    amp = float(amplitude * max(hi - lo, 1e-12))
    tampered, structure = inject_structures(x, kind=kind, n=n, amplitude=amp, width=width,
                                            seed=seed)
    res = check_consistency(y, tampered, fwd, noise=honest.noise,
                            units=(honest.alpha, honest.beta), windows=windows, alpha=alpha)
    s_meas = fwd.apply(structure) * honest.alpha
    peak = float(s_meas.max())
    pos = s_meas > 0.25 * peak
    neg = s_meas < 0.01 * peak
    # clean pixels beyond the reach of the largest window around any structure
    far = ndi.distance_transform_edt(~(s_meas > 0.01 * peak)) > max(windows) // 2 + 1
    scores: dict[str, np.ndarray] = {"consistency": res.score}
    if members is not None:
        mem = as_float32(np.asarray(members))
        if mem.ndim != x.ndim + 1 or mem.shape[1:] != x.shape or mem.shape[0] < 2:
            raise DataError(message(f"members of shape {mem.shape}",
                                    f"(K >= 2, *{x.shape})", "Stack the member predictions."))
        mem = mem.copy()
        mem[0] = mem[0] + structure
        std = mem.std(axis=0)
        std_meas = fwd.apply(std) if fwd.name != "identity" else std
        scores["ensemble_std"] = std_meas
        c = res.score / max(float(np.median(res.score)), 1e-12)
        e = std_meas / max(float(np.median(std_meas)), 1e-12)
        scores["combined"] = c + e
    keep = pos | neg
    aucs = {k: auroc(v[keep], pos[keep], seed=seed) for k, v in scores.items()}
    med = float(np.median(res.reimaged))
    sigma = float(np.sqrt(max(float(honest.noise.variance(med)), 1e-12)))
    labels, count = ndi.label(structure > 0.25 * amp)
    hit = 0
    for lab in range(1, count + 1):
        region = labels == lab
        if fwd.name == "identity" and res.flagged[region].any():
            hit += 1
    if fwd.name != "identity":
        lab_m, count_m = ndi.label(pos)
        count = count_m
        hit = sum(bool(res.flagged[lab_m == k].any()) for k in range(1, count_m + 1))
    return InjectionResult(
        auroc=aucs, positives=int(pos.sum()), negatives=int(neg.sum()), amplitude=amp,
        amplitude_sigma=peak / sigma, detected_fraction=hit / max(count, 1),
        false_flag_fraction=float(res.flagged[far].mean()) if far.any() else 0.0,
        injected=tampered,
        structure_mask=pos)


# -- generalisation ------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassFidelity:
    """Fidelity on one structure class (metrics after a least-squares affine fit of the
    image onto the ground truth, so units do not matter).

    Attributes
    ----------
    structure : str
    in_training : bool
    psnr_input, psnr_prediction : float
        dB, data range = ground truth 0.1-99.9 percentile range.
    ssim_input, ssim_prediction : float
    invented, erased : float
        Fractions of pixels where the fitted prediction exceeds (falls short of) the truth
        by more than ``tau`` times the truth's range.
    """

    structure: str
    in_training: bool
    psnr_input: float
    psnr_prediction: float
    ssim_input: float
    ssim_prediction: float
    invented: float
    erased: float


@dataclass(frozen=True)
class GeneralisationResult:
    """Per-class fidelity table and example maps."""

    train_structure: str
    rows: list[ClassFidelity]
    examples: dict[str, dict[str, np.ndarray]] = field(repr=False)
    tau: float = 0.2

    def table(self) -> list[list[object]]:
        """Rows ``[structure, in training, PSNR in, PSNR out, SSIM in, SSIM out,
        invented %, erased %]``."""
        return [[r.structure, "yes" if r.in_training else "no", r.psnr_input,
                 r.psnr_prediction, r.ssim_input, r.ssim_prediction, 100 * r.invented,
                 100 * r.erased] for r in self.rows]


def _fitted(img: np.ndarray, ref: np.ndarray) -> np.ndarray:
    a, b = affine_fit(img, ref)
    return (a * img.astype(np.float64) + b).astype(np.float32)


def _fidelity(img: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    from skimage.metrics import structural_similarity

    lo, hi = np.percentile(ref, [0.1, 99.9])
    rng_ = max(float(hi - lo), 1e-12)
    f = _fitted(img, ref)
    mse = float(np.mean((f.astype(np.float64) - ref) ** 2))
    psnr = float(10 * np.log10(rng_ ** 2 / max(mse, 1e-30)))
    small = min(ref.shape)
    win = max(3, min(7, small if small % 2 else small - 1))
    ssim = float(structural_similarity(f, ref.astype(np.float32), data_range=rng_,
                                       win_size=win))
    return psnr, ssim


def invention_maps(prediction: Any, truth: Any, *, tau: float = 0.2
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Where a prediction invents (``> truth + tau R``) or erases (``< truth - tau R``)
    structure, after an affine fit onto the truth (``R``: truth 0.1-99.9 percentile
    range)."""
    t = as_float32(np.asarray(truth))
    f = _fitted(as_float32(np.asarray(prediction)), t)
    lo, hi = np.percentile(t, [0.1, 99.9])
    d = f - t
    thr = tau * max(float(hi - lo), 1e-12)
    return d > thr, d < -thr


def generalisation_test(make_method: Callable[[], Method], *, train_structure: str = "filaments",
                        test_structures: Sequence[str] = ("filaments", "beads", "rings",
                                                          "nuclei"),
                        task: str = "denoise", shape: Sequence[int] = (96, 96),
                        photons: float = 20.0, n_train: int = 4, n_test: int = 2,
                        tau: float = 0.2, seed: int = 0,
                        fit_kwargs: dict[str, Any] | None = None) -> GeneralisationResult:
    """Train on one structure class, test on several, report fidelity per class.

    Parameters
    ----------
    make_method : callable
        Returns a fresh, untrained supervised method with
        ``fit(inputs, targets, axes, **fit_kwargs)`` (e.g. ``lambda: CARE(steps=300)``).
    train_structure : str
        Phantom class of the training pairs
        (:func:`~fluorecon.simulate.phantoms.make_phantom`).
    test_structures : sequence of str
        Classes tested (include ``train_structure`` for the in-distribution reference).
    task : {"denoise", "deconvolve"}
        Simulated task (:func:`~fluorecon.simulate.pairs.simulate_pair`).
    shape : sequence of int
        Image shape (``YX`` or ``ZYX``).
    photons : float
        Peak photons of the simulations.
    n_train, n_test : int
        Training pairs; test images per class.
    tau : float
        Invention/erasure threshold (see :func:`invention_maps`).
    seed : int
        Training pairs use seeds ``seed, ...``; test pairs seeds from ``seed + 1000``.
    fit_kwargs : dict, optional
        Extra arguments of ``fit``.

    Returns
    -------
    GeneralisationResult
        One :class:`ClassFidelity` per test class (means over ``n_test`` images) and, per
        class, the maps of the first test image: input, truth, prediction, invented,
        erased.
    """
    if task not in ("denoise", "deconvolve"):
        raise ConfigError(message(f"task {task!r}", "denoise or deconvolve",
                                  "Pick a task with input and target on one grid."))
    if n_train < 1 or n_test < 1:
        raise ConfigError(message(f"n_train={n_train}, n_test={n_test}", "at least 1 each",
                                  "Pass positive counts."))
    axes = "YX" if len(shape) == 2 else "ZYX"
    train = [simulate_pair(task, shape, phantom=train_structure,  # type: ignore[arg-type]
                           photons=photons, seed=seed + i) for i in range(n_train)]
    method = make_method()
    fit = getattr(method, "fit")
    fit([p.input for p in train], [p.target for p in train], axes, **(fit_kwargs or {}))
    rows: list[ClassFidelity] = []
    examples: dict[str, dict[str, np.ndarray]] = {}
    for k, cls in enumerate(test_structures):
        vals = []
        for j in range(n_test):
            p = simulate_pair(task, shape, phantom=cls, photons=photons,  # type: ignore[arg-type]
                              seed=seed + 1000 + 100 * k + j)
            pred = method.predict(p.input, axes)
            pin, sin = _fidelity(p.input, p.target)
            pout, sout = _fidelity(pred, p.target)
            inv, era = invention_maps(pred, p.target, tau=tau)
            vals.append((pin, pout, sin, sout, float(inv.mean()), float(era.mean())))
            if j == 0:
                examples[cls] = {"input": p.input, "truth": p.target, "prediction": pred,
                                 "invented": inv, "erased": era}
        m = np.mean(np.array(vals), axis=0)
        rows.append(ClassFidelity(structure=cls, in_training=cls == train_structure,
                                  psnr_input=float(m[0]), psnr_prediction=float(m[1]),
                                  ssim_input=float(m[2]), ssim_prediction=float(m[3]),
                                  invented=float(m[4]), erased=float(m[5])))
    return GeneralisationResult(train_structure=train_structure, rows=rows,
                                examples=examples, tau=tau)
