"""The training engine: sampling, augmentation, losses, determinism, checkpoints/resume,
progress, history."""

import math

import numpy as np
import pytest
import torch

from fluorecon.core import ConfigError, DataError, OutputExistsError
from fluorecon.methods.learned.training import (
    PatchSampler,
    SupervisedObjective,
    TrainingConfig,
    augment_batch,
    default_learning_rate,
    native_bf16,
    pixel_loss,
    plot_history,
    read_history_csv,
    train,
    training_precision,
    write_history_csv,
)
from fluorecon.methods.learned.unet import UNet, UNetConfig


def _data(n=2, shape=(48, 64), seed=0):
    rng = np.random.default_rng(seed)
    ys = [rng.random((1,) + shape, dtype=np.float32) for _ in range(n)]
    xs = [y + 0.3 * rng.standard_normal(y.shape).astype(np.float32) for y in ys]
    return xs, ys


def _net(seed=0, ndim=2):
    torch.manual_seed(seed)
    return UNet(UNetConfig(ndim=ndim, depth=1, base_filters=4))


def _cfg(**kw):
    base = dict(patch_size=16, batch_size=4, steps=12, learning_rate=1e-2,
                validation_interval=4, validation_patches=4, checkpoint_interval=5, seed=3)
    base.update(kw)
    return TrainingConfig(**base)


def _weights(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_validation_split_is_disjoint_and_at_the_end():
    xs, ys = _data(shape=(40, 100))
    s = PatchSampler(xs, ys, (16, 16), validation_fraction=0.2)
    tr, va = s.train_regions[0], s.val_regions[0]
    assert va.start == (0, 80) and va.shape == (40, 20) and tr.shape == (40, 80)
    vx, vy = s.validation_set(10, np.random.default_rng(0))
    assert vx.shape == (10, 1, 16, 16)
    with pytest.raises(DataError, match="room for a training and a validation patch"):
        PatchSampler(xs, ys, (16, 60), validation_fraction=0.1)
    with pytest.raises(DataError, match="at least the patch shape"):
        PatchSampler(xs, ys, (64, 16))


def test_foreground_weighting_finds_the_signal():
    y = np.zeros((1, 128, 128), np.float32)
    y[0, 100:120, 100:120] = 1.0
    s = PatchSampler([y], [y], (16, 16), validation_fraction=0.0, foreground_weight=1.0)
    u = PatchSampler([y], [y], (16, 16), validation_fraction=0.0)
    rng = np.random.default_rng(0)
    hit_fg = np.mean([s.train_batch(1, rng, augment=False)[1].max() > 0 for _ in range(200)])
    hit_un = np.mean([u.train_batch(1, rng, augment=False)[1].max() > 0 for _ in range(200)])
    assert hit_fg > 0.95 and hit_un < 0.3


def test_augmentation_keeps_pairs_aligned_and_covers_the_group():
    rng = np.random.default_rng(1)
    x = rng.random((64, 1, 8, 8)).astype(np.float32)
    ax, ay = augment_batch(x, x * 2, rng)
    assert np.array_equal(ay, ax * 2)
    seen = {ax[i].tobytes() for i in range(64)}
    variants = {np.rot90(x[0], k, axes=(-2, -1))[..., ::f].tobytes()
                for k in range(4) for f in (1, -1)}
    # each output is one of the 8 dihedral images of its input
    assert all(ax[i].tobytes() in {np.rot90(x[i], k, axes=(-2, -1))[..., ::f].tobytes()
                                   for k in range(4) for f in (1, -1)} for i in range(64))
    assert len(variants) == 8 and len(seen) == 64
    z = rng.random((4, 1, 3, 8, 8)).astype(np.float32)  # 3D: Z never flipped
    az, _ = augment_batch(z, z, rng)
    assert all(np.allclose(np.sort(az[i, 0, k].ravel()), np.sort(z[i, 0, k].ravel()))
               for i in range(4) for k in range(3))


def test_losses_match_their_formulas():
    rng = np.random.default_rng(2)
    y = torch.from_numpy(rng.random((2, 1, 4, 4)).astype(np.float32))
    mu = torch.from_numpy(rng.random((2, 1, 4, 4)).astype(np.float32))
    b = torch.full_like(mu, 0.5)
    w = torch.zeros_like(y)
    w[0, 0, 1, 2] = 1.0
    assert math.isclose(float(pixel_loss(mu, y, None, "mse")), float(((mu - y) ** 2).mean()),
                        rel_tol=1e-6)
    assert math.isclose(float(pixel_loss(mu, y, w, "mae")),
                        float((mu - y).abs()[0, 0, 1, 2]), rel_tol=1e-6)
    nll = math.log(1.0) + float((mu - y).abs().mean()) / 0.5
    assert math.isclose(float(pixel_loss(torch.cat([mu, b], 1), y, None, "laplace")), nll,
                        rel_tol=1e-5)
    with pytest.raises(ValueError, match="probabilistic"):
        pixel_loss(mu, y, None, "laplace")


def test_seeded_training_is_deterministic_and_progress_is_reported():
    xs, ys = _data()
    calls = []
    runs = []
    for _ in range(2):
        net = _net()
        res = train(net, PatchSampler(xs, ys, (16, 16)), SupervisedObjective(), _cfg(),
                    device="cpu", progress=lambda s, t, logs: calls.append((s, t, dict(logs))))
        runs.append(_weights(net))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert [c[0] for c in calls[:12]] == list(range(1, 13)) and calls[0][1] == 12
    assert "val_loss" in calls[3][2] and "val_loss" not in calls[2][2]
    assert res.steps_done == 12 and [r["step"] for r in res.history] == [4, 8, 12]
    net = _net()
    train(net, PatchSampler(xs, ys, (16, 16)), SupervisedObjective(), _cfg(seed=4),
          device="cpu")
    assert not all(torch.equal(runs[0][k], v) for k, v in _weights(net).items())


@pytest.mark.parametrize("schedule,stop_at", [("plateau", 7), ("cosine", 5), ("plateau", 10)])
def test_interrupt_then_resume_equals_uninterrupted(tmp_path, schedule, stop_at):
    xs, ys = _data()
    cfg = _cfg(lr_schedule=schedule, lr_patience=1, keep_best=True)
    ref = _net()
    ref_res = train(ref, PatchSampler(xs, ys, (16, 16)), SupervisedObjective(), cfg,
                    device="cpu")

    def stop(step, total, logs):
        if step == stop_at:
            raise KeyboardInterrupt

    ck = tmp_path / "ck"
    net = _net()
    with pytest.raises(KeyboardInterrupt):
        train(net, PatchSampler(xs, ys, (16, 16)), SupervisedObjective(), cfg,
              checkpoint_dir=ck, progress=stop, device="cpu", fingerprint="f")
    assert (ck / "checkpoint.json").is_file()
    with pytest.raises(OutputExistsError, match="resume=True"):
        train(_net(), PatchSampler(xs, ys, (16, 16)), SupervisedObjective(), cfg,
              checkpoint_dir=ck, device="cpu", fingerprint="f")
    with pytest.raises(ConfigError, match="other settings or data"):
        train(_net(), PatchSampler(xs, ys, (16, 16)), SupervisedObjective(), cfg,
              checkpoint_dir=ck, resume=True, device="cpu", fingerprint="g")
    resumed = _net(seed=99)  # initial weights are replaced by the checkpoint's
    res = train(resumed, PatchSampler(xs, ys, (16, 16)), SupervisedObjective(), cfg,
                checkpoint_dir=ck, resume=True, device="cpu", fingerprint="f")
    want = _weights(ref)
    assert all(torch.equal(want[k], v) for k, v in _weights(resumed).items())
    assert [(r["step"], r["val_loss"], r["lr"]) for r in res.history] == \
        [(r["step"], r["val_loss"], r["lr"]) for r in ref_res.history]
    assert res.best_step == ref_res.best_step


def test_interrupt_inside_a_step_rewinds_its_random_draws(tmp_path):
    xs, ys = _data()
    cfg = _cfg(lr_schedule="constant", keep_best=False)
    ref = _net()
    train(ref, PatchSampler(xs, ys, (16, 16)), SupervisedObjective(), cfg, device="cpu")

    class Flaky(SupervisedObjective):
        count = 0

        def make_batch(self, x, y, rng):
            rng.random()  # consume randomness, then fail on the 6th batch
            type(self).count += 1
            if type(self).count == 6:
                raise KeyboardInterrupt
            return x, y, None

    class Plain(SupervisedObjective):
        def make_batch(self, x, y, rng):
            rng.random()
            return x, y, None

    ref2 = _net()
    train(ref2, PatchSampler(xs, ys, (16, 16)), Plain(), cfg, device="cpu")
    net = _net()
    with pytest.raises(KeyboardInterrupt):
        train(net, PatchSampler(xs, ys, (16, 16)), Flaky(), cfg, checkpoint_dir=tmp_path,
              device="cpu")
    net = _net()
    train(net, PatchSampler(xs, ys, (16, 16)), Plain(), cfg, checkpoint_dir=tmp_path,
          resume=True, device="cpu")
    want = _weights(ref2)
    assert all(torch.equal(want[k], v) for k, v in _weights(net).items())


def test_early_stopping_and_best_weights():
    xs, ys = _data()
    # a huge learning rate makes validation worse after the first round
    cfg = _cfg(steps=200, learning_rate=0.9, lr_schedule="constant", early_stopping_patience=2)
    net = _net()
    res = train(net, PatchSampler(xs, ys, (16, 16)), SupervisedObjective(), cfg, device="cpu")
    assert res.stopped_early and res.steps_done < 200
    assert res.final_weights == "best"
    best = min(r["val_loss"] for r in res.history)
    assert res.best_val_loss == best and res.history[-1]["val_loss"] > best


def test_cosine_schedule_and_config_checks():
    xs, ys = _data()
    cfg = _cfg(lr_schedule="cosine", steps=8, learning_rate=1e-3, min_lr=1e-4,
               validation_interval=2, keep_best=False, validation_fraction=0.0)
    res = train(_net(), PatchSampler(xs, ys, (16, 16), validation_fraction=0.0),
                SupervisedObjective(), cfg, device="cpu")
    lrs = [r["lr"] for r in res.history]
    expect = [1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * (s - 1) / 8)) for s in (2, 4, 6, 8)]
    assert np.allclose(lrs, expect) and all(math.isnan(r["val_loss"]) for r in res.history)
    with pytest.raises(ConfigError, match="validation_fraction=0"):
        TrainingConfig.build(validation_fraction=0.0)
    with pytest.raises(ConfigError, match="patch_size"):
        TrainingConfig().patch_shape(2) and TrainingConfig(patch_size=(8, 8)).patch_shape(3)


def test_default_learning_rate_follows_the_batch_size():
    # 1e-3 up to 32 patches, square-root scaling above; an explicit rate always wins.
    assert [default_learning_rate(b) for b in (1, 16, 32)] == [1e-3] * 3
    assert default_learning_rate(128) == pytest.approx(2e-3)
    assert default_learning_rate(512) == pytest.approx(4e-3)
    assert TrainingConfig().learning_rate == 1e-3
    assert TrainingConfig(batch_size=128).learning_rate == pytest.approx(2e-3)
    assert TrainingConfig(batch_size="128", learning_rate=None).learning_rate == pytest.approx(2e-3)
    assert TrainingConfig(batch_size=128, learning_rate=5e-4).learning_rate == 5e-4
    # the resolved rate is stored, so a saved config reloads (and resumes) with it
    cfg = TrainingConfig(batch_size=64)
    assert TrainingConfig.model_validate_json(cfg.model_dump_json()) == cfg
    with pytest.raises(ConfigError, match="batch_size") as err:
        TrainingConfig.build(batch_size="many")
    assert "learning_rate" not in str(err.value)
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainingConfig.build(batch_size=128, learning_rate=0)


def test_history_csv_and_plot(tmp_path):
    rows = [{"step": 10, "train_loss": 0.5, "val_loss": 0.4, "lr": 1e-3, "time_s": 1.0},
            {"step": 20, "train_loss": 0.3, "val_loss": float("nan"), "lr": 5e-4,
             "time_s": 2.0}]
    write_history_csv(tmp_path / "h.csv", rows)
    back = read_history_csv(tmp_path / "h.csv")
    assert back[0] == rows[0] and math.isnan(back[1]["val_loss"])
    plot_history(tmp_path / "h.png", rows, title="t")
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("schedule", ["plateau", "constant"])
def test_finished_run_extends_to_more_steps_exactly(tmp_path, schedule):
    """8 steps, then resumed to 12, equals 12 steps straight (validation every 4 steps)."""
    xs, ys = _data()
    cfg12 = _cfg(lr_schedule=schedule, lr_patience=1, keep_best=False)
    cfg8 = cfg12.model_copy(update={"steps": 8})
    ref = _net()
    ref_res = train(ref, PatchSampler(xs, ys, (16, 16)), SupervisedObjective(), cfg12,
                    device="cpu")
    ck = tmp_path / "ck"
    first = _net()
    res8 = train(first, PatchSampler(xs, ys, (16, 16)), SupervisedObjective(), cfg8,
                 checkpoint_dir=ck, device="cpu", fingerprint="f")
    assert res8.steps_done == 8
    extended = _net(seed=5)
    res = train(extended, PatchSampler(xs, ys, (16, 16)), SupervisedObjective(), cfg12,
                checkpoint_dir=ck, resume=True, device="cpu", fingerprint="f")
    assert res.steps_done == 12
    want = _weights(ref)
    assert all(torch.equal(want[k], v) for k, v in _weights(extended).items())
    assert [r["step"] for r in res.history] == [r["step"] for r in ref_res.history]
    with pytest.raises(ConfigError, match="steps >= 12"):
        train(_net(), PatchSampler(xs, ys, (16, 16)), SupervisedObjective(), cfg8,
              checkpoint_dir=ck, resume=True, device="cpu", fingerprint="f")


def test_interrupt_inside_the_forward_pass_keeps_batch_norm_statistics(tmp_path):
    """Batch norm updates its running statistics during the forward pass; a step
    interrupted after that (before its optimiser update) must leave them as they were,
    or the resumed run counts that batch twice."""
    from torch import nn

    xs, ys = _data()
    cfg = _cfg(lr_schedule="constant", keep_best=False, steps=8, checkpoint_interval=3)

    class Trip(nn.Module):
        def __init__(self, at=0):
            super().__init__()
            self.at, self.calls = at, 0

        def forward(self, x):
            if torch.is_grad_enabled():  # training passes only, not validation
                self.calls += 1
                if self.calls == self.at:
                    raise KeyboardInterrupt
            return x

    def net(at=0):
        torch.manual_seed(0)
        return nn.Sequential(UNet(UNetConfig(ndim=2, depth=1, base_filters=4, norm="batch")),
                             Trip(at))

    ref = net()
    train(ref, PatchSampler(xs, ys, (16, 16)), SupervisedObjective(), cfg, device="cpu")
    with pytest.raises(KeyboardInterrupt):  # in step 5; the last checkpoint is step 3's
        train(net(at=5), PatchSampler(xs, ys, (16, 16)), SupervisedObjective(), cfg,
              checkpoint_dir=tmp_path, device="cpu")
    resumed = net()
    train(resumed, PatchSampler(xs, ys, (16, 16)), SupervisedObjective(), cfg,
          checkpoint_dir=tmp_path, resume=True, device="cpu")
    want = _weights(ref)
    got = _weights(resumed)
    assert any("running_mean" in k for k in got)
    assert all(torch.equal(want[k], v) for k, v in got.items())


def test_training_precision_resolves_auto_from_the_device(monkeypatch):
    cpu = torch.device("cpu")
    assert training_precision("fp32", cpu) == "fp32"
    assert training_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert native_bf16(cpu) and training_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not native_bf16(cpu) and training_precision("auto", cpu) == "fp32"
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert training_precision("auto", cpu) == "fp32"  # an older torch: no AMX query
    with pytest.raises(ConfigError, match="precision='bf16'"):
        training_precision("bf16", torch.device("meta"))
    assert TrainingConfig().precision == "fp32"
    # the torch-free list the CLI offers is the config's
    from typing import get_args

    from fluorecon.methods.learned_names import TRAIN_PRECISIONS
    assert get_args(TrainingConfig.model_fields["precision"].annotation) == TRAIN_PRECISIONS
    with pytest.raises(ValueError, match="precision"):
        TrainingConfig(precision="fp16")


def test_bf16_training_is_deterministic_and_resumes_exactly(tmp_path):
    xs, ys = _data()
    runs = []
    for _ in range(2):
        net = _net()
        res = train(net, PatchSampler(xs, ys, (16, 16)), SupervisedObjective(),
                    _cfg(precision="bf16"), device="cpu")
        runs.append(_weights(net))
        assert res.precision == "bf16"
        assert all(v.dtype == torch.float32 for k, v in runs[-1].items()
                   if v.is_floating_point())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    net = _net()
    train(net, PatchSampler(xs, ys, (16, 16)), SupervisedObjective(), _cfg(precision="fp32"),
          device="cpu")
    assert not all(torch.equal(runs[0][k], v) for k, v in _weights(net).items())

    stop = {"at": 7}

    def interrupt(step, total, logs):
        if step == stop["at"]:
            raise KeyboardInterrupt

    net = _net()
    with pytest.raises(KeyboardInterrupt):
        train(net, PatchSampler(xs, ys, (16, 16)), SupervisedObjective(),
              _cfg(precision="bf16"), device="cpu", checkpoint_dir=tmp_path, progress=interrupt)
    net = _net()
    train(net, PatchSampler(xs, ys, (16, 16)), SupervisedObjective(), _cfg(precision="bf16"),
          device="cpu", checkpoint_dir=tmp_path, resume=True)
    assert all(torch.equal(runs[0][k], v) for k, v in _weights(net).items())
