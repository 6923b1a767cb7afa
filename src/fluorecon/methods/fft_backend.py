"""Planned real FFTs over reusable aligned buffers: pyFFTW when available, ``scipy.fft`` otherwise.

Iterative deconvolution spends nearly all its time in FFTs of one fixed shape. This module
plans that shape once (FFTW ``MEASURE`` by default), keeps the aligned input/output buffers
alive across iterations so the caller can work on them in place, and caches FFTW *wisdom* on
disk so that the planning cost is paid once per shape and machine, not once per call.

Wisdom cache location (first that applies):

1. ``$FLUORECON_CACHE_DIR`` (tests point this at a temporary folder),
2. ``$XDG_CACHE_HOME/fluorecon``,
3. ``%LOCALAPPDATA%\\fluorecon\\cache`` on Windows,
4. ``~/.cache/fluorecon``.

The cache is a JSON file of FFTW's own (text) wisdom strings, never a pickle. Failing to read
or write it never fails a computation: planning simply takes longer.

Examples
--------
>>> fft = RealFFT((4, 6), backend="scipy")
>>> a = fft.empty_real()
>>> a[...] = 1.0
>>> spec = fft.forward(a)
>>> out = fft.inverse(fft.empty_real())  # unnormalised: N * a
>>> float(out[0, 0])
24.0
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Literal

import numpy as np

from fluorecon.core.errors import ConfigError, message

Backend = Literal["auto", "pyfftw", "scipy"]
Effort = Literal["auto", "estimate", "measure", "patient"]

BACKENDS: tuple[str, ...] = ("auto", "pyfftw", "scipy")
EFFORTS: tuple[str, ...] = ("auto", "estimate", "measure", "patient")

#: ``effort="auto"`` measures (times candidate plans) from this many elements on; smaller
#: transforms take milliseconds either way and are planned by estimate.
MEASURE_MIN_SIZE = 1 << 18
#: Without an explicit ``threads``, transforms smaller than this run on one thread: below
#: it, a transform takes a few ms and FFTW's thread synchronisation costs more than it
#: saves; with other CPU-bound processes on the machine it can cost 10-30x.
THREADS_MIN_SIZE = 1 << 21
#: Cap on FFTW planning time per transform, seconds (FFTW keeps the best plan found).
#: Measured on a 128x256x256 float32 transform pair with 2 threads: unlimited MEASURE
#: planning took 3.2 s for 23.8 ms per transform, a 0.5 s cap 1.1 s for 24.9 ms; the cap
#: pays for itself unless a shape is transformed more than ~2000 times.
PLANNING_TIME_LIMIT = 0.5

CACHE_ENV = "FLUORECON_CACHE_DIR"

# Wisdom files already imported into this process (FFTW wisdom is process-global).
_IMPORTED_WISDOM: set[str] = set()


def cache_dir() -> Path:
    """Return the per-user cache folder of fluorecon (not created here).

    Returns
    -------
    pathlib.Path
        ``$FLUORECON_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/fluorecon``, else
        ``%LOCALAPPDATA%/fluorecon/cache`` on Windows, else ``~/.cache/fluorecon``.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "fluorecon"
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "fluorecon" / "cache"
    return Path.home() / ".cache" / "fluorecon"


def wisdom_path() -> Path:
    """Path of the FFTW wisdom file for this machine architecture and pyFFTW version."""
    try:
        import pyfftw

        version = pyfftw.__version__
    except ImportError:  # pragma: no cover - only without pyfftw
        version = "none"
    return cache_dir() / f"fftw-wisdom-{platform.machine() or 'cpu'}-pyfftw{version}.json"


def default_threads() -> int:
    """Number of CPU cores this process may use (affinity-aware), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except OSError:  # pragma: no cover
            pass
    return max(1, os.cpu_count() or 1)


def have_pyfftw() -> bool:
    """True if pyFFTW can be imported."""
    try:
        import pyfftw  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    """Map ``"auto"`` to ``"pyfftw"`` when installed, else ``"scipy"``; validate the name."""
    if backend not in BACKENDS:
        raise ConfigError(message(f"FFT backend {backend!r}", f"one of {', '.join(BACKENDS)}",
                                  "Use backend='auto'."))
    if backend == "auto":
        return "pyfftw" if have_pyfftw() else "scipy"
    if backend == "pyfftw" and not have_pyfftw():
        raise ConfigError(message("FFT backend 'pyfftw' but pyFFTW is not installed",
                                  "an installed pyFFTW",
                                  "pip install pyfftw, or use backend='scipy'."))
    return backend


def _load_wisdom(path: Path) -> None:
    key = str(path)
    if key in _IMPORTED_WISDOM:
        return
    _IMPORTED_WISDOM.add(key)
    try:
        data = json.loads(path.read_text(encoding="ascii"))
        wisdom = tuple(data[k].encode("ascii") for k in ("double", "single", "longdouble"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeError):
        return
    import pyfftw

    pyfftw.import_wisdom(wisdom)


def _save_wisdom(path: Path) -> None:
    import pyfftw

    wisdom = pyfftw.export_wisdom()
    data = {k: w.decode("ascii") for k, w in zip(("double", "single", "longdouble"), wisdom)}
    data["pyfftw"] = pyfftw.__version__
    try:
        old = json.loads(path.read_text(encoding="ascii"))
        if all(old.get(k) == data[k] for k in ("double", "single", "longdouble")):
            return
    except (OSError, ValueError):
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data), encoding="ascii")
        os.replace(tmp, path)  # atomic: concurrent writers never leave a torn file
    except OSError:
        return


class RealFFT:
    """A planned pair of unnormalised real FFTs over all axes of one shape.

    ``forward(a)`` computes ``rfftn(a)`` into the complex buffer :attr:`spectrum` and returns
    it; ``inverse(out)`` computes the *unnormalised* ``irfftn`` of :attr:`spectrum` into
    ``out`` (so ``inverse(forward(a))`` equals ``N * a`` with ``N = prod(shape)``; scale by
    :attr:`scale` yourself, ideally folded into a transfer function). ``inverse`` may
    overwrite :attr:`spectrum`.

    Parameters
    ----------
    shape : tuple of int
        Real-space shape (any number of dimensions), float32 data.
    backend : {"auto", "pyfftw", "scipy"}
        ``"auto"`` uses pyFFTW when installed.
    threads : int, optional
        Threads per transform; default: all CPU cores available to this process for
        transforms of 2**21 elements or more, one below. On a machine shared with other
        CPU-bound jobs pass ``threads=1``: FFTW's threads stall when a core is taken.
    effort : {"auto", "estimate", "measure", "patient"}
        FFTW planner effort (pyFFTW only). ``"measure"`` times candidate algorithms once
        (seconds for large 3D shapes, capped at 60 s) and caches the result as wisdom on
        disk; ``"auto"`` measures from 2**18 elements on and estimates below.
    use_wisdom : bool
        Read and update the on-disk wisdom cache (pyFFTW only; see :func:`cache_dir`).

    Attributes
    ----------
    backend : str
        Resolved backend, ``"pyfftw"`` or ``"scipy"``.
    spectral_shape : tuple of int
        Shape of the complex64 half spectrum, ``shape[:-1] + (shape[-1] // 2 + 1,)``.
    planning_seconds : float
        Wall time spent planning (0 for scipy; near 0 with warm wisdom).

    Notes
    -----
    With pyFFTW, real buffers handed to :meth:`forward` / :meth:`inverse` should come from
    :meth:`empty_real` (SIMD-aligned, C-contiguous); other arrays are copied through an
    internal buffer, which costs time but stays correct. The buffers are overwritten
    while planning, so plan before filling them (the constructor plans).
    """

    def __init__(self, shape: tuple[int, ...], *, backend: Backend | str = "auto",
                 threads: int | None = None, effort: Effort | str = "auto",
                 use_wisdom: bool = True) -> None:
        self.shape = tuple(int(s) for s in shape)
        if not self.shape or any(s < 1 for s in self.shape):
            raise ConfigError(message(f"FFT shape {self.shape}", "positive sizes",
                                      "Pass the shape of a non-empty array."))
        if effort not in EFFORTS:
            raise ConfigError(message(f"FFT planner effort {effort!r}",
                                      f"one of {', '.join(EFFORTS)}", "Use effort='measure'."))
        if threads is not None and int(threads) < 1:
            raise ConfigError(message(f"threads={threads}", "at least 1",
                                      "Leave threads unset to use all cores."))
        self.backend = resolve_backend(str(backend))
        self.spectral_shape = self.shape[:-1] + (self.shape[-1] // 2 + 1,)
        self.size = int(np.prod(self.shape))
        if threads is not None:
            self.threads = int(threads)
        else:
            self.threads = default_threads() if self.size >= THREADS_MIN_SIZE else 1
        if effort == "auto":
            effort = "measure" if self.size >= MEASURE_MIN_SIZE else "estimate"
        self.effort = str(effort)
        self.scale = 1.0 / self.size
        self.planning_seconds = 0.0
        self._axes = tuple(range(len(self.shape)))
        if self.backend == "pyfftw":
            self._plan_pyfftw(use_wisdom)
        else:
            self.spectrum = np.zeros(self.spectral_shape, dtype=np.complex64)

    # -- buffers ---------------------------------------------------------------------
    def empty_real(self) -> np.ndarray:
        """A new zeroed float32 array of :attr:`shape`, aligned for the planned transforms."""
        if self.backend == "pyfftw":
            import pyfftw

            return pyfftw.zeros_aligned(self.shape, dtype=np.float32)
        return np.zeros(self.shape, dtype=np.float32)

    def _plan_pyfftw(self, use_wisdom: bool) -> None:
        import pyfftw

        path = wisdom_path() if use_wisdom else None
        if path is not None and self.effort != "estimate":
            _load_wisdom(path)
        flag = f"FFTW_{self.effort.upper()}"
        t0 = time.perf_counter()
        real = pyfftw.zeros_aligned(self.shape, dtype=np.float32)
        spec = pyfftw.zeros_aligned(self.spectral_shape, dtype=np.complex64)
        self._fwd = pyfftw.FFTW(real, spec, axes=self._axes, direction="FFTW_FORWARD",
                                flags=(flag,), threads=self.threads,
                                planning_timelimit=PLANNING_TIME_LIMIT)
        self._inv = pyfftw.FFTW(spec, real, axes=self._axes, direction="FFTW_BACKWARD",
                                flags=(flag, "FFTW_DESTROY_INPUT"), threads=self.threads,
                                planning_timelimit=PLANNING_TIME_LIMIT)
        self.planning_seconds = time.perf_counter() - t0
        spec[...] = 0
        real[...] = 0
        self.spectrum = spec
        self._real = real
        if path is not None and self.effort != "estimate":
            _save_wisdom(path)

    def _aligned(self, a: np.ndarray) -> bool:
        import pyfftw

        return (a.dtype == np.float32 and a.shape == self.shape and a.flags.c_contiguous
                and pyfftw.is_byte_aligned(a, n=pyfftw.simd_alignment))

    # -- transforms ------------------------------------------------------------------
    def forward(self, a: np.ndarray) -> np.ndarray:
        """Real-to-complex FFT of ``a`` (float32, :attr:`shape`) into :attr:`spectrum`.

        ``a`` is not modified. Returns :attr:`spectrum` (complex64, :attr:`spectral_shape`).
        """
        if self.backend == "scipy":
            import scipy.fft

            self.spectrum = scipy.fft.rfftn(np.asarray(a, dtype=np.float32), axes=self._axes,
                                            workers=self.threads)
            return self.spectrum
        if not self._aligned(a):
            np.copyto(self._real, a, casting="same_kind")
            a = self._real
        if self._fwd.input_array is not a:
            self._fwd.update_arrays(a, self.spectrum)
        self._fwd.execute()
        return self.spectrum

    def inverse(self, out: np.ndarray) -> np.ndarray:
        """Unnormalised complex-to-real FFT of :attr:`spectrum` into ``out``; returns ``out``.

        :attr:`spectrum` is destroyed. ``out`` must be float32 of :attr:`shape`.
        """
        if out.shape != self.shape or out.dtype != np.float32:
            raise ValueError(f"inverse needs a float32 output of shape {self.shape}, got "
                             f"{out.dtype} {out.shape}")
        if self.backend == "scipy":
            import scipy.fft

            res = scipy.fft.irfftn(self.spectrum, s=self.shape, axes=self._axes,
                                   workers=self.threads, norm="forward", overwrite_x=True)
            np.copyto(out, res, casting="same_kind")
            return out
        target = out if self._aligned(out) else self._real
        if self._inv.output_array is not target:
            self._inv.update_arrays(self.spectrum, target)
        self._inv.execute()
        if target is not out:
            np.copyto(out, target)
        return out

    def __repr__(self) -> str:
        return (f"RealFFT(shape={self.shape}, backend={self.backend!r}, threads={self.threads}, "
                f"effort={self.effort!r})")


def fast_length(n: int) -> int:
    """Smallest integer >= ``n`` whose prime factors are 2, 3, 5 and 7 (fast for FFTW/pocketfft)."""
    if n < 1:
        raise ValueError(f"length must be >= 1, got {n}")
    best = 1 << (n - 1).bit_length()
    p7 = 1
    while p7 < best:
        p5 = p7
        while p5 < best:
            p3 = p5
            while p3 < best:
                p = p3
                while p < n:
                    p *= 2
                best = min(best, p)
                p3 *= 3
            p5 *= 5
        p7 *= 7
    return best

