"""``fluorecon unmix``: spectral unmixing of multi-channel images.

Spectra come from a CSV file (one row per channel, one column per fluorophore, a header
row with the fluorophore names), or from the built-in library (``--fluorophores`` with
``--bands`` or ``--detector``), or are estimated (``--method nmf``). Writes the abundance
image (C = fluorophores) and, beside it, ``<name>.spectra.csv`` (the spectra used or
estimated) and ``<name>.residual.ome.tif`` (per-pixel RMS residual: where the spectra do
not explain the data).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from fluorecon.cli.learned import cli_errors
from fluorecon.cli.progress import console, progress_bar
from fluorecon.cli.stabilize import sidecar
from fluorecon.core.errors import ConfigError, InputFileError, message

spectral_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                           rich_markup_mode=None)


def read_spectra_csv(path: Path) -> tuple[Any, list[str]]:
    """Read a spectra CSV: header of names, then one row per channel. Returns ``(C, K)``."""
    import numpy as np

    try:
        rows = list(csv.reader(io.StringIO(path.read_text())))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(message(f"an unreadable spectra file {path} ({exc})",
                                     "a CSV text file", "Check the path.")) from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if len(rows) < 2:
        raise InputFileError(message(f"spectra file {path} with {len(rows)} rows",
                                     "a header row of names and one row per channel",
                                     "See `fluorecon unmix --help`."))
    names = [c.strip() for c in rows[0]]
    try:
        values = np.array([[float(c) for c in r] for r in rows[1:]], dtype=np.float64)
    except ValueError:
        raise InputFileError(message(f"non-numeric values in {path}", "numbers below the "
                                     "header row", "Fix the CSV.")) from None
    if values.ndim != 2 or values.shape[1] != len(names):
        raise InputFileError(message(f"rows of different lengths in {path}",
                                     f"{len(names)} values per row (one per name)",
                                     "Fix the CSV."))
    if names and names[0].lower() in ("channel", "band", "wavelength"):
        names, values = names[1:], values[:, 1:]
    return values, names


def spectra_csv(spectra: Any, names: list[str], channel_labels: list[str] | None) -> str:
    """CSV text of ``(C, K)`` spectra with a channel column."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["channel"] + names)
    for c, row in enumerate(spectra):
        label = channel_labels[c] if channel_labels else str(c)
        w.writerow([label] + [f"{v:.8g}" for v in row])
    return buf.getvalue()


@spectral_app.command("unmix")
@cli_errors
def unmix(
    input: Annotated[Path, typer.Argument(help="Multi-channel image (axes with C).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Abundance image path (C = "
                                         "fluorophores); spectra and residual go beside it.")],
    method: Annotated[str, typer.Option("--method", "-m", help="nnls (non-negative least "
                                        "squares), ls (unconstrained), phasor (reference "
                                        "points, 2-3 components per harmonic), nmf (blind), "
                                        "net (learned, needs --net).")] = "nnls",
    spectra: Annotated[Path | None, typer.Option("--spectra", help="CSV: header of "
                                                 "fluorophore names (optionally a first "
                                                 "'channel' column), one row per image "
                                                 "channel.")] = None,
    fluorophores: Annotated[str | None, typer.Option("--fluorophores", "-f", help="Library "
                                                     "dyes, comma-separated, e.g. "
                                                     "'EGFP,mCherry' (approximate "
                                                     "parametric spectra).")] = None,
    bands: Annotated[str | None, typer.Option("--bands", help="Channel bands in nm with "
                                              "--fluorophores, e.g. '500-550,570-620'.")] = None,
    detector: Annotated[str | None, typer.Option("--detector", help="Spectral detector "
                                                 "START:STOP:N in nm with --fluorophores, "
                                                 "e.g. 410:695:32.")] = None,
    components: Annotated[int | None, typer.Option("--components", "-k", min=1,
                                                   help="Number of components for nmf "
                                                   "(default: the known spectra + 1, or "
                                                   "the channel count).")] = None,
    background: Annotated[str | None, typer.Option("--background", help="Per-channel "
                                                   "background subtracted first (camera "
                                                   "offset): one value or one per channel, "
                                                   "comma-separated.")] = None,
    net: Annotated[Path | None, typer.Option("--net", help="Unmixing-net model folder "
                                             "(--method net).")] = None,
    axes: Annotated[str | None, typer.Option("--axes", help="Axes of the input, e.g. CYX, "
                                             "TCZYX (default: from the file).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs "
                                            "(never the input).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.")] = False,
) -> None:
    """Unmix a multi-channel image into fluorophore abundances."""
    import numpy as np

    from fluorecon import __version__
    from fluorecon.io import check_output_target, read_image, write_bytes_atomic, write_image
    from fluorecon.methods.classical.unmixing import linear_unmix, nmf_unmix, phasor_unmix

    image, meta = read_image(input, axes=axes)
    if "C" not in meta.axes:
        raise ConfigError(message(f"an input with axes {meta.axes!r}", "a channel axis C",
                                  "Pass --axes, e.g. --axes CYX."))
    n_ch = image.shape[meta.axes.index("C")]
    out_spec = sidecar(output, ".spectra.csv")
    out_res = sidecar(output, ".residual.ome.tif")
    for p in (output, out_spec, out_res):
        check_output_target(p, overwrite=overwrite, inputs=[input])
    bg = None
    if background is not None:
        try:
            vals = [float(v) for v in background.split(",")]
        except ValueError:
            raise ConfigError(message(f"--background {background!r}", "numbers", "Use e.g. "
                                      "--background 100 or 100,102,99.")) from None
        bg = vals[0] if len(vals) == 1 else np.array(vals)
    m, names, labels = _spectra(spectra, fluorophores, bands, detector, n_ch)
    if method not in ("nnls", "ls", "phasor", "nmf", "net"):
        raise ConfigError(message(f"--method {method!r}", "nnls, ls, phasor, nmf or net",
                                  "Pick one."))
    if method in ("nnls", "ls", "phasor"):
        m = _need(m, method)
    if method == "net" and net is None:
        raise ConfigError(message("--method net without --net", "a model folder",
                                  "Pass --net MODEL_DIR."))
    with progress_bar(f"unmix ({method})", enabled=not quiet) as cb:
        if method in ("nnls", "ls"):
            res = linear_unmix(image, m, meta.axes, method=method, background=bg, progress=cb)
        elif method == "phasor":
            res = phasor_unmix(image, m, meta.axes, background=bg, progress=cb)
        elif method == "nmf":
            k = components or ((m.shape[1] + 1) if m is not None else n_ch)
            res = nmf_unmix(image, meta.axes, k, known_spectra=m, background=bg, progress=cb)
            names = (names or []) + [f"component{i}" for i in range(len(names or []), k)]
        else:
            from fluorecon.methods.learned.unmixing_net import UnmixingNet

            model = UnmixingNet.load(net)
            res = model.unmix(image, meta.axes, background=bg, progress=cb)
            names = model.component_names
    names = names or [f"component{i}" for i in range(res.spectra.shape[1])]
    extra = {"fluorecon": __version__, "command": "unmix", "method": method,
             "components": names, "inputs": {"input": str(input)}, "info": json.loads(
                 json.dumps(res.info, default=str))}
    ometa = meta.model_copy(update={"extra": extra, "channel_names": names})
    path = write_image(output, res.abundances, ometa, overwrite=overwrite, inputs=[input])
    write_bytes_atomic(out_spec, spectra_csv(res.spectra, names, labels).encode(),
                       overwrite=overwrite, inputs=[input])
    write_image(out_res, res.residual, meta.with_axes(meta.axes.replace("C", "")),
                overwrite=overwrite, inputs=[input])
    if not quiet:
        console.print(f"wrote {path} ({len(names)} components: {', '.join(names)}) + "
                      f"{out_spec.name}, {out_res.name}", markup=False, highlight=False,
                      soft_wrap=True)


def _need(m: Any, method: str) -> Any:
    if m is None:
        raise ConfigError(message(f"--method {method} without spectra", "--spectra FILE or "
                                  "--fluorophores with --bands/--detector",
                                  "Give reference spectra, or use --method nmf."))
    return m


def _spectra(path: Path | None, fluorophores: str | None, bands: str | None,
             detector: str | None, n_ch: int) -> tuple[Any, list[str] | None,
                                                       list[str] | None]:
    from fluorecon.simulate.spectra import (
        band_channels,
        fluorophore,
        mixing_matrix,
        spectral_detector,
    )

    if path is not None and fluorophores is not None:
        raise ConfigError(message("--spectra and --fluorophores", "one source of spectra",
                                  "Pass only one."))
    if path is not None:
        values, names = read_spectra_csv(path)
        return values, names, None
    if fluorophores is None:
        return None, None, None
    fl = [fluorophore(n) for n in fluorophores.split(",")]
    if (bands is None) == (detector is None):
        raise ConfigError(message("--fluorophores without exactly one of --bands, --detector",
                                  "the channels' bands", "Add --bands 500-550,... or "
                                  "--detector 410:695:32."))
    if bands is not None:
        chans = band_channels(bands)
    else:
        try:
            start, stop, n = detector.split(":")  # type: ignore[union-attr]
            chans = spectral_detector(float(start), float(stop), int(n))
        except ValueError:
            raise ConfigError(message(f"--detector {detector!r}", "START:STOP:N",
                                      "E.g. --detector 410:695:32.")) from None
    if len(chans) != n_ch:
        raise ConfigError(message(f"{len(chans)} bands for an image with {n_ch} channels",
                                  "one band per channel", "Fix --bands/--detector."))
    return mixing_matrix(fl, chans), [f.name for f in fl], [c.label for c in chans]


@spectral_app.command("unmix-train")
@cli_errors
def unmix_train(
    model_dir: Annotated[Path, typer.Option("--model-dir", "-o", help="Model folder to "
                                            "write.")],
    fluorophores: Annotated[str, typer.Option("--fluorophores", "-f", help="Library dyes, "
                                              "comma-separated.")],
    bands: Annotated[str, typer.Option("--bands", help="Channel bands in nm, e.g. "
                                       "'500-550,570-620'.")],
    steps: Annotated[int, typer.Option("--steps", min=1, help="Training steps.")] = 2000,
    peak_shift: Annotated[float, typer.Option("--peak-shift", min=0.0, help="Std of simulated "
                                              "emission-peak shifts, nm.")] = 3.0,
    width_change: Annotated[float, typer.Option("--width-change", min=0.0, help="Std of "
                                                "relative width changes.")] = 0.08,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the model folder.")]
    = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train the learned unmixing net on simulated samples with perturbed spectra."""
    from fluorecon.cli.progress import training_bar
    from fluorecon.io import check_output_target
    from fluorecon.methods.learned.unmixing_net import UnmixingNet
    from fluorecon.simulate.spectra import band_channels

    check_output_target(model_dir, overwrite=overwrite)
    chans = band_channels(bands)
    net = UnmixingNet(fluorophores=[f.strip() for f in fluorophores.split(",")],
                      bands=[(c.low, c.high) for c in chans], steps=steps,
                      peak_shift=peak_shift, width_change=width_change, seed=seed)
    with training_bar("train unmixing net", enabled=not quiet) as cb:
        net.fit(progress=cb)
    path = net.save(model_dir, overwrite=overwrite)
    if not quiet:
        console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)
