"""Classical denoising with self-calibration (J-invariance)."""
