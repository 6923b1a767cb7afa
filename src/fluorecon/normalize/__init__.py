"""fluorecon.normalize layer."""
