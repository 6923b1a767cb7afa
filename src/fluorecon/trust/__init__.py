"""Trust: calibrated uncertainty, data consistency, hallucination and generalisation tests,
out-of-distribution warnings and QC reports.

Nothing here imports torch: learned methods are reached through the method registry and
the :class:`~fluorecon.methods.learned.LearnedMethod` interface, so this layer also works
(for classical methods and for the pure-NumPy parts) without the torch extra.

- :mod:`~fluorecon.trust.calibration`: coverage of central intervals, ECE, recalibration.
- :mod:`~fluorecon.trust.consistency`: forward models, standardised residuals, chi-square,
  flagged regions.
- :mod:`~fluorecon.trust.ood`: training-input statistics and warnings at prediction time.
- :mod:`~fluorecon.trust.hallucination`: injected-hallucination AUROC, generalisation
  harness.
- :mod:`~fluorecon.trust.ensembles`: K models trained with different seeds / data splits.
- :mod:`~fluorecon.trust.qc`: everything above for one model and one input.
"""

from __future__ import annotations

from fluorecon.trust.calibration import (
    CalibrationRecord,
    Predictive,
    calibrate,
    coverage,
    expected_calibration_error,
    fit_recalibration,
    pit,
)
from fluorecon.trust.consistency import (
    ConsistencyResult,
    ConvolutionForward,
    DownsampleForward,
    IdentityForward,
    check_consistency,
    forward_for,
)
from fluorecon.trust.ensembles import (
    Ensemble,
    UncertainPrediction,
    calibrate_uncertainty,
    load_predictor,
    predict_uncertainty,
    train_ensemble,
)
from fluorecon.trust.hallucination import (
    auroc,
    generalisation_test,
    inject_structures,
    injected_hallucination_test,
)
from fluorecon.trust.ood import InputStats, OODReport, check_ood, compute_input_stats
from fluorecon.trust.qc import QCResult, model_card, run_qc

__all__ = [
    "CalibrationRecord", "ConsistencyResult", "ConvolutionForward", "DownsampleForward",
    "Ensemble", "IdentityForward", "InputStats", "OODReport", "Predictive", "QCResult",
    "UncertainPrediction", "auroc", "calibrate", "calibrate_uncertainty", "check_consistency",
    "check_ood", "compute_input_stats", "coverage", "expected_calibration_error",
    "fit_recalibration", "forward_for", "generalisation_test", "inject_structures",
    "injected_hallucination_test", "load_predictor", "model_card", "pit",
    "predict_uncertainty", "run_qc", "train_ensemble",
]
