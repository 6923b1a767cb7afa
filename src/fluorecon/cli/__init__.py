"""Command-line interface (``fluorecon``): typer app over the method registry."""
