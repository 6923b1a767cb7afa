"""Atomic writes of non-image files (reports, figures, JSON)."""

import pytest

from fluorecon.core.errors import OutputExistsError
from fluorecon.io import write_bytes_atomic


def test_write_bytes_atomic_rules(tmp_path):
    out = tmp_path / "sub" / "report.html"
    write_bytes_atomic(out, b"one")
    assert out.read_bytes() == b"one"
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_bytes_atomic(out, b"two")
    assert out.read_bytes() == b"one"
    write_bytes_atomic(out, b"two", overwrite=True)
    assert out.read_bytes() == b"two"
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]


def test_write_bytes_atomic_never_replaces_an_input(tmp_path):
    inp = tmp_path / "in.json"
    inp.write_bytes(b"x")
    with pytest.raises(OutputExistsError, match="also an input"):
        write_bytes_atomic(tmp_path / "." / "in.json", b"y", overwrite=True, inputs=[inp])
    assert inp.read_bytes() == b"x"
