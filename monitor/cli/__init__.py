"""The ``touchpoint`` command line: thin commands that parse, call and echo.

``app`` holds the click group ``cli`` and its context; each command module registers its commands
on it when imported here (after click's examples/complex, without the lazy loading).
"""

from __future__ import annotations

from monitor.cli import (  # noqa: F401  (imported to register their commands)
    alerts,
    backup,
    classify,
    collect,
    configure,
    demo,
    digest,
    run,
)
from monitor.cli.app import CONTEXT_SETTINGS, AppContext, cli, main, pass_app
from monitor.cli.collect import EXPORT_COLUMNS, write_rows
from monitor.cli.common import render_status

__all__ = [
    "CONTEXT_SETTINGS",
    "EXPORT_COLUMNS",
    "AppContext",
    "cli",
    "main",
    "pass_app",
    "render_status",
    "write_rows",
]
