"""fluorecon.io layer."""
