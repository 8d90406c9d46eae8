"""Generate the reference parts of docs/ from the code: run by cog (``cog -r docs/*.md``).

The configuration page comes from the starter file ``touchpoint init`` writes
(``monitor/config_template.toml``) and the command page from every command's ``--help``, so
neither can drift from what the program says; ``tests/test_docs.py`` runs ``cog --check`` and
fails when a page is out of date. This module is not part of the installed package: cog adds
docs/ to ``sys.path`` and the cog blocks in the pages import it as ``_generate``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # document this checkout, even when cog runs from elsewhere
    sys.path.insert(0, str(ROOT))

import click  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from monitor.cli import cli  # noqa: E402
from monitor.config import template_text  # noqa: E402

HELP_WIDTH = 98  # what click prints on a wide terminal (the group's max_content_width - 2)

HEADER = re.compile(r"^(?P<commented># )?(?P<header>\[\[?[\w.-]+\]\]?)\s*$")
KEY = re.compile(r"^(?P<commented># )?(?P<key>[a-z_]+) = (?P<value>.*?)(?:\s+# (?P<note>.*))?$")


@dataclass
class Key:
    """One key of the template: its value there and the comment that explains it."""

    name: str
    value: str
    meaning: str
    commented: bool


@dataclass
class Section:
    """One table of the template, with the comment written above its header."""

    header: str
    intro: str = ""
    commented: bool = False
    keys: list[Key] = field(default_factory=list)


def parse_template(text: str) -> tuple[str, list[Section]]:
    """Split the template into its opening comment and its sections, each key with its comment.

    A comment explains the keys right below it (two keys may share one); a commented-out key
    (``# name = value``) is an optional key, shown with its example value; a key's own trailing
    comment is added to (or, after another key, replaces) the comment above it.
    """
    preamble: list[str] = []
    sections: list[Section] = []
    pending: list[str] = []  # comment lines not yet attached to a key or a section
    current: list[str] = []  # the comment the keys being read share
    for line in text.splitlines():
        header, key = HEADER.match(line), KEY.match(line)
        if header:
            intro = " ".join(pending)
            sections.append(Section(header["header"], intro, commented=bool(header["commented"])))
            pending, current = [], []
        elif key and sections:
            if pending:
                current, pending = pending, []
            elif key["note"] and sections[-1].keys:
                current = []
            meaning = " ".join([*current, key["note"] or ""]).strip()
            sections[-1].keys.append(
                Key(key["key"], key["value"], meaning, commented=bool(key["commented"]))
            )
        elif line.startswith("#"):
            words = _comment_words(line)
            if words:
                (pending if sections else preamble).append(words)
        elif not sections and preamble:
            preamble.append("\n\n")
    return " ".join(preamble).replace(" \n\n ", "\n\n").strip(), sections


def _comment_words(line: str) -> str:
    """A comment line's text; an indented one (a command to run) as inline code."""
    words = line[1:]
    if words.startswith("   ") and words.strip():
        return f"`{words.strip()}`"
    return words.strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def config_reference() -> str:
    """Every section and key of the starter config as Markdown tables."""
    preamble, sections = parse_template(template_text())
    out = [preamble, ""]
    for section in sections:
        out += [f"### `{section.header}`", ""]
        if section.commented:
            out += ["*Commented out in the template: an example to copy.*", ""]
        if section.intro:
            out += [_cell(section.intro), ""]
        if not section.keys:
            continue
        out += ["| key | value in the template | meaning |", "|---|---|---|"]
        for key in section.keys:
            value = f"`{_cell(key.value)}`"
            if key.commented:
                value = f"commented out: {value}"
            out.append(f"| `{key.name}` | {value} | {_cell(key.meaning)} |")
        out.append("")
    return "\n".join(out)


def config_template() -> str:
    """The starter config itself, as ``touchpoint init`` writes it."""
    return f"```toml\n{template_text().rstrip()}\n```\n"


def command_paths(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command under ``group``, groups before their commands, in click's (sorted) order."""
    ctx = click.Context(group, info_name="touchpoint")
    paths: list[tuple[str, ...]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths += command_paths(command, (*prefix, name))
    return paths


def command_help(path: tuple[str, ...]) -> str:
    """What ``touchpoint PATH --help`` prints on a wide terminal."""
    result = CliRunner().invoke(
        cli, [*path, "--help"], prog_name="touchpoint", terminal_width=HELP_WIDTH
    )
    if result.exit_code != 0:
        raise RuntimeError(f"touchpoint {' '.join(path)} --help failed: {result.output}")
    return "\n".join(line.rstrip() for line in result.output.splitlines())


def command_reference() -> str:
    """The group's help and every command's, one section each."""
    out: list[str] = []
    for path in [(), *command_paths()]:
        title = " ".join(("touchpoint", *path))
        out += [f"### `{title}`", "", "```text", command_help(path), "```", ""]
    return "\n".join(out)
