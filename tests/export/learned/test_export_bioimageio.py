"""bioimage.io export: packages validate with bioimageio.spec and pass bioimageio.core's
test (every weight format reproduces fluorecon's prediction), the architecture file is
fluorecon's U-Net, and unsupported models are refused."""

from __future__ import annotations

import importlib.util
import io
import sys
import zipfile

import numpy as np
import pytest
import torch

pytest.importorskip("bioimageio.core")

from fluorecon.core.errors import ConfigError, OutputExistsError  # noqa: E402
from fluorecon.methods.learned.bioimageio_export import (  # noqa: E402
    ARCHITECTURE_CALLABLE,
    CITATIONS,
    check_bioimageio_package,
    export_bioimageio,
    standalone_unet_source,
    synthetic_test_input,
)
from fluorecon.methods.learned.unet import UNet, UNetConfig  # noqa: E402


def _load_arch(tmp_path, name):
    path = tmp_path / f"{name}.py"
    path.write_text(standalone_unet_source())
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kwargs", [
    dict(ndim=2, depth=2, base_filters=8, residual=True),
    dict(ndim=2, depth=2, base_filters=8, taper=True, norm="group", probabilistic=True),
    dict(ndim=3, depth=1, base_filters=4, n2v2=True, norm="batch", in_channels=2,
         out_channels=3),
])
def test_standalone_architecture_matches_fluorecon_unet(tmp_path, kwargs):
    module = _load_arch(tmp_path, f"arch_{len(kwargs)}_{kwargs['ndim']}_{kwargs['depth']}")
    cfg = UNetConfig(**kwargs)
    torch.manual_seed(0)
    ref = UNet(cfg).eval()
    for m in ref.modules():  # non-trivial batch-norm statistics
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    net = getattr(module, ARCHITECTURE_CALLABLE)(**cfg.model_dump(exclude={"version"}))
    net.load_state_dict(ref.state_dict(), strict=True)
    net.eval()
    x = torch.randn((2, cfg.in_channels) + (8,) * cfg.ndim)
    with torch.no_grad():
        assert torch.equal(net(x), ref(x))
    assert "fluorecon" not in "".join(line for line in standalone_unet_source().splitlines()
                                      if line.startswith(("import", "from")))


def _load(path):
    from fluorecon.methods.learned.bioimageio_import import load_description

    with zipfile.ZipFile(path) as zf:
        return load_description(zf)


def _details(summary):
    return {d.name: d.status for d in summary.details}


def test_export_2d_zip_passes_bioimageio_core(care2d, tmp_path):
    out = tmp_path / "care2d.zip"
    res = export_bioimageio(care2d, out, weight_formats=("torchscript", "onnx"),
                            authors=["A. Person"], notes="Trained on synthetic data.")
    assert res.path == out and out.is_file()
    assert res.weight_formats == ("pytorch_state_dict", "torchscript", "onnx")
    summary = check_bioimageio_package(out)
    assert summary.status == "passed", [(d.name, [e.msg for e in d.errors])
                                        for d in summary.details if d.status != "passed"]
    names = _details(summary)
    for fmt in res.weight_formats:
        assert names[f"Reproduce test outputs from test inputs ({fmt})"] == "passed"

    descr = _load(out)
    mc = care2d.model_config
    (pre,) = [p for p in descr.inputs[0].preprocessing if p.id == "scale_linear"]
    d_in = mc.input_norm.hi[0] - mc.input_norm.lo[0] + mc.input_norm.eps
    assert pre.kwargs.gain == pytest.approx(1.0 / d_in, rel=1e-12)
    assert pre.kwargs.offset == pytest.approx(-mc.input_norm.lo[0] / d_in, rel=1e-12)
    (post,) = [p for p in descr.outputs[0].postprocessing if p.id == "scale_linear"]
    assert post.kwargs.offset == pytest.approx(mc.target_norm.lo[0], rel=1e-12)
    halo = care2d.receptive_field
    for ax_in, ax_out in zip(descr.inputs[0].axes[2:], descr.outputs[0].axes[2:]):
        assert ax_out.halo == halo
        assert ax_in.size.step == mc.unet.divisible_by
        assert ax_in.size.min % ax_in.size.step == 0 and ax_in.size.min > 2 * halo
    assert [str(c.doi) for c in descr.cite] == [doi for _, doi in CITATIONS["care"]]
    assert [a.name for a in descr.authors] == ["A. Person"]
    with zipfile.ZipFile(out) as zf:
        x = np.load(io.BytesIO(zf.read("test_input.npy")))
        y = np.load(io.BytesIO(zf.read("test_output.npy")))
    np.testing.assert_allclose(y[0, 0], care2d.predict_block(x[0, 0], "YX"), rtol=0,
                               atol=1e-5 * np.abs(y).max())


def test_export_3d_folder_n2v2_batchnorm_passes(n2v3d, tmp_path):
    out = tmp_path / "n2v3d"
    res = export_bioimageio(n2v3d, out, weight_formats=("pytorch_state_dict",))
    assert (out / "rdf.yaml").is_file() and (out / "fluorecon_unet.py").is_file()
    summary = check_bioimageio_package(out / "rdf.yaml")
    assert summary.status == "passed"
    readme = (out / "README.md").read_text()
    assert "N2V2" in readme and "pixel-wise independent" in readme
    assert res.validation in ("valid-format", "passed")


def test_export_probabilistic_multichannel(care2d_prob_multichannel, tmp_path):
    method = care2d_prob_multichannel
    out = tmp_path / "prob.zip"
    export_bioimageio(method, out, weight_formats=())
    assert check_bioimageio_package(out).status == "passed"
    descr = _load(out)
    (post,) = [p for p in descr.outputs[0].postprocessing if p.id == "scale_linear"]
    tn = method.model_config.target_norm
    assert post.kwargs.offset == pytest.approx(tn.lo + [0.0, 0.0], rel=1e-12)
    assert post.kwargs.gain == pytest.approx(tn.scale * 2, rel=1e-12)
    assert len(descr.outputs[0].axes[1].channel_names) == 4


def test_export_refuses(care2d, tmp_path):
    out = tmp_path / "x.zip"
    out.write_bytes(b"")
    with pytest.raises(OutputExistsError):
        export_bioimageio(care2d, out)
    fake = type(care2d)(care2d.config)
    fake.net = care2d.net
    fake.model_config = care2d.model_config.model_copy(update={"method": "upsample"})
    with pytest.raises(ConfigError, match="finer grid") as err:
        export_bioimageio(fake, tmp_path / "up.zip")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="weight format"):
        export_bioimageio(care2d, tmp_path / "w.zip", weight_formats=("keras_hdf5",))
    with pytest.raises(ConfigError, match="multiples of 2"):
        export_bioimageio(care2d, tmp_path / "t.zip", test_input=np.ones((31, 32)))
    with pytest.raises(ConfigError, match="at least 20"):  # halo 9: min size 20
        export_bioimageio(care2d, tmp_path / "t.zip", test_input=np.ones((16, 32)))
    assert not (tmp_path / "up.zip").exists() and not (tmp_path / "t.zip").exists()


def test_synthetic_test_input_respects_min_size(care2d):
    mc = care2d.model_config
    x = synthetic_test_input(mc, halo=51, seed=1)
    assert x.shape == (1, 104, 104) and x.dtype == np.float32  # (2 * 51 // 2 + 1) * 2
    lo, hi = mc.input_norm.lo[0], mc.input_norm.hi[0]
    assert lo - 0.5 * (hi - lo) < np.median(x) < hi + 0.5 * (hi - lo)
    np.testing.assert_array_equal(x, synthetic_test_input(mc, halo=51, seed=1))


def test_standalone_architecture_takes_every_unet_field():
    """The generated module's config stand-in knows every UNetConfig field (new ones too)
    and builds the same network for linear upsampling."""
    import torch

    from fluorecon.methods.learned.bioimageio_export import (
        ARCHITECTURE_CALLABLE,
        standalone_unet_source,
    )
    from fluorecon.methods.learned.unet import UNet, UNetConfig

    namespace: dict = {}
    exec(compile(standalone_unet_source(), "fluorecon_unet.py", "exec"), namespace)
    cfg = UNetConfig(depth=2, base_filters=4, taper=True, upsampling="linear")
    kwargs = {k: v for k, v in cfg.model_dump(mode="json").items() if k != "version"}
    torch.manual_seed(0)
    ref = UNet(cfg).eval()
    other = namespace[ARCHITECTURE_CALLABLE](**kwargs).eval()
    other.load_state_dict(ref.state_dict())
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(other(x), ref(x))
    with pytest.raises(TypeError, match="unknown U-Net settings"):
        namespace[ARCHITECTURE_CALLABLE](no_such_field=1)
