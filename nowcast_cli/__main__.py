"""`python -m nowcast_cli` runs the command-line interface."""

from nowcast_cli.cli import run

run()
