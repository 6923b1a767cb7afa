"""fluorecon.cli layer."""
