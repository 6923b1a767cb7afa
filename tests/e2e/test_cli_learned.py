"""End-to-end tests of ``fluorecon train ...`` and ``fluorecon predict`` on tiny simulated
images: training writes a model folder, prediction beats the noisy input, tiling is exact,
bad models fail in one line, and Ctrl-C leaves a checkpoint that ``--resume`` completes
with the weights of an uninterrupted run."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from fluorecon.cli.app import app  # noqa: E402
from fluorecon.core import ImageMeta  # noqa: E402
from fluorecon.io import read_image, write_image  # noqa: E402
from fluorecon.metrics import psnr  # noqa: E402
from fluorecon.simulate import simulate_pair  # noqa: E402
from fluorecon.simulate.camera import camera_inverse  # noqa: E402

runner = CliRunner()

N2V_ARGS = ["--steps", "50", "--patch-size", "32", "--batch-size", "8", "--depth", "2",
            "--filters", "8", "--validation-fraction", "0.25", "--seed", "3",
            "-p", "learning_rate=0.004", "-p", "lr_schedule=plateau",
            "-p", "validation_interval=25",
            "-p", "validation_patches=4", "-p", "masked_pixel_percentage=10", "-q"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, needle: str = "") -> None:
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error:"), err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in result.output
    assert needle in err, err


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("FLUORECON_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Folder ``noisy/`` of two noisy 64x64 images (ADU), folder ``clean/`` of their
    targets (photons), and a separate test pair."""
    root = tmp_path_factory.mktemp("learned_cli")
    pairs = [simulate_pair("denoise", (64, 64), photons=20.0, seed=s) for s in (11, 12, 13)]
    meta = ImageMeta(axes="YX")
    for i, p in enumerate(pairs[:2]):
        write_image(root / "noisy" / f"im{i}.tif", p.input.astype(np.float32), meta)
        write_image(root / "clean" / f"im{i}.tif", p.target.astype(np.float32), meta)
    (root / "noisy" / "notes.txt").write_text("not an image: skipped")
    write_image(root / "test.tif", pairs[2].input.astype(np.float32), meta)
    return root, pairs


@pytest.fixture(scope="module")
def n2v_model(data):
    root, _ = data
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLUORECON_NUM_THREADS", "1")
        torch.set_num_threads(1)
        result = run("train", "n2v", root / "noisy", "--out", root / "n2v_model", *N2V_ARGS)
    assert result.exit_code == 0, result.output
    return root / "n2v_model"


def test_train_n2v_writes_model_folder(n2v_model):
    names = sorted(p.name for p in n2v_model.iterdir())
    assert {"config.json", "weights.safetensors", "history.csv"} <= set(names)
    assert not (n2v_model.parent / "n2v_model.checkpoint").exists()
    from fluorecon.methods.learned import read_model_config

    mc = read_model_config(n2v_model)
    assert mc.method == "n2v" and mc.provenance["steps_done"] == 50
    assert [Path(f).name for f in mc.training_data["files"]["inputs"]] == ["im0.tif", "im1.tif"]
    assert mc.unet.base_filters == 8 and mc.seed == 3


def test_predict_beats_input_and_tiling_is_exact(n2v_model, data, tmp_path):
    root, pairs = data
    test = pairs[2]
    out = tmp_path / "den.tif"
    result = run("predict", "--model", n2v_model, root / "test.tif", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    den, meta = read_image(out)
    assert den.dtype == np.float32 and den.shape == (64, 64) and meta.axes == "YX"
    gain = (psnr(camera_inverse(den, test.camera), test.target)
            - psnr(camera_inverse(test.input, test.camera), test.target))
    assert gain > 2.5, gain
    # small tiles (with the receptive-field halo) give the whole-image result exactly
    whole, tiled = tmp_path / "whole.tif", tmp_path / "tiled.tif"
    assert run("predict", "-m", n2v_model, root / "test.tif", "-o", whole, "--tile",
               "none", "-q").exit_code == 0
    assert run("predict", "-m", n2v_model, root / "test.tif", "-o", tiled, "--tile", "16",
               "-q").exit_code == 0
    np.testing.assert_allclose(read_image(tiled)[0], read_image(whole)[0], rtol=1e-5, atol=1e-3)
    # existing output: refused; test-time augmentation differs but also denoises
    assert_one_line_error(run("predict", "-m", n2v_model, root / "test.tif", "-o", out, "-q"),
                          "exist")
    tta = tmp_path / "tta.tif"
    assert run("predict", "-m", n2v_model, root / "test.tif", "-o", tta, "--tta",
               "-q").exit_code == 0
    den_tta = read_image(tta)[0]
    assert not np.array_equal(den_tta, den)
    assert psnr(camera_inverse(den_tta, test.camera), test.target) > \
        psnr(camera_inverse(test.input, test.camera), test.target) + 2.5


def test_bad_model_folders_fail_in_one_line(n2v_model, data, tmp_path):
    root, _ = data
    import shutil

    assert_one_line_error(run("predict", "-m", tmp_path / "missing", root / "test.tif", "-o",
                              tmp_path / "a.tif"), "does not exist")
    broken = tmp_path / "broken"
    shutil.copytree(n2v_model, broken)
    weights = broken / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert_one_line_error(run("predict", "-m", broken, root / "test.tif", "-o",
                              tmp_path / "b.tif"), "weights.safetensors")
    (broken / "config.json").write_text("{not json")
    assert_one_line_error(run("predict", "-m", broken, root / "test.tif", "-o",
                              tmp_path / "c.tif"), "config.json")
    assert not any(tmp_path.glob("*.tif"))
    # training errors: unreadable options and mismatched pairs, also one line
    assert_one_line_error(run("train", "n2v", root / "noisy", "-o", tmp_path / "m",
                              "--patch-size", "30", "-q"), "divisible")
    assert_one_line_error(run("train", "care", root / "noisy", "-t", root / "test.tif",
                              "-o", tmp_path / "m", "-q"), "target")


def test_ctrl_c_leaves_checkpoint_and_resume_matches(n2v_model, data, tmp_path, monkeypatch):
    root, _ = data
    import fluorecon.cli.learned as learned_cli

    real_bar = learned_cli.training_bar

    @contextlib.contextmanager
    def interrupting_bar(description, *, enabled=True):
        def cb(step, total, logs):
            if step == 20:
                raise KeyboardInterrupt

        yield cb

    out = tmp_path / "model"
    monkeypatch.setattr(learned_cli, "training_bar", interrupting_bar)
    result = run("train", "n2v", root / "noisy", "--out", out, *N2V_ARGS)
    assert result.exit_code == 130, result.output
    ckpt = tmp_path / "model.checkpoint"
    assert f"checkpoint saved in {ckpt}" in result.stderr and "--resume" in result.stderr
    assert (ckpt / "checkpoint.json").is_file() and not out.exists()
    monkeypatch.setattr(learned_cli, "training_bar", real_bar)
    # without --resume the checkpoint is not silently discarded
    assert_one_line_error(run("train", "n2v", root / "noisy", "--out", out, *N2V_ARGS),
                          "--resume")
    result = run("train", "n2v", root / "noisy", "--out", out, "--resume", *N2V_ARGS)
    assert result.exit_code == 0, result.output
    assert not ckpt.exists()
    from safetensors.numpy import load_file

    resumed = load_file(str(out / "weights.safetensors"))
    straight = load_file(str(n2v_model / "weights.safetensors"))
    assert resumed.keys() == straight.keys()
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k])
    # --resume with nothing to resume, and an existing model without --overwrite
    assert_one_line_error(run("train", "n2v", root / "noisy", "--out", tmp_path / "other",
                              "--resume", *N2V_ARGS), "no checkpoint")
    assert_one_line_error(run("train", "n2v", root / "noisy", "--out", out, *N2V_ARGS),
                          "--overwrite")


def test_train_care_probabilistic_writes_scale(data, tmp_path):
    root, pairs = data
    model = tmp_path / "care"
    result = run("train", "care", root / "noisy", "--target", root / "clean", "-o", model,
                 "--steps", "10", "--patch-size", "32", "--batch-size", "4", "--depth", "1",
                 "--filters", "4", "--probabilistic", "-p", "validation_interval=10",
                 "-p", "validation_patches=2", "-q")
    assert result.exit_code == 0, result.output
    out = tmp_path / "pred.ome.tif"
    result = run("predict", "-m", model, root / "test.tif", "-o", out, "--tile", "32")
    assert result.exit_code == 0, result.output
    scale, _ = read_image(tmp_path / "pred_scale.ome.tif")
    mean, _ = read_image(out)
    assert scale.shape == mean.shape == (64, 64) and (scale > 0).all()
    assert "wrote" in result.stderr


def test_train_struct_n2v_and_mirror_tta(data, tmp_path, monkeypatch):
    root, _ = data
    model = tmp_path / "struct"
    small = ["--steps", "6", "--patch-size", "32", "--batch-size", "4", "--depth", "1",
             "--filters", "4", "-p", "validation_interval=6", "-p", "validation_patches=2",
             "-q"]
    result = run("train", "n2v", root / "noisy", "-o", model, "--struct", "vertical", *small)
    assert result.exit_code == 0, result.output
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["method_config"]["struct_mask"] == "vertical"
    assert cfg["method_config"]["rotate"] is False
    # --tta on a model trained without 90-degree turns averages the 4 mirror images only
    import fluorecon.predict.tta as tta

    calls = []
    real = tta.tta_predict
    monkeypatch.setattr(tta, "tta_predict",
                        lambda *a, **k: calls.append(k["rotations"]) or real(*a, **k))
    result = run("predict", "-m", model, root / "test.tif", "-o", tmp_path / "p.tif", "--tta",
                 "-q")
    assert result.exit_code == 0, result.output
    assert calls and not any(calls)
    # contradictions fail in one line
    assert_one_line_error(run("train", "n2v", root / "noisy", "-o", tmp_path / "m2",
                              "--struct", "vertical", "-p", "rotate=true", *small), "rotate")
    assert_one_line_error(run("train", "n2v", root / "noisy", "-o", tmp_path / "m3",
                              "--struct", "vertical", "-p", "struct_mask=cross", *small),
                          "struct_mask")


def test_train_precision_option(data, tmp_path):
    """--precision bf16 trains in bf16 and records it; the default is fp32; a clash with
    --param and an unknown value fail in one line."""
    root, _ = data
    small = ["--steps", "4", "--patch-size", "32", "--batch-size", "4", "--depth", "1",
             "--filters", "4", "-p", "validation_interval=4", "-p", "validation_patches=2",
             "-q"]
    for flag, want in ((["--precision", "bf16"], "bf16"), ([], "fp32")):
        model = tmp_path / f"m_{want}"
        result = run("train", "care", root / "noisy", "--target", root / "clean", "-o", model,
                     *flag, *small)
        assert result.exit_code == 0, result.output
        cfg = json.loads((model / "config.json").read_text())
        assert cfg["provenance"]["precision"] == want
        assert cfg["method_config"]["precision"] == want
    assert_one_line_error(run("train", "n2v", root / "noisy", "-o", tmp_path / "x",
                              "--precision", "bf16", "-p", "precision=fp32", *small),
                          "precision")
    result = run("train", "n2v", root / "noisy", "-o", tmp_path / "y", "--precision", "fp16",
                 *small)
    assert result.exit_code != 0 and "fp16" in result.output


def test_finished_model_extends_with_resume_and_more_steps(n2v_model, data, tmp_path):
    """The model folder keeps its training state; `--resume --steps 75` continues it to the
    same weights as 75 steps straight (plateau schedule: a cosine schedule depends on the
    total), and the model stays intact until the end."""
    root, _ = data
    import shutil

    from safetensors.numpy import load_file

    assert (n2v_model / "training_state" / "checkpoint.json").is_file()
    args75 = [a if a != "50" else "75" for a in N2V_ARGS]
    model = tmp_path / "model"
    shutil.copytree(n2v_model, model)
    result = run("train", "n2v", root / "noisy", "--out", model, "--resume", *args75)
    assert result.exit_code == 0, result.output
    straight = tmp_path / "straight"
    assert run("train", "n2v", root / "noisy", "--out", straight, *args75).exit_code == 0
    a, b = load_file(str(model / "weights.safetensors")), load_file(
        str(straight / "weights.safetensors"))
    for k in b:
        np.testing.assert_array_equal(a[k], b[k])
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["provenance"]["steps_done"] == 75
    assert not (tmp_path / "model.checkpoint").exists()
    # fewer steps than done, or other options: refused in one line, model untouched
    assert_one_line_error(run("train", "n2v", root / "noisy", "--out", model, "--resume",
                              *N2V_ARGS), "steps")
    assert_one_line_error(run("train", "n2v", root / "noisy", "--out", model, "--resume",
                              *[a if a != "3" else "4" for a in args75]), "other settings")
    for k in b:
        np.testing.assert_array_equal(load_file(str(model / "weights.safetensors"))[k], b[k])


def test_multichannel_model_predicts_tiled_batched_and_in_bf16(data, tmp_path):
    """A 2 -> 1 channel CARE model through the CLI: tiled + batched equals whole-image,
    TTA is refused (channel counts differ), bf16 stays close to fp32."""
    root, pairs = data
    rng = np.random.default_rng(0)
    meta = ImageMeta(axes="CYX")
    for i, p in enumerate(pairs[:2]):
        two = np.stack([p.input, p.input + rng.normal(0, 1, p.input.shape)]).astype(np.float32)
        write_image(tmp_path / "in" / f"im{i}.tif", two, meta)
    test = np.stack([pairs[2].input, pairs[2].input[::-1]]).astype(np.float32)
    write_image(tmp_path / "test.ome.tif", test, meta)
    model = tmp_path / "care2"
    # axes from the files: inputs CYX (2 channels), targets YX (1 channel)
    result = run("train", "care", tmp_path / "in", "--target", root / "clean", "-o", model,
                 "--steps", "4", "--patch-size", "32", "--batch-size", "2",
                 "--depth", "2", "--filters", "4", "-p", "validation_interval=4",
                 "-p", "validation_patches=2", "-q")
    assert result.exit_code == 0, result.output
    assert_one_line_error(run("predict", "-m", model, tmp_path / "test.ome.tif", "-o",
                              tmp_path / "t.tif", "--tta"), "--tta")
    outs = {}
    for name, extra in {"whole": ["--tile", "none"],
                        "tiled": ["--tile", "24", "--batch-size", "3"],
                        "bf16": ["--precision", "bf16"]}.items():
        outs[name] = tmp_path / f"{name}.ome.tif"
        result = run("predict", "-m", model, tmp_path / "test.ome.tif", "-o", outs[name],
                     "-q", *extra)
        assert result.exit_code == 0, result.output
    whole, tiled, bf16 = (read_image(outs[k])[0] for k in ("whole", "tiled", "bf16"))
    assert whole.squeeze().shape == (64, 64)  # one output channel
    np.testing.assert_allclose(tiled, whole, rtol=1e-4, atol=1e-3)
    assert 0 < np.abs(bf16 - whole).max() < 0.02 * np.abs(whole).max()  # bf16 rounding
    assert_one_line_error(run("predict", "-m", model, tmp_path / "test.ome.tif", "-o",
                              tmp_path / "x.tif", "--precision", "fp8"), "precision")
