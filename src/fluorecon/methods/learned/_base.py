"""What every learned method shares: config fields, data preparation, normalisation,
training via :func:`~fluorecon.methods.learned.training.train`, whole-block prediction,
and model folders."""

from __future__ import annotations

from abc import abstractmethod

import datetime
import hashlib
import itertools
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import torch
from pydantic import Field, model_validator

from fluorecon.core.axes import check_axes, spatial_axes, to_canonical
from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import AxesError, ConfigError, DataError, InputFileError, message
from fluorecon.core.heap import heap_reuse
from fluorecon.methods.base import Method, MethodConfig
from fluorecon.methods.learned.inference import InferenceNet, InferenceOptions, build_inference_net
from fluorecon.methods.learned.model_io import ModelConfig, load_model, package_versions, save_model
from fluorecon.methods.learned.training import (
    Objective,
    PatchSampler,
    ProgressFn,
    TrainingConfig,
    TrainResult,
    data_fingerprint,
    read_history_csv,
    train,
)
from fluorecon.methods.learned.unet import UNet, UNetConfig
from fluorecon.normalize import (
    DEFAULT_MAX_SAMPLES,
    NormParams,
    compute_meanstd_params,
    compute_norm_params,
)
from fluorecon.normalize.percentile import lattice_strides

#: Environment variable overriding the number of CPU threads torch uses (default: all).
THREADS_ENV = "FLUORECON_NUM_THREADS"

#: Config fields added after checkpoints were first written, with their defaults: left out
#: of a run's fingerprint at these values, so checkpoints written before them still resume.
_ADDED_FIELDS: dict[str, object] = {"rotate": True, "struct_mask": "none", "struct_span": 5,
                                     "precision": "fp32"}

_SelfSupervised = TypeVar("_SelfSupervised", bound="SelfSupervisedMethod")


class LearnedConfig(MethodConfig, TrainingConfig):
    """Fields shared by every learned method: U-Net, training and normalisation."""

    depth: int = Field(default=2, ge=1, le=5, description="U-Net depth (2x downsamplings).")
    base_filters: int = Field(default=32, ge=1, le=512, description="U-Net filters at the "
                                                                    "top level.")
    kernel_size: int = Field(default=3, ge=1, le=9, description="Convolution size (odd).")
    norm: Literal["none", "batch", "group"] = Field(default="none", description="Normalisation "
                                                    "layers in the U-Net.")
    taper: bool = Field(default=False, description="CSBDeep/CAREamics U-Net layout (decoder "
                                                   "levels end with half their filters).")
    upsampling: Literal["nearest", "linear"] = Field(
        default="nearest", description="U-Net decoder upsampling: nearest, or (bi/tri)linear "
                                       "as CAREamics.")
    probabilistic: bool = Field(default=False, description="Predict a per-pixel Laplace "
                                                           "scale too (trained by its NLL).")
    loss: Literal["mse", "mae", "laplace"] | None = Field(
        default=None, description="Training loss; default laplace if probabilistic, "
                                  "else mse.")
    normalization: Literal["percentile", "meanstd"] = Field(
        default="meanstd", description="Intensity normalisation of inputs and targets, "
                                       "computed over all training images: meanstd (zero "
                                       "mean, unit variance; CAREamics) or percentile "
                                       "(norm_low/norm_high to [0, 1]; CSBDeep).")
    norm_low: float = Field(default=1.0, ge=0, le=100, description="Low percentile of the "
                                                                   "normalisation.")
    norm_high: float = Field(default=99.8, ge=0, le=100, description="High percentile of the "
                                                                     "normalisation.")

    @model_validator(mode="after")
    def _check_learned(self) -> "LearnedConfig":
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.norm_low >= self.norm_high:
            raise ValueError(f"norm_low {self.norm_low} must be below norm_high "
                             f"{self.norm_high}")
        if self.loss is not None and (self.loss == "laplace") != self.probabilistic:
            raise ValueError("loss='laplace' goes with probabilistic=True and only with it")
        sizes = (self.patch_size,) if isinstance(self.patch_size, int) else self.patch_size
        div = 2 ** self.depth
        if any(s % div for s in sizes):
            raise ValueError(f"patch_size {self.patch_size} must be divisible by "
                             f"2**depth = {div}")
        return self

    @property
    def loss_name(self) -> str:
        """The loss actually used."""
        if self.loss is not None:
            return self.loss
        return "laplace" if self.probabilistic else "mse"

    def training_config(self) -> TrainingConfig:
        """The :class:`TrainingConfig` part of this config."""
        return TrainingConfig(**{k: getattr(self, k) for k in TrainingConfig.model_fields})


def configure_threads() -> int:
    """Let torch use every CPU core (or ``$FLUORECON_NUM_THREADS``); return the count."""
    env = os.environ.get(THREADS_ENV)
    n = int(env) if env else (os.cpu_count() or 1)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def split_images(images: Any, axes: str, *, name: str) -> tuple[list[np.ndarray], str]:
    """Turn an array or a list of arrays with ``axes`` into ``(C, *spatial)`` float32 arrays.

    ``S`` and ``T`` axes are split into separate images; ``C`` becomes the first axis
    (added with size 1 when absent). Returns the list and the spatial axes.
    """
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    if not items:
        raise DataError(message(f"an empty list of {name}", "at least one image",
                                "Pass an array or a non-empty list."))
    out: list[np.ndarray] = []
    sp = ""
    for k, img in enumerate(items):
        check_image_array(img, name=f"{name}[{k}]")
        up = check_axes(axes, ndim=len(img.shape))
        canon, perm = to_canonical(up)
        arr = np.transpose(as_float32(img), perm)
        sp_k = spatial_axes(up)
        if sp and sp_k != sp:
            raise AxesError(message(f"{name} with spatial axes {sp_k!r} and {sp!r}",
                                    "one spatial layout", "Pass images of one kind."))
        sp = sp_k
        lead = [a for a in canon if a in "ST"]
        if "C" not in canon:
            arr = np.expand_dims(arr, len(lead))
        lead_shape = arr.shape[: len(lead)]
        for idx in itertools.product(*(range(n) for n in lead_shape)):
            out.append(np.ascontiguousarray(arr[idx]))
    return out, sp


def norm_over_images(images: Sequence[np.ndarray], *, low: float, high: float,
                     block_axes: str, statistic: str = "percentile") -> NormParams:
    """Normalisation of a list of ``(C, *spatial)`` images, pooled over images.

    Each image contributes a regular-lattice subsample (at most
    ``DEFAULT_MAX_SAMPLES / len(images)`` values per channel, as in
    :func:`~fluorecon.normalize.compute_norm_params`); the percentiles ``low``/``high``
    (``statistic="percentile"``) or the mean and standard deviation (``"meanstd"``) are
    taken per channel over the union. The result has ``axes=block_axes`` (``"CYX"``, ...)
    when there are several channels, and no axes (one pooled pair) for one channel.
    """
    budget = max(1, DEFAULT_MAX_SAMPLES // len(images))
    parts = []
    for im in images:
        strides = lattice_strides(tuple(im.shape), 0, budget)
        parts.append(im[tuple(slice(None, None, s) for s in strides)].reshape(im.shape[0], -1))
    values = np.concatenate(parts, axis=1)

    def estimate(v: np.ndarray, axes: str | None) -> NormParams:
        if statistic == "meanstd":
            return compute_meanstd_params(v, axes=axes, max_samples=None)
        return compute_norm_params(v, low=low, high=high, axes=axes, max_samples=None)

    if values.shape[0] == 1:
        return estimate(values, None)
    return estimate(values[:, None, :], "CYX").model_copy(update={"axes": block_axes})


def predict_joint_channels(predict_block: Callable[[np.ndarray, str], np.ndarray],
                           image: Any, axes: str, *, out_channels: int,
                           progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Apply a multi-channel ``predict_block`` to every ``C``-joint block of ``image``.

    ``axes`` (checked, with a ``C`` axis) may hold ``S``/``T`` axes too, which are looped
    over; each block goes to ``predict_block`` as ``"C" + spatial axes`` and must come
    back with ``out_channels`` channels. Returns float32 in ``axes`` order.
    """
    arr = as_float32(image)
    sp = spatial_axes(axes)
    lead = [i for i, a in enumerate(axes) if a not in sp and a != "C"]
    order = lead + [axes.index("C")] + [axes.index(a) for a in sp]
    moved = np.transpose(arr, order)
    out_shape = list(moved.shape)
    out_shape[len(lead)] = out_channels
    out = np.empty(out_shape, np.float32)
    blocks = list(itertools.product(*(range(n) for n in moved.shape[: len(lead)])))
    for done, idx in enumerate(blocks, start=1):
        out[idx] = predict_block(np.ascontiguousarray(moved[idx]), "C" + sp)
        if progress is not None:
            progress(done, len(blocks))
    return np.transpose(out, np.argsort(order))


class LearnedMethod(Method):
    """Base of learned methods: a U-Net trained by the shared engine.

    After :meth:`fit` (or :meth:`load`) the method holds the network (:attr:`net`), the
    :class:`~fluorecon.methods.learned.model_io.ModelConfig` (:attr:`model_config`) and the
    training history; :meth:`predict` then normalises with the stored training-data
    percentiles, applies the network to whole blocks and maps the result back to the
    targets' units.
    """

    Config: ClassVar[type[LearnedConfig]] = LearnedConfig

    def __init__(self, config: LearnedConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.config: LearnedConfig
        self.net: UNet | None = None
        self.model_config: ModelConfig | None = None
        self.history: list[dict[str, float]] = []
        self.train_result: TrainResult | None = None
        self._device = torch.device("cpu")
        self.inference_options = InferenceOptions()
        self._inference: InferenceNet | None = None

    def set_inference(self, options: InferenceOptions | None = None, **kwargs: Any
                      ) -> "LearnedMethod":
        """Choose how prediction runs the network (precision, compile, layout).

        Parameters
        ----------
        options : InferenceOptions, optional
        **kwargs
            :class:`~fluorecon.methods.learned.inference.InferenceOptions` fields, e.g.
            ``precision="bf16"``, ``compile=True``.

        Returns
        -------
        LearnedMethod
            ``self``. The prepared network is rebuilt at the next prediction.
        """
        if options is not None and kwargs:
            raise TypeError("pass either options or keyword fields, not both")
        self.inference_options = options or InferenceOptions.build(**kwargs)
        self._inference = None
        return self

    def _inference_net(self) -> InferenceNet:
        net, mc = self._require_trained()
        if self._inference is None or self._inference.device != self._device:
            self._inference = build_inference_net(net, self.inference_options, self._device,
                                                  mc.unet.ndim)
        return self._inference

    # -- subclass hooks --------------------------------------------------------------
    def _unet_config(self, ndim: int, in_channels: int, out_channels: int) -> UNetConfig:
        c = self.config
        base = UNetConfig(ndim=ndim, in_channels=in_channels, out_channels=out_channels,
                          depth=c.depth, base_filters=c.base_filters,
                          kernel_size=c.kernel_size, norm=c.norm,
                          groups=math.gcd(8, c.base_filters), probabilistic=c.probabilistic,
                          taper=c.taper, upsampling=c.upsampling)
        overrides = self._unet_overrides(in_channels, out_channels)
        return base.model_copy(update=overrides) if overrides else base

    def _unet_overrides(self, in_channels: int, out_channels: int) -> dict[str, Any]:
        """Method-specific :class:`UNetConfig` fields (``residual``, ``n2v2``, ...)."""
        return {}

    @abstractmethod
    def _objective(self) -> Objective:
        """The training objective (loss and masking) of this method."""

    def _noise_model(self) -> dict[str, Any] | None:
        return None

    # -- properties ------------------------------------------------------------------
    @property
    def is_trained(self) -> bool:
        """Whether the method holds a trained network."""
        return self.net is not None and self.model_config is not None

    @property
    def receptive_field(self) -> int | None:
        """Half-width (pixels) an output depends on; None with group norm (unbounded)."""
        if self.config.norm == "group":
            return None
        return self._unet_config(2, 1, 1).receptive_field

    @property
    def bytes_per_voxel(self) -> float:
        """Estimated peak working memory of prediction per network-input voxel (bytes).

        Prediction runs the network's lean forward pass (:meth:`UNet._features_lean`),
        whose peak is at the top level: the decoder's input buffer and one convolution
        output, ``e_1 + 2 f_0`` float32 channels per voxel (``f_0`` the top-level filters,
        ``e_1`` the channels leaving the level below), times a margin, plus the NumPy
        copies of the block around the network (normalised, padded, denormalised:
        ``16 (c_in + 2 c_out) + 32``). The margin (3 in 2D, 5 in 3D) covers oneDNN's
        working buffers and the heap: prediction runs under
        :func:`~fluorecon.core.heap.heap_reuse`, whose freed blocks are reused but can
        fragment, so repeated tiles peak above a single call with fresh ``mmap`` blocks.
        Measured per voxel (peak over five calls on one block, in separate processes):
        depth 2, 32 tapered filters, 768x768: 423 with fresh blocks, 651-844 under heap
        reuse (estimate 1232); 16 filters, 80^3: 477 and 608-1044 (estimate 1360);
        32 filters, 80^3: 994 and 1637-1661 (estimate 2640). Before the model knows its
        dimensionality the 3D margin is used. A test checks the estimate bounds the
        measured peak of repeated calls under heap reuse in 2D and 3D.
        """
        cin, cout = self.channel_counts or (1, 1)
        f0 = self.config.base_filters
        e1 = f0 if self.config.taper else 2 * f0
        ndim = self.model_config.unet.ndim if self.model_config is not None else 3
        margin = 3.0 if ndim == 2 else 5.0
        return 4.0 * margin * (e1 + 2 * f0) + 16.0 * (cin + 2 * cout) + 32.0

    @property
    def channel_counts(self) -> tuple[int, int] | None:
        """``(in, out)`` channels of a multi-channel model (which takes ``C`` jointly);
        None for single-channel models (which treat ``C`` like ``S``/``T``)."""
        if self.model_config is None or "C" not in self.model_config.axes:
            return None
        return self.model_config.unet.in_channels, self.model_config.unet.out_channels

    @property
    def divisible_by(self) -> int:
        """Spatial sizes the network needs (blocks are padded to it internally)."""
        return 2 ** self.config.depth

    def _require_trained(self) -> tuple[UNet, ModelConfig]:
        if self.net is None or self.model_config is None:
            raise ConfigError(message(f"an untrained {self.name!r} method",
                                      "a trained model", "Call fit(...) or load a model "
                                      "folder first."))
        return self.net, self.model_config

    # -- training --------------------------------------------------------------------
    def _fit(self, xs: list[np.ndarray], ys: list[np.ndarray], sp: str, *, same: bool,
             data_info: dict[str, Any], checkpoint_dir: str | os.PathLike[str] | None,
             resume: bool, progress: ProgressFn | None, device: str | None) -> None:
        if len(sp) not in self.spatial_dims:
            raise AxesError(message(f"{len(sp)}D training data for {self.name!r}",
                                    "2D or 3D data", "Check the axes."))
        cin, cout = xs[0].shape[0], ys[0].shape[0]
        if any(x.shape[0] != cin for x in xs) or any(y.shape[0] != cout for y in ys):
            raise DataError(message("training images with different channel counts",
                                    "one channel count for all inputs (and for all targets)",
                                    "Pass consistent images."))
        cfg = self.config
        block_axes = "C" + sp if (cin > 1 or cout > 1) else sp
        in_norm = norm_over_images(xs, low=cfg.norm_low, high=cfg.norm_high,
                                   block_axes="C" + sp, statistic=cfg.normalization)
        out_norm = in_norm if same else norm_over_images(ys, low=cfg.norm_low,
                                                         high=cfg.norm_high,
                                                         block_axes="C" + sp,
                                                         statistic=cfg.normalization)
        xn = [np.asarray(in_norm.normalize(x, axes="C" + sp if in_norm.n_channels > 1
                                           else None), np.float32) for x in xs]
        yn = xn if same else [np.asarray(out_norm.normalize(
            y, axes="C" + sp if out_norm.n_channels > 1 else None), np.float32) for y in ys]
        unet_cfg = self._unet_config(len(sp), cin, cout)
        tcfg = cfg.training_config()
        sampler = PatchSampler(xn, yn, tcfg.patch_shape(len(sp)),
                               validation_fraction=tcfg.validation_fraction,
                               foreground_weight=tcfg.foreground_weight)
        fp = hashlib.blake2b(digest_size=16)
        fp.update(self.name.encode())
        # steps are left out, so a finished run can be extended to more steps; fields added
        # later are left out at their defaults, so older checkpoints still resume
        dump = {k: v for k, v in cfg.model_dump(mode="json", exclude={"steps"}).items()
                if k not in _ADDED_FIELDS or v != _ADDED_FIELDS[k]}
        fp.update(json.dumps(dump, sort_keys=True).encode())
        fp.update(unet_cfg.to_json().encode())
        fp.update(data_fingerprint(xs + ([] if same else ys)).encode())
        threads = configure_threads()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            net = UNet(unet_cfg)
        result = train(net, sampler, self._objective(), tcfg, fingerprint=fp.hexdigest(),
                       checkpoint_dir=checkpoint_dir, resume=resume, progress=progress,
                       device=device)
        net.eval()
        self._device = next(net.parameters()).device
        self.net = net
        self._inference = None
        self.train_result = result
        self.history = result.history
        data = {**data_info, **result.data, "fingerprint": data_fingerprint(xs + ys)}
        self.model_config = ModelConfig(
            method=self.name, method_config=cfg.model_dump(mode="json"), unet=unet_cfg,
            axes=block_axes, input_norm=in_norm, target_norm=out_norm,
            noise_model=self._noise_model(), training_data=data,
            versions=package_versions(), seed=cfg.seed,
            provenance={"created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                            timespec="seconds"),
                        "steps_done": result.steps_done, "best_step": result.best_step,
                        "best_val_loss": (None if math.isnan(result.best_val_loss)
                                          else result.best_val_loss),
                        "stopped_early": result.stopped_early,
                        "final_weights": result.final_weights,
                        "training_time_s": round(result.history[-1]["time_s"], 3)
                        if result.history else 0.0,
                        "device": str(self._device), "torch_threads": threads,
                        "precision": result.precision, "loss": self._objective().loss})

    # -- prediction ------------------------------------------------------------------
    def _block_axes_ok(self, axes: str, mc: ModelConfig) -> str:
        up = check_axes(axes)
        sp = spatial_axes(up)
        if len(sp) != mc.unet.ndim or up not in (sp, "C" + sp):
            raise AxesError(message(f"block axes {axes!r} for a {mc.unet.ndim}D model with "
                                    f"axes {mc.axes!r}", f"axes {mc.axes!r}",
                                    "Pass blocks in the model's layout (see model_config."
                                    "axes)."))
        if "C" in mc.axes and not up.startswith("C"):
            raise AxesError(message(f"block axes {axes!r} without C for a multi-channel "
                                    f"model", f"axes {mc.axes!r}", "Include the C axis."))
        return up

    def _forward(self, block: np.ndarray, axes: str) -> tuple[np.ndarray, np.ndarray | None]:
        mean, scale = self._forward_batch(np.asarray(block)[None], axes)
        return mean[0], None if scale is None else scale[0]

    def _forward_batch(self, batch: np.ndarray, axes: str
                       ) -> tuple[np.ndarray, np.ndarray | None]:
        """Network outputs for a batch ``(B, *block)`` of blocks with ``axes``."""
        _, mc = self._require_trained()
        up = self._block_axes_ok(axes, mc)
        x = as_float32(batch)
        if x.ndim != len(up) + 1:
            raise AxesError(message(f"a batch of {x.ndim - 1}D blocks with block axes "
                                    f"{up!r}", f"{len(up)}D blocks after the batch axis",
                                    "Pass blocks shaped like the axes."))
        if not up.startswith("C"):
            x = x[:, None]
        cin = mc.unet.in_channels
        if x.shape[1] != cin:
            raise DataError(message(f"a block with {x.shape[1]} channels",
                                    f"{cin} channels as in training", "Pass the channels "
                                    "the model was trained on."))
        csp = "C" + spatial_axes(up)
        in_axes = csp if mc.input_norm.n_channels > 1 else None
        xn = np.stack([np.asarray(mc.input_norm.normalize(b, axes=in_axes), np.float32)
                       for b in x])
        div = mc.unet.divisible_by
        pads = [(0, 0), (0, 0)] + [(0, (-n) % div) for n in x.shape[2:]]
        if any(p[1] for p in pads):
            xn = np.pad(xn, pads, mode="reflect" if all(
                n > p[1] for n, p in zip(x.shape[2:], pads[2:])) else "symmetric")
        configure_threads()
        out = self._inference_net()(torch.from_numpy(np.ascontiguousarray(xn))).cpu().numpy()
        crop = (slice(None), slice(None)) + tuple(slice(0, n) for n in x.shape[2:])
        out = out[crop]
        cout = mc.unet.out_channels
        tn = mc.target_norm
        caxes = csp if tn.n_channels > 1 else None
        mean = np.stack([np.asarray(tn.denormalize(o[:cout], axes=caxes), np.float32)
                         for o in out])
        scale = (np.stack([np.asarray(tn.denormalize_scale(o[cout:], axes=caxes), np.float32)
                           for o in out]) if mc.unet.probabilistic else None)
        if not up.startswith("C"):
            mean = mean[:, 0]
            scale = None if scale is None else scale[:, 0]
        return mean, scale

    def predict_batch(self, batch: np.ndarray, axes: str) -> np.ndarray:
        """Apply the network to a batch of equally shaped blocks in one call.

        Parameters
        ----------
        batch : ndarray
            ``(B, *block)``; each block as in :meth:`predict_block`.
        axes : str
            Axes of one block (``"YX"``, ``"CZYX"``, ...), without the batch axis.

        Returns
        -------
        ndarray, float32
            ``(B, *block_out)``: the predictions, as :meth:`predict_block` would give.
        """
        return self._forward_batch(batch, axes)[0]

    def predict_block(self, block: np.ndarray, axes: str) -> np.ndarray:
        """Apply the trained network to one whole block.

        Parameters
        ----------
        block : ndarray
            ``"YX"``/``"ZYX"`` for single-channel models, ``"CYX"``/``"CZYX"`` (with the
            training channel count) for multi-channel ones; intensities in the units of the
            training inputs. Spatial sizes are padded (reflection) to a multiple of
            :attr:`divisible_by` and the result cropped back.
        axes : str

        Returns
        -------
        ndarray, float32
            The prediction (for probabilistic models: the Laplace location) in the units of
            the training targets, with ``out_channels`` along ``C`` when ``C`` is present.
        """
        return self._forward(block, axes)[0]

    def predict_laplace_batch(self, batch: np.ndarray, axes: str
                              ) -> tuple[np.ndarray, np.ndarray]:
        """Laplace location and scale for a batch ``(B, *block)`` (probabilistic models)."""
        mean, scale = self._forward_batch(batch, axes)
        if scale is None:
            raise ConfigError(message(f"a {self.name!r} model trained with "
                                      "probabilistic=False", "a probabilistic model",
                                      "Train with probabilistic=True."))
        return mean, scale

    def predict_laplace_block(self, block: np.ndarray, axes: str
                              ) -> tuple[np.ndarray, np.ndarray]:
        """Location and scale (target units) of the predicted per-pixel Laplace distribution.

        Only for ``probabilistic=True`` models. The scale ``b`` gives a per-pixel standard
        deviation of ``sqrt(2) * b``.
        """
        mean, scale = self.predict_laplace_batch(np.asarray(block)[None], axes)
        return mean[0], scale[0]

    @heap_reuse()
    def predict(self, image: Any, axes: str, *,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Apply the model to ``image`` (see :meth:`Method.predict`).

        Single-channel models treat a ``C`` axis like ``S``/``T`` (each channel on its own).
        Multi-channel models take the ``C`` axis jointly and return ``out_channels`` along
        it; the other non-spatial axes are looped over.
        """
        _, mc = self._require_trained()
        if "C" not in mc.axes:
            return super().predict(image, axes, progress=progress)
        axes = self.check_input(image, axes)
        if "C" not in axes:
            raise AxesError(message(f"axes {axes!r} for a model with {mc.unet.in_channels} "
                                    "input channels", "a C axis", "Pass e.g. axes='CYX'."))
        return predict_joint_channels(self.predict_block, image, axes,
                                      out_channels=mc.unet.out_channels, progress=progress)

    # -- files -----------------------------------------------------------------------
    def save(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the model folder (see :mod:`~fluorecon.methods.learned.model_io`)."""
        net, mc = self._require_trained()
        return save_model(folder, mc, net.state_dict(), self.history, overwrite=overwrite)

    @classmethod
    def load(cls, folder: str | os.PathLike[str], *, device: str | None = None
             ) -> "LearnedMethod":
        """Load a model folder written by :meth:`save` (weights checked, nothing unpickled)."""
        mc, tensors = load_model(folder)
        if mc.method != cls.name:
            raise InputFileError(message(f"a {mc.method!r} model in {folder}",
                                         f"a {cls.name!r} model", "Load it with "
                                         "fluorecon.methods.learned.load_model_method()."))
        try:
            config = cls.Config.build(**mc.method_config)
        except ConfigError as exc:
            raise InputFileError(message(f"a method config in {folder} that does not "
                                         f"validate ({exc})", f"a valid {cls.name} config",
                                         "Restore config.json from the original "
                                         "model.")) from None
        inst = cls(config)
        net = UNet(mc.unet)
        net.load_state_dict(tensors)
        dev = torch.device(device) if device is not None else torch.device("cpu")
        inst.net = net.to(dev).eval()
        inst._device = dev
        inst._inference = None
        inst.model_config = mc
        hist = Path(folder) / "history.csv"
        inst.history = read_history_csv(hist) if hist.is_file() else []
        return inst


class SelfSupervisedMethod(LearnedMethod):
    """Base of learned denoisers trained on the noisy images alone (Noise2Void, N2V2,
    Noise2Self).

    A subclass supplies its masking :meth:`_objective` and describes the masking for the
    model folder in :meth:`_masking_info`. The network has no residual connection: it would
    hand the network the value (or replacement) of the masked pixel it must predict.
    """

    def _unet_overrides(self, in_channels: int, out_channels: int) -> dict[str, Any]:
        return {"residual": False}

    @abstractmethod
    def _masking_info(self) -> dict[str, Any]:
        """The masking settings recorded in the model's ``training_data["masking"]``."""

    def fit(self: _SelfSupervised, images: Any, axes: str, *,
            checkpoint_dir: str | os.PathLike[str] | None = None, resume: bool = False,
            progress: ProgressFn | None = None, device: str | None = None
            ) -> _SelfSupervised:
        """Train on noisy images alone (the images to denoise can be the training data).

        Parameters
        ----------
        images : array_like or list of array_like
            Noisy images; ``S``/``T`` axes hold separate images, ``C`` channels (predicted
            jointly; masked as the method's objective says).
        axes : str
            Axes of every image.
        checkpoint_dir, resume, progress, device
            As in :meth:`CARE.fit <fluorecon.methods.learned.care.CARE.fit>`.

        Returns
        -------
        SelfSupervisedMethod
            ``self``, trained.
        """
        xs, sp = split_images(images, axes, name="images")
        info = {"images_axes": check_axes(axes), "images": len(xs),
                "masking": self._masking_info()}
        self._fit(xs, xs, sp, same=True, data_info=info, checkpoint_dir=checkpoint_dir,
                  resume=resume, progress=progress, device=device)
        return self
