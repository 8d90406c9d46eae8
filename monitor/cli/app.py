"""The ``touchpoint`` click group: global options, the context every command gets, ``main()``."""

from __future__ import annotations

import errno
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from sqlite_utils import Database

from monitor import __version__, store
from monitor.config import (
    ENV_CONFIG,
    ENV_DB,
    ConfigError,
    Settings,
    default_config_path,
    load_settings,
)
from monitor.logs import setup_logging

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass
class AppContext:
    """What the group's options resolve to, shared by every command."""

    config_path: Path
    db_override: Path | None
    verbose: int = 0

    def settings(self) -> Settings:
        try:
            return load_settings(self.config_path)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None

    def settings_if_any(self) -> Settings | None:
        """The settings; or None when --db names the store and the config cannot be read (a
        command that needs only the store still works then)."""
        try:
            return self.settings()
        except click.ClickException:
            if self.db_override is None:
                raise
            return None

    def db_path(self) -> Path:
        if self.db_override is not None:
            return self.db_override
        return self.settings().db_path

    def db_path_if_known(self) -> Path | None:
        """The store's path when --db or a readable config names it, else None (for a command
        such as ``init`` or ``train`` that runs before there is a config)."""
        try:
            return self.db_path()
        except click.ClickException:
            return None

    def open(self, path: Path | None = None) -> Database:
        try:
            return store.open_db(path or self.db_path())
        except store.StoreError as exc:
            raise click.ClickException(str(exc)) from None

    def open_existing(self, path: Path | None = None) -> Database:
        """Open the store for a command that only reads it: a file that is not there is an
        error, not a new empty database (a mistyped --db read as "nothing there")."""
        path = path or self.db_path()
        if not path.exists():
            raise click.ClickException(missing_db(path))
        return self.open(path)


def missing_db(path: Path, *, joined: str = ". Fix: ") -> str:
    """What to say of a store file that is not there (``joined``: between the fact and the fix)."""
    return (
        f"no database at {path} yet{joined}`touchpoint collect` (or `touchpoint run`) makes it; "
        f"if it should be there, check --db, ${ENV_DB} and the config's [store] path"
    )


pass_app = click.make_pass_decorator(AppContext)

# no room, or no writing at all: said by the group (below), whatever the command writes
OUTPUT_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


class TouchpointGroup(click.Group):
    """The group: a command that cannot write its output (a full disk, a read-only file system)
    or its store (read-only, locked, full) ends with one line on standard error instead of a
    traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except store.StoreError as exc:  # its message names the file, the cause and the fix
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # (a closed pipe, EPIPE, click's main() already ends quietly)
            if exc.errno not in OUTPUT_FULL:
                raise
            _silence_stdout()  # stdout may be the full file: nothing more goes there
            where = f" ({exc.filename})" if exc.filename else ""
            fix = "write elsewhere" if exc.errno == errno.EROFS else "free space or write elsewhere"
            raise click.ClickException(
                f"cannot write the output{where}: {exc.strerror}. Fix: {fix}"
            ) from None


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that the flush at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (a test runner's capture)
        pass


@click.group(cls=TouchpointGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Config file (default: ${ENV_CONFIG} or ./touchpoint.toml).",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=ENV_DB,
    help=f"SQLite database, overriding the config's [store] path (also ${ENV_DB}).",
)
@click.option("-v", "--verbose", count=True, help="-v logs each run, -vv logs at DEBUG.")
@click.version_option(__version__, prog_name="touchpoint")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, db_path: Path | None, verbose: int) -> None:
    """touchpoint: watch a brand's social touchpoints and keep it honest.

    Engage and inspire, don't sell; answer people promptly; stay consistent on every channel.

    \b
    Example:
        touchpoint init && touchpoint check-config && touchpoint collect
    """
    levels = {0: logging.WARNING, 1: logging.INFO}
    setup_logging(levels.get(verbose, logging.DEBUG))
    ctx.obj = AppContext(
        config_path=config_path or default_config_path(), db_override=db_path, verbose=verbose
    )


def main() -> None:
    """Entry point for ``python -m monitor``."""
    cli(prog_name="touchpoint")
