"""fluorecon.report layer."""
