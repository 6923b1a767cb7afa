"""``python -m fluorecon`` runs the command-line interface."""

from fluorecon.cli.app import main

main()
