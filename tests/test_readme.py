"""Every `nowcast …` command the README shows parses against the real CLI.

The commands of the main workflow also run for real elsewhere (test_workflow, test_predict,
test_verify, test_figures, test_demo); this test keeps every example in the README from
drifting away from the options the CLI has.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import typer

from nowcast_cli.cli import app
from tests.conftest import REPO


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            command = re.split(r"\s#\s", line)[0].strip()
            if command.startswith("nowcast "):
                lines.append(command)
    return lines


def parse(args: list[str]) -> Any:
    """Parse like click would run it, down to the leaf command, without invoking anything."""
    group = typer.main.get_command(app)
    ctx = group.make_context("nowcast", list(args))
    cmd: Any = group
    while hasattr(cmd, "resolve_command"):
        # typer vendors click: protected args (the subcommand name) are a private attribute
        rest = [*getattr(ctx, "protected_args", getattr(ctx, "_protected_args", [])), *ctx.args]
        name, cmd, rest = cmd.resolve_command(ctx, rest)
        ctx = cmd.make_context(name, rest, parent=ctx)
    return ctx


def test_the_readme_shows_the_three_lines_and_the_demo() -> None:
    commands = readme_commands()
    assert "nowcast ingest dwd ./raw" in commands
    assert "nowcast train --model motionrnn --loss ff-mse" in commands
    assert "nowcast verify --thresholds 0.5,2,5,10,30" in commands
    assert len(commands) > 30


@pytest.mark.parametrize("line", readme_commands())
def test_readme_command_parses(line: str) -> None:
    ctx = parse(shlex.split(line)[1:])
    assert ctx.command.name in {c.name for c in typer.main.get_command(app).commands.values()} | {
        "sources", "models", "losses", "metrics", "stores", "runs",
    }  # fmt: skip
