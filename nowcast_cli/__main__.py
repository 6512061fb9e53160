"""`python -m nowcast_cli` runs the command-line interface."""

from nowcast_cli.cli import app

app(prog_name="nowcast")
