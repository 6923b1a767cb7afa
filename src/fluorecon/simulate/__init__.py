"""fluorecon.simulate layer."""
