"""Every promise of the docs is checked: commands documented, help with examples, CI = README,
and the generated pages of docs/ (configuration, commands) up to date with the code."""

from __future__ import annotations

import io
import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from cogapp import Cog

from monitor.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = ROOT / "docs"
COMMANDS_PAGE = (DOCS / "commands.md").read_text(encoding="utf-8")
COMMANDS = sorted(
    [name for name in cli.commands]
    + [
        f"{name} {sub}"
        for name, group in cli.commands.items()
        if isinstance(group, click.Group)
        for sub in group.commands
    ]
)
GLOBAL_OPTIONS_WITH_VALUE = {"-c", "--config", "--db"}
README_MAX_LINES = 200


@pytest.mark.parametrize("command", COMMANDS)
def test_docs_every_command_is_described_in_the_commands_page(command: str) -> None:
    described = COMMANDS_PAGE.split("## What each command does", 1)[1].split("\n## ", 1)[0]
    assert re.search(rf"`touchpoint {re.escape(command)}\b", described), command


def test_docs_every_top_level_command_is_in_the_readme() -> None:
    for command in cli.commands:
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


def readme_invocations() -> list[list[str]]:
    """Each `touchpoint ...` the README shows (in code blocks and inline code), as words."""
    blocks = re.findall(r"```sh\n(.*?)```", README, re.S)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", README, flags=re.S))
    texts = [line for block in blocks for line in block.splitlines()] + spans
    found = []
    for text in texts:
        for match in re.finditer(r"(?:^|[\s/])touchpoint((?: [^\s;&|#>]+)+)", text):
            found.append(shlex.split(match[1]))
    return found


def test_docs_every_command_the_readme_shows_exists() -> None:
    invocations = readme_invocations()
    assert len(invocations) > 15
    for words in invocations:
        while words and words[0].startswith("-"):  # global options before the command
            words = words[2:] if words[0] in GLOBAL_OPTIONS_WITH_VALUE else words[1:]
        if not words:
            continue
        command = cli.commands.get(words[0])
        assert command is not None, f"touchpoint {' '.join(words)}: no such command"
        if isinstance(command, click.Group) and len(words) > 1 and not words[1].startswith("-"):
            assert words[1] in command.commands, f"touchpoint {' '.join(words)}: no such command"


def test_docs_readme_is_short() -> None:
    assert len(README.splitlines()) <= README_MAX_LINES


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings (lower case, punctuation dropped, - for space)."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    headings = re.findall(r"^#+ (.*)$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_docs_links_resolve() -> None:
    """Every relative link of the README and docs/ names a file that exists, and a heading in it."""
    for page in [ROOT / "README.md", *DOCS.glob("*.md")]:
        text = page.read_text(encoding="utf-8")
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path = page.parent / target if target else page
            assert path.exists(), f"{page.name}: {target}"
            if anchor:
                headings = anchors(path.read_text(encoding="utf-8"))
                assert anchor in headings, f"{page.name}: {target}#{anchor}"


def test_docs_generated_pages_are_up_to_date() -> None:
    """The configuration and commands pages match the template and every --help (as sqlite-utils
    checks its docs); `cog -r docs/*.md` regenerates them."""
    pages = sorted(str(page) for page in DOCS.glob("*.md"))
    out, err = io.StringIO(), io.StringIO()
    cog = Cog()
    cog.set_output(stdout=out, stderr=err)
    status = cog.main(["cog", "--check", "--diff", *pages])
    assert status == 0, f"{err.getvalue()}{out.getvalue()}\nFix: cog -r docs/*.md"
    for name in ("configuration.md", "commands.md"):
        assert "[[[cog" in (DOCS / name).read_text(encoding="utf-8"), name


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
