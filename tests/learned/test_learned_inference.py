"""Fast inference paths (batch-norm folding, channels-last, reduced precision, batches)
agree with the plain fp32 network."""

import numpy as np
import pytest
import torch

from fluorecon.core import ConfigError
from fluorecon.methods.learned import CARE
from fluorecon.methods.learned.inference import (
    InferenceOptions,
    autocast_context,
    build_inference_net,
    fold_batch_norm,
)
from fluorecon.methods.learned.unet import UNet, UNetConfig


def _net_with_stats(ndim: int, norm: str = "batch") -> UNet:
    torch.manual_seed(0)
    net = UNet(UNetConfig(ndim=ndim, depth=2, base_filters=8, norm=norm, taper=True))
    for m in net.modules():  # non-trivial running statistics and affine parameters
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.mark.parametrize("ndim", [2, 3])
def test_folded_channels_last_net_equals_plain_net(ndim):
    net = _net_with_stats(ndim)
    x = torch.randn((2, 1) + (16,) * ndim)
    with torch.no_grad():
        ref = net(x)
    folded = fold_batch_norm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm3d)
                   for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm3d)
               for m in net.modules())  # the original is untouched
    fast = build_inference_net(net, InferenceOptions(), torch.device("cpu"), ndim)
    out = fast(x)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-4,
                               atol=1e-5 * float(ref.abs().max()))


def test_bf16_output_is_close_to_fp32_but_not_identical():
    net = _net_with_stats(2)
    x = torch.randn(1, 1, 32, 32)
    ref = build_inference_net(net, InferenceOptions(), torch.device("cpu"), 2)(x)
    low = build_inference_net(net, InferenceOptions(precision="bf16"), torch.device("cpu"), 2)(x)
    assert low.dtype == torch.float32
    err = float((low - ref).abs().max())
    span = float(ref.max() - ref.min())
    assert 0 < err < 0.03 * span  # ran in bf16 (differs), yet within bf16 rounding


def test_fp16_needs_cuda():
    with pytest.raises(ConfigError, match="CUDA"):
        autocast_context("fp16", torch.device("cpu"))


def test_method_predict_batch_and_precision(rng):
    clean = rng.random((48, 48)).astype(np.float32) * 10
    noisy = clean + rng.normal(0, 1, clean.shape).astype(np.float32)
    care = CARE(steps=3, patch_size=16, depth=2, base_filters=4, batch_size=2,
                validation_interval=3, norm="batch", taper=True).fit(noisy, clean, "YX")
    blocks = np.stack([noisy[:32, :32], noisy[16:, 16:]])
    batch = care.predict_batch(blocks, "YX")
    assert batch.shape == blocks.shape and batch.dtype == np.float32
    for b, p in zip(blocks, batch):
        np.testing.assert_allclose(care.predict_block(b, "YX"), p, rtol=1e-5, atol=1e-5)
    fp32 = care.predict(noisy, "YX")
    bf16 = care.set_inference(precision="bf16").predict(noisy, "YX")
    assert care.inference_options.precision == "bf16"
    rel = np.abs(bf16 - fp32).max() / (fp32.max() - fp32.min())
    assert 0 < rel < 0.03
    with pytest.raises(ConfigError, match="precision"):
        care.set_inference(precision="fp8")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's own imports
def test_compiled_net_equals_plain_net():
    net = _net_with_stats(2)
    x = torch.randn(1, 1, 16, 16)
    ref = build_inference_net(net, InferenceOptions(), torch.device("cpu"), 2)(x)
    comp = build_inference_net(net, InferenceOptions(compile=True), torch.device("cpu"), 2)
    np.testing.assert_allclose(comp(x).numpy(), ref.numpy(), rtol=1e-4,
                               atol=1e-5 * float(ref.abs().max()))


@pytest.mark.parametrize("ndim", [2, 3])
def test_memory_estimate_bounds_the_measured_peak(ndim):
    """The per-voxel estimate used to size tiles is at least the real activation peak,
    measured as tiled prediction runs: repeated calls under heap reuse, whose reused and
    fragmented blocks peak higher than one call with fresh blocks."""
    from pathlib import Path

    from fluorecon.core.heap import heap_reuse

    status = Path("/proc/self/status")
    if not status.exists() or not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to measure peak memory")
    rng = np.random.default_rng(0)
    axes = "YX" if ndim == 2 else "ZYX"
    x = rng.random((32,) * ndim).astype(np.float32)
    care = CARE(steps=1, patch_size=16, depth=2, base_filters=16, batch_size=2,
                validation_interval=1, taper=ndim == 2, norm="batch").fit(x, x, axes)
    care.predict(x, axes)  # warm-up: allocator pools, oneDNN kernels

    def peak_mb() -> float:
        line = next(ln for ln in status.read_text().splitlines() if ln.startswith("VmHWM"))
        return int(line.split()[1]) / 1024

    big = rng.random((768, 768) if ndim == 2 else (80, 80, 80)).astype(np.float32)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pytest.skip("cannot reset the peak RSS here")
    before = peak_mb()
    with heap_reuse():
        for _ in range(4):  # the heap's peak settles after two or three tiles
            care.predict_block(big, axes)
    used = (peak_mb() - before) * 2 ** 20 / big.size
    assert used < care.bytes_per_voxel, (used, care.bytes_per_voxel)
    assert care.bytes_per_voxel < 4 * max(used, 64)  # not absurdly conservative either
