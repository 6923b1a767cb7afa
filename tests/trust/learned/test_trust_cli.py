"""CLI: fluorecon train ensemble, calibrate, predict --uncertainty/--consistency, qc."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from fluorecon.cli.app import app
from fluorecon.simulate.pairs import simulate_pair

runner = CliRunner()
TINY = ["--steps", "40", "--patch-size", "32", "--depth", "1", "--filters", "8",
        "--batch-size", "4", "-p", "validation_interval=20"]


def _write(folder: Path, seeds, *, targets: bool = True) -> None:
    (folder / "in").mkdir(parents=True)
    (folder / "tg").mkdir()
    for s in seeds:
        p = simulate_pair("denoise", (64, 64), photons=20, seed=s)
        tifffile.imwrite(folder / "in" / f"{s}.tif", p.input)
        tifffile.imwrite(folder / "tg" / f"{s}.tif", p.target)


def _ok(args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def _fails(args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust_cli")
    _write(root / "train", range(2))
    _write(root / "val", range(10, 12))
    p = simulate_pair("denoise", (64, 64), photons=20, seed=99)
    tifffile.imwrite(root / "test.tif", p.input)
    _ok(["train", "ensemble", root / "train" / "in", "--target", root / "train" / "tg",
         "--out", root / "ens", "-k", "2", "--probabilistic", "-q", *TINY])
    return root


def test_train_calibrate_predict_qc(trained):
    root = trained
    assert (root / "ens" / "ensemble.json").is_file()
    assert (root / "ens" / "member_01" / "weights.safetensors").is_file()
    out = _ok(["calibrate", "--model", root / "ens", "--input", root / "val" / "in",
               "--target", root / "val" / "tg"])
    assert "| 0.90 |" in out and "factor" in out
    cfg = json.loads((root / "ens" / "ensemble.json").read_text())
    assert "both" in cfg["calibration"]
    _ok(["predict", root / "test.tif", "--model", root / "ens", "-o", root / "p.tif",
         "--uncertainty", "both", "--consistency", "-q"])
    for tag in ("", "_std", "_residual", "_flagged"):
        assert (root / f"p{tag}.tif").is_file()
    std = tifffile.imread(root / "p_std.tif")
    assert std.shape == (64, 64) and np.all(std > 0)
    _ok(["predict", root / "test.tif", "--model", root / "ens" / "member_00", "-o",
         root / "q.tif", "--consistency", "-q"])
    assert (root / "q_residual.tif").is_file() and (root / "q_scale.tif").is_file()
    _ok(["qc", root / "test.tif", "--model", root / "ens", "--out", root / "qc", "-q"])
    page = (root / "qc" / "index.html").read_text()
    for text in ("Model card", "Data consistency", "Calibration", "Out-of-distribution",
                 "Known limit"):
        assert text in page
    for name in ("maps.png", "calibration.png", "prediction.ome.tif", "std.ome.tif",
                 "residual.ome.tif", "flagged.ome.tif", "qc.json"):
        assert (root / "qc" / name).is_file()
    summary = json.loads((root / "qc" / "qc.json").read_text())
    assert summary["uncertainty"]["mode"] == "both"
    assert summary["model_card"]["members"] == 2


def test_cli_errors(trained, tmp_path):
    root = trained
    _fails(["qc", root / "test.tif", "--model", tmp_path / "missing", "--out", tmp_path / "r"])
    _fails(["predict", root / "test.tif", "--model", root / "ens" / "member_00", "-o",
            tmp_path / "x.tif", "--uncertainty", "ensemble"])
    _fails(["predict", root / "test.tif", "--model", root / "ens", "-o",
            tmp_path / "y.tif", "--uncertainty", "gaussian"])
    _ok(["predict", root / "test.tif", "--model", root / "ens", "-o", tmp_path / "z.tif",
         "-q"])
    _fails(["predict", root / "test.tif", "--model", root / "ens", "-o", tmp_path / "z.tif"])
    _fails(["train", "ensemble", root / "train" / "in", "--out", root / "ens", "-k", "2"])
    _fails(["qc", root / "test.tif", "--model", root / "ens", "--out", tmp_path / "r2",
            "--task", "deconvolve"])


def test_train_ensemble_ctrl_c_then_resume_equals_uninterrupted(trained, tmp_path,
                                                                monkeypatch):
    import contextlib

    import fluorecon.cli.trust as trust_cli

    root = trained
    args = ["train", "ensemble", root / "train" / "in", "--target", root / "train" / "tg",
            "--out", tmp_path / "ens", "-k", "2", "--probabilistic", *TINY]
    real_bar = trust_cli.progress_bar

    @contextlib.contextmanager
    def interrupting_bar(description, *, enabled=True):
        def cb(done, total):
            if done == 65:  # member 1 (of 0, 1) at step 25 of 40
                raise KeyboardInterrupt

        yield cb

    monkeypatch.setattr(trust_cli, "progress_bar", interrupting_bar)
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 130, res.output
    ckpt = tmp_path / "ens.checkpoint"
    assert f"checkpoint saved in {ckpt}" in res.output and "--resume" in res.output
    assert (ckpt / "member_00" / "checkpoint.json").is_file()
    assert (ckpt / "member_01" / "checkpoint.json").is_file()
    assert not (tmp_path / "ens").exists()
    monkeypatch.setattr(trust_cli, "progress_bar", real_bar)
    assert "--resume" in _fails(args)  # the checkpoint is not silently discarded
    _ok([*args, "--resume", "-q"])
    assert not ckpt.exists()
    from safetensors.numpy import load_file

    for member in ("member_00", "member_01"):
        got = load_file(str(tmp_path / "ens" / member / "weights.safetensors"))
        want = load_file(str(root / "ens" / member / "weights.safetensors"))
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    assert "without a checkpoint" in _fails([*args[:-len(TINY)], "--out", tmp_path / "other",
                                             "--resume", *TINY])
