"""``fluorecon report evaluate|train`` without torch: classical methods, given outputs,
recorded model folders, and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from fluorecon.cli.app import app
from fluorecon.io import write_image
from fluorecon.report.html import external_references
from fluorecon.simulate.pairs import simulate_pair

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, needle: str = "") -> None:
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    assert needle in err, err


@pytest.fixture
def pair_files(tmp_path):
    pair = simulate_pair("denoise", (48, 48), photons=20, seed=5)
    write_image(tmp_path / "in.tif", pair.input, pair.meta)
    write_image(tmp_path / "gt.tif", pair.target, pair.target_meta)
    return tmp_path


def test_evaluate_classical_method_with_reference(pair_files):
    out = pair_files / "r.html"
    res = run("report", "evaluate", pair_files / "in.tif", "--method", "gaussian", "-p",
              "sigma=1.0", "-r", pair_files / "gt.tif", "--consistency", "--line", "5,5,5,40",
              "-o", out, "-q")
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert external_references(page) == []
    assert "id='metrics-against-the-reference'" in page and "id='trust-maps'" in page
    assert "<td>method</td><td>gaussian (sigma=1.0)</td>" in page
    assert "Line from (y, x) = (5.0, 5.0) to (5.0, 40.0)" in page
    assert_one_line_error(run("report", "evaluate", pair_files / "in.tif", "--method",
                              "gaussian", "-o", out, "-q"), "--overwrite")


def test_evaluate_given_prediction_without_reference(pair_files):
    write_image(pair_files / "p.tif", np.zeros((48, 48), np.float32) + 3,
                simulate_pair("denoise", (48, 48), seed=0).meta)
    out = pair_files / "p.html"
    res = run("report", "evaluate", pair_files / "in.tif", "--prediction", pair_files / "p.tif",
              "-o", out, "-q")
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert "metrics-against-the-reference" not in page
    assert "<td>prediction</td>" in page and "FRC 1/7 (µm)" in page


@pytest.mark.parametrize("args,needle", [
    ((), "exactly one"),
    (("--method", "gaussian", "--prediction", "in.tif"), "exactly one"),
    (("--method", "rl"), "--psf"),
    (("--method", "gaussian", "--line", "1,2,3"), "Y0,X0,Y1,X1"),
    (("--method", "gaussian", "--uncertainty", "ensemble"), "--model"),
    (("--method", "nope"), "nope"),
])
def test_evaluate_errors_are_one_line(pair_files, args, needle):
    args = tuple(pair_files / a if a == "in.tif" else a for a in args)
    res = run("report", "evaluate", pair_files / "in.tif", *args, "-o", pair_files / "x.html")
    assert_one_line_error(res, needle)
    assert not (pair_files / "x.html").exists()


def test_evaluate_refuses_non_html_and_inputs(pair_files):
    assert_one_line_error(run("report", "evaluate", pair_files / "in.tif", "--method",
                              "gaussian", "-o", pair_files / "in.tif"), ".html")


def test_train_report_of_a_recorded_folder(tmp_path, model_folder):
    out = tmp_path / "t.html"
    res = run("report", "train", model_folder, "-o", out, "--examples", "0", "-q")
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert external_references(page) == []
    assert "id='loss-curves'" in page and "No example patches (--examples 0)." in page
    assert_one_line_error(run("report", "train", tmp_path / "none", "-o", out, "--overwrite"),
                          "does not exist")
    assert_one_line_error(run("report", "train", model_folder, "-o",
                              model_folder / "config.json", "--overwrite"), ".html")
    assert_one_line_error(run("report", "train", model_folder, "-o", tmp_path / "u.html",
                              "--target", "t.tif"), "--image")


@pytest.mark.parametrize("command", [(), ("train",), ("evaluate",)])
def test_report_help(command):
    res = run("report", *command, "--help")
    assert res.exit_code == 0 and "Usage" in res.output
