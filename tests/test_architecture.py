"""The layer order of ARCHITECTURE.md, checked by import-linter on every test run."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("import-linter is part of the test extras; install with pip install -e '.[test]'")
    res = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_top_level_import_is_cheap():
    code = "import sys, fluorecon; print(sorted(m for m in ('scipy', 'skimage', 'torch', 'matplotlib') if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


def test_denoiser_path_does_not_import_the_simulator():
    # Loading and applying a denoiser model needs neither fluorecon.simulate nor SciPy's
    # interpolation/optimisation (about 40 MB of RSS); the simulation-trained methods
    # (deconv, upsample, iso) load on first use.
    code = ("import sys; import fluorecon.methods.learned as L; from fluorecon.predict import "
            "predict_method_tiled; before = sorted(m for m in ('fluorecon.simulate', "
            "'scipy.interpolate', 'scipy.optimize') if m in sys.modules); L.IsotropicCARE; "
            "print(before, 'fluorecon.methods.learned.iso' in sys.modules, "
            "L.load_model_method.__module__)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["[]", "True", "fluorecon.methods.learned"]
