"""DistributedDataParallel training: rank sharding, one-rank groups, 2 CPU processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist

from fluorecon.core.errors import ConfigError
from fluorecon.methods.learned import CARE
from fluorecon.methods.learned.ddp import RankContext, RankShard, fit_data_parallel, free_port
from fluorecon.methods.learned.training import PARALLEL, PatchSampler
from fluorecon.metrics import psnr
from fluorecon.simulate import simulate_pair

SMALL = dict(patch_size=32, batch_size=8, depth=2, base_filters=8, learning_rate=2e-3,
             validation_interval=20, validation_patches=8)


@pytest.fixture(scope="module")
def pairs() -> tuple[list[np.ndarray], list[np.ndarray], Any]:
    train = [simulate_pair("denoise", (96, 96), photons=20.0, seed=s) for s in (1, 2)]
    test = simulate_pair("denoise", (96, 96), photons=20.0, seed=9)
    return [p.input for p in train], [p.target for p in train], test


def test_rank_shards_partition_the_global_batch() -> None:
    rng = np.random.default_rng(0)
    xs = [rng.random((1, 40, 40), dtype=np.float32) for _ in range(2)]
    sampler = PatchSampler(xs, [x * 2 for x in xs], (16, 16), validation_fraction=0.2)
    full = sampler.train_batch(6, np.random.default_rng(5), augment=True)
    parts = [RankShard(sampler, r, 3).train_batch(2, np.random.default_rng(5), augment=True)
             for r in range(3)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), full[0])
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), full[1])


@pytest.fixture
def one_rank_group() -> Iterator[None]:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0,
                            world_size=1)
    token = PARALLEL.set(RankContext(0, 1, "cpu"))
    yield
    PARALLEL.reset(token)
    dist.destroy_process_group()


def test_one_rank_group_trains_like_one_process(pairs: Any, tmp_path: Path,
                                                one_rank_group: None) -> None:
    xs, ys, _ = pairs
    ddp = CARE(steps=12, checkpoint_interval=5, **SMALL).fit(
        xs, ys, "YX", checkpoint_dir=tmp_path / "ckpt", device="cpu")
    token = PARALLEL.set(None)
    try:
        plain = CARE(steps=12, **SMALL).fit(xs, ys, "YX", device="cpu")
    finally:
        PARALLEL.reset(token)
    a, b = ddp.net.state_dict(), plain.net.state_dict()
    assert a.keys() == b.keys() and not any(k.startswith("module.") for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    # the checkpoint is a plain (single-process) one: it resumes without DDP
    token = PARALLEL.set(None)
    try:
        more = CARE(steps=14, checkpoint_interval=5, **SMALL).fit(
            xs, ys, "YX", checkpoint_dir=tmp_path / "ckpt", resume=True, device="cpu")
    finally:
        PARALLEL.reset(token)
    assert more.train_result.steps_done == 14


def test_bad_settings(pairs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    xs, ys, _ = pairs
    with pytest.raises(ConfigError, match="divisible by 3"):
        fit_data_parallel(CARE(**SMALL), xs, ys, "YX", devices=3, device="cpu")
    with pytest.raises(ConfigError, match="positive integer"):
        fit_data_parallel(CARE(**SMALL), xs, ys, "YX", devices=0, device="cpu")
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        fit_data_parallel(CARE(**SMALL), xs, ys, "YX", devices=2, nodes=2, node_rank=0,
                          device="cpu")


@pytest.mark.slow
def test_two_cpu_processes_match_one(pairs: Any) -> None:
    """2 gloo processes with batch 8 (4 each) follow 1 process with batch 8."""
    xs, ys, test = pairs
    one = CARE(steps=40, **SMALL).fit(xs, ys, "YX", device="cpu")
    steps: list[int] = []
    two = fit_data_parallel(CARE(steps=40, **SMALL), xs, ys, "YX", devices=2, device="cpu",
                            progress=lambda s, n, logs: steps.append(s))
    assert steps[-1] == 40 and two.is_trained
    a, b = one.net.state_dict(), two.net.state_dict()
    for k in a:  # the same updates up to the float summation order of the all-reduce
        # (40 Adam steps amplify it to ~1e-4 on unit-variance targets; a missing or
        # wrong all-reduce moves weights by 1e-2 and more)
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=5e-4)
    q1 = psnr(one.predict(test.input, "YX"), test.target)
    q2 = psnr(two.predict(test.input, "YX"), test.target)
    assert abs(q1 - q2) < 0.05, (q1, q2)
    assert [h["step"] for h in one.history] == [h["step"] for h in two.history]
    prov = two.model_config.provenance
    assert prov["data_parallel"]["world_size"] == 2
    assert prov["data_parallel"]["backend"] == "gloo"
