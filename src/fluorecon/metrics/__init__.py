"""fluorecon.metrics layer."""
