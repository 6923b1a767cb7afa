"""Classical deconvolution: Richardson-Lucy (+TV), Wiener / Tikhonov."""
