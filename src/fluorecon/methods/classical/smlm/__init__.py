"""Classical single-molecule localisation microscopy (no torch).

- :mod:`.detection`: band-pass filters (wavelet, DoG) and local maxima;
- :mod:`.fitting`: batched Levenberg-Marquardt MLE (Poisson / sCMOS) with CRLB;
- :mod:`.localize`: the localisation pipeline and the astigmatic calibration;
- :mod:`.postprocess`: rendering, merging, drift correction, filters;
- :mod:`.table`: CSV tables with ThunderSTORM column names.
"""

from fluorecon.methods.classical.smlm.detection import band_pass, detect_candidates
from fluorecon.methods.classical.smlm.fitting import FitResult, fit_rois
from fluorecon.methods.classical.smlm.localize import (
    LocalizeConfig,
    calibrate_astigmatism,
    camera_electrons,
    localize,
)
from fluorecon.methods.classical.smlm.postprocess import (
    DriftResult,
    apply_drift,
    drift_rcc,
    filter_localizations,
    merge_localizations,
    render_gaussian,
    render_histogram,
)
from fluorecon.methods.classical.smlm.table import (
    read_csv,
    read_insight3,
    to_csv_text,
    write_csv,
)
from fluorecon.simulate.smlm import AstigmaticCalibration, Localizations, PSFModel

__all__ = [
    "AstigmaticCalibration",
    "DriftResult",
    "FitResult",
    "Localizations",
    "LocalizeConfig",
    "PSFModel",
    "apply_drift",
    "band_pass",
    "calibrate_astigmatism",
    "camera_electrons",
    "detect_candidates",
    "drift_rcc",
    "filter_localizations",
    "fit_rois",
    "localize",
    "merge_localizations",
    "read_csv",
    "read_insight3",
    "render_gaussian",
    "render_histogram",
    "to_csv_text",
    "write_csv",
]
