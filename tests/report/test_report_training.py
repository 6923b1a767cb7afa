"""Training report from a model folder: summary, loss curves, examples, warnings."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError, InputFileError
from fluorecon.report.html import external_references
from fluorecon.report.training import (
    TrainingExample,
    example_windows,
    read_training_record,
    training_report,
    training_warnings,
    validation_region,
)


def test_read_record_counts_parameters_and_finds_best_step(tmp_path, make_model_folder):
    sizes = make_model_folder(tmp_path / "m")
    rec = read_training_record(tmp_path / "m")
    assert rec.parameters == sum(sizes.values()) == 8 * 9 + 8 + 8
    assert rec.best_step == 20 and len(rec.history) == 4
    assert not rec.may_hallucinate


def test_read_record_refuses_broken_folders(tmp_path, make_model_folder):
    with pytest.raises(InputFileError, match="does not exist"):
        read_training_record(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="without config.json"):
        read_training_record(tmp_path / "empty")
    make_model_folder(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{broken")
    with pytest.raises(InputFileError, match="not valid JSON"):
        read_training_record(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(InputFileError, match="fluorecon-model"):
        read_training_record(tmp_path / "m")


@pytest.mark.parametrize("shape,patch,expected", [
    ((64, 100), (32, 32), (slice(0, 64), slice(68, 100))),     # longest axis X, >= patch
    ((200, 64), (16, 16), (slice(180, 200), slice(0, 64))),    # 10 % of Y
    ((20, 64, 64), (8, 16, 16), (slice(0, 20), slice(0, 64), slice(48, 64))),  # tie: last
])
def test_validation_region_mirrors_the_patch_sampler(shape, patch, expected):
    assert validation_region(shape, patch, fraction=0.1) == expected
    assert validation_region(shape, patch, fraction=0.0) is None


def test_validation_region_none_without_room():
    assert validation_region((40, 40), (32, 32), fraction=0.1) is None
    with pytest.raises(ConfigError):
        validation_region((40, 40), (32,), fraction=0.1)


def test_example_windows_span_brightest_to_median_inside_region():
    rng = np.random.default_rng(0)
    img = rng.random((64, 96)).astype(np.float32)
    img[40:56, 80:96] += 10  # the bright spot lies in the region
    region = (slice(0, 64), slice(64, 96))
    wins = example_windows(img, (16, 16), n=3, region=region)
    assert len(wins) == len({str(w) for w in wins}) == 3
    assert wins[0] == (slice(40, 56), slice(80, 96))
    for w in wins:
        assert w[1].start >= 64 and w[1].stop <= 96 and w[0].stop - w[0].start == 16
    means = [float(img[w].mean()) for w in wins]
    assert means[0] > means[1] >= means[2]
    assert example_windows(img, (16, 16), n=1) == [wins[0]]


def test_warnings_cover_hallucination_overfitting_and_missing_validation(tmp_path,
                                                                         make_model_folder):
    make_model_folder(tmp_path / "gan", adversarial=True, input_stats=False)
    w = training_warnings(read_training_record(tmp_path / "gan"))
    text = " ".join(w)
    assert "MAY HALLUCINATE" in text and "over-fitting" in text and "best weights were kept" \
        in text and "input statistics" in text
    flat = [{"step": s, "train_loss": 1.0 / s, "val_loss": math.nan, "lr": 1e-3, "time_s": s}
            for s in (1, 2, 3)]
    make_model_folder(tmp_path / "noval", history=flat)
    w2 = training_warnings(read_training_record(tmp_path / "noval"))
    assert any("No validation loss" in s for s in w2)
    assert not any("loss rose" in s or "HALLUCINATE" in s for s in w2)


@pytest.mark.parametrize("shape", [(16, 16), (4, 16, 16)])
def test_training_report_shows_every_part(tmp_path, make_model_folder, shape):
    make_model_folder(tmp_path / "m", adversarial=True)
    rec = read_training_record(tmp_path / "m")
    rng = np.random.default_rng(0)
    axes = "YX" if len(shape) == 2 else "ZYX"
    tgt = rng.random(shape).astype(np.float32)
    ex = [TrainingExample(input=tgt * 100 + 5, prediction=tgt + 0.01, target=tgt, axes=axes,
                          source="a.tif [Y 0:16]"),
          TrainingExample(input=tgt, prediction=tgt, target=None, axes=axes, source="b",
                          held_out=False)]
    page = training_report(rec, examples=ex, examples_note="from held-out slabs")
    assert external_references(page) == []
    assert page.count("data:image/png;base64,") == 2  # loss curves and patches
    for sid in ("model", "loss-curves", "example-patches"):
        assert f"id='{sid}'" in page
    assert "<p class='warning'>MAY HALLUCINATE" in page
    assert "<td>parameters</td><td>88</td>" in page
    assert '<tr class="best"><td>best</td><td>20</td>' in page
    assert "from held-out slabs" in page and "<td>a.tif [Y 0:16]</td><td>held-out</td>" in page
    assert "<td>b</td><td>supplied</td><td>n/a (no target)</td>" in page


def test_example_validation():
    a = np.zeros((8, 8), np.float32)
    with pytest.raises(ConfigError, match="spatial"):
        TrainingExample(input=a[None], prediction=a[None], target=None, axes="CYX", source="")
    with pytest.raises(ConfigError):
        TrainingExample(input=a, prediction=a[None], target=None, axes="YX", source="")
