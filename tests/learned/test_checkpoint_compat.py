"""Checkpoints written by earlier versions still resume: the fingerprint a checkpoint is
matched by must not change when settings are added (new fields are left out of it at
their defaults)."""

import json

import numpy as np
import pytest

from fluorecon.methods import create

#: Fingerprints of these exact trainings as written by fluorecon 10598de (before
#: structN2V and mirror-only augmentation added N2VConfig/TrainingConfig fields).
FINGERPRINTS = {"n2v": "cba54d557bea8148e9bdc21eaebcdc54",
                "n2v2": "543f9b6606d13ebab87f3f16b8c0f738",
                "n2s": "6e517dcc431cccdf7f91def731c241f6",
                "care": "30be6c08f2ad6848bd1ab14c181e6f4d",
                "n2n": "9c339e08f910f1ee487e9739b2f1fad1"}


def _images():
    # arithmetic, not random: the same bytes whatever the NumPy version
    y, x = np.mgrid[0:40, 0:48].astype(np.float32)
    clean = (np.sin(x / 3.0) * np.cos(y / 5.0) * 50 + 100).astype(np.float32)
    return (clean + (x * 7 + y * 13) % 11).astype(np.float32), clean


@pytest.mark.parametrize("name", sorted(FINGERPRINTS))
def test_default_settings_keep_the_checkpoint_fingerprint(tmp_path, name):
    noisy, clean = _images()
    m = create(name, depth=1, base_filters=4, patch_size=16, batch_size=2, steps=1, seed=0)
    if name in ("care", "n2n"):
        m.fit([noisy], [clean], "YX", checkpoint_dir=tmp_path)
    else:
        m.fit([noisy], "YX", checkpoint_dir=tmp_path)
    doc = json.loads((tmp_path / "checkpoint.json").read_text())
    assert doc["fingerprint"] == FINGERPRINTS[name], (
        "the resume fingerprint changed: checkpoints of earlier versions would be refused; "
        "leave new settings out of it at their defaults (learned._base._ADDED_FIELDS)")
    # and an earlier run's checkpoint extends to more steps
    more = create(name, depth=1, base_filters=4, patch_size=16, batch_size=2, steps=2, seed=0)
    if name in ("care", "n2n"):
        more.fit([noisy], [clean], "YX", checkpoint_dir=tmp_path, resume=True)
    else:
        more.fit([noisy], "YX", checkpoint_dir=tmp_path, resume=True)
    assert more.train_result.steps_done == 2
