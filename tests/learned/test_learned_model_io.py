"""Model folders: bit-identical round trip, contents, and one-line refusals of missing,
corrupt or mismatched files."""

import json

import numpy as np
import pytest

from fluorecon.core import InputFileError, OutputExistsError
from fluorecon.methods.learned import CARE, Noise2Void, load_model_method
from fluorecon.simulate import simulate_pair

TINY = dict(steps=20, patch_size=16, batch_size=4, depth=1, base_filters=4,
            validation_interval=10, validation_patches=4)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    pair = simulate_pair("denoise", (48, 48), photons=30.0, seed=11)
    m = Noise2Void(masked_pixel_percentage=3.0, **TINY).fit(pair.input, "YX")
    folder = tmp_path_factory.mktemp("models") / "n2v"
    m.save(folder)
    return folder, m, pair


@pytest.mark.parametrize("ndim", [2, 3])
def test_round_trip_is_bit_identical(tmp_path, ndim):
    shape = (48, 48) if ndim == 2 else (8, 32, 32)
    axes = "YX" if ndim == 2 else "ZYX"
    pair = simulate_pair("denoise", shape, photons=30.0, seed=2)
    kw = dict(TINY, patch_size=16 if ndim == 2 else (8, 16, 16), steps=6, norm="batch")
    care = CARE(**kw).fit(pair.input, pair.target, axes)
    care.save(tmp_path / "m")
    back = CARE.load(tmp_path / "m")
    odd = pair.input[..., :-3, :-5]  # not divisible by 2**depth: padded and cropped
    for img in (pair.input, odd):
        a, b = care.predict(img, axes), back.predict(img, axes)
        assert a.shape == img.shape and np.array_equal(a, b)
    assert back.model_config == care.model_config
    assert back.history == care.history
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        care.save(tmp_path / "m")
    care.save(tmp_path / "m", overwrite=True)


def test_folder_contents(model_dir):
    folder, m, _ = model_dir
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["config.json", "history.csv", "history.png", "weights.safetensors"]
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["format"] == "fluorecon-model" and cfg["schema_version"] == 1
    assert cfg["method"] == "n2v" and cfg["seed"] == 0 and cfg["axes"] == "YX"
    assert set(cfg["versions"]) >= {"fluorecon", "torch", "numpy"}
    assert cfg["input_norm"]["statistic"] == "meanstd"  # the default normalisation
    assert cfg["input_norm"] == cfg["target_norm"]
    assert cfg["unet"]["depth"] == 1 and cfg["provenance"]["steps_done"] == 20
    assert cfg["training_data"]["masking"]["replacement"] == "uniform"
    assert (folder / "history.csv").read_text().startswith("step,train_loss,val_loss,lr")
    assert not list(folder.glob("*.pt")) and not list(folder.glob("*.pkl"))


def test_load_any_method(model_dir):
    folder, m, pair = model_dir
    back = load_model_method(folder)
    assert isinstance(back, Noise2Void)
    assert np.array_equal(back.predict(pair.input, "YX"), m.predict(pair.input, "YX"))
    with pytest.raises(InputFileError, match="'n2v' model"):
        CARE.load(folder)


def _copy(folder, dst):
    dst.mkdir()
    for p in folder.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _break(kind, d):
    if kind == "missing folder":
        return d / "nope"
    if kind == "missing config":
        (d / "config.json").unlink()
    elif kind == "missing weights":
        (d / "weights.safetensors").unlink()
    elif kind == "corrupt json":
        (d / "config.json").write_text("{not json")
    elif kind == "invalid config":
        cfg = json.loads((d / "config.json").read_text())
        cfg["unet"]["depth"] = 0
        (d / "config.json").write_text(json.dumps(cfg))
    elif kind == "truncated weights":
        raw = (d / "weights.safetensors").read_bytes()
        (d / "weights.safetensors").write_bytes(raw[: len(raw) // 2])
    elif kind == "mismatched architecture":
        cfg = json.loads((d / "config.json").read_text())
        cfg["unet"]["base_filters"] = 8
        (d / "config.json").write_text(json.dumps(cfg))
    elif kind == "not a model":
        (d / "config.json").write_text(json.dumps({"hello": 1}))
    return d


@pytest.mark.parametrize("kind,match", [
    ("missing folder", "does not exist"),
    ("missing config", "without config.json"),
    ("missing weights", "without weights.safetensors"),
    ("corrupt json", "unreadable"),
    ("invalid config", "does not validate"),
    ("truncated weights", "unreadable"),
    ("mismatched architecture", "do not fit the architecture"),
    ("not a model", "fluorecon-model"),
])
def test_broken_models_are_refused_in_one_line(model_dir, tmp_path, kind, match):
    folder, _, _ = model_dir
    d = _break(kind, _copy(folder, tmp_path / "m"))
    with pytest.raises(InputFileError, match=match) as info:
        Noise2Void.load(d)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("normalization", ["percentile", "meanstd"])
def test_normalisation_choice_is_computed_stored_and_reloaded(tmp_path, normalization):
    pair = simulate_pair("denoise", (48, 48), photons=30.0, seed=5)
    m = CARE(normalization=normalization, **dict(TINY, steps=4)).fit(pair.input, pair.target,
                                                                     "YX")
    x = pair.input.astype(np.float64)
    n = m.model_config.input_norm
    assert n.statistic == normalization
    if normalization == "percentile":
        assert (n.low, n.high) == (1.0, 99.8)
        assert n.lo[0] == pytest.approx(np.percentile(x, 1.0), rel=1e-6)
        assert n.hi[0] == pytest.approx(np.percentile(x, 99.8), rel=1e-6)
    else:
        assert n.low is None and n.high is None
        assert n.lo[0] == pytest.approx(x.mean(), rel=1e-6)
        assert n.hi[0] - n.lo[0] == pytest.approx(x.std(), rel=1e-6)
    m.save(tmp_path / "m")
    back = load_model_method(tmp_path / "m")
    assert back.model_config.input_norm == n
    assert np.array_equal(back.predict(pair.input, "YX"), m.predict(pair.input, "YX"))
