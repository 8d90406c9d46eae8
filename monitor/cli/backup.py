"""``touchpoint backup``: a checked copy of the database, taken while touchpoint runs."""

from __future__ import annotations

import os
from pathlib import Path

import click

from monitor import clock, store
from monitor.cli.app import AppContext, cli, pass_app

DEFAULT_FOLDER = "backups"  # beside the database


@cli.command()
@click.argument("dest", required=False, type=click.Path())
@click.option(
    "--keep",
    type=click.IntRange(min=1),
    metavar="N",
    help="Then remove the oldest time-named backups in that folder, keeping the N newest "
    "(only for a folder DEST).",
)
@click.option("--overwrite", is_flag=True, help="Replace DEST when it is a file already there.")
@pass_app
def backup(app: AppContext, dest: str | None, keep: int | None, overwrite: bool) -> None:
    """Copy the database to DEST: a consistent, checked copy, safe while `touchpoint run` writes.

    DEST is a file, or a folder (one that exists, or a path ending in /) where the copy is named
    by the time in UTC: touchpoint-20261124T031500Z.db. Default: the folder backups/ beside the
    database. The copy is checked whole (PRAGMA integrity_check) before it takes its name: a
    backup killed half-way leaves nothing under that name, never touches an earlier backup, and
    the next backup into the folder clears what it left. The copy is readable by its owner
    only, as the database is (it keeps the Bluesky session).

    To restore one: stop `touchpoint run`, move the database and its -wal and -shm files
    aside, and copy the backup to the database's path.

    \b
    Example:
        touchpoint backup /var/backups/touchpoint/ --keep 7    # e.g. nightly from cron
    """
    db_path = app.db_path()
    target, stamped = _target(dest, db_path)
    if keep is not None and not stamped:
        raise click.UsageError(
            "--keep removes time-named backups from a folder; DEST names a file. Fix: give a "
            "folder (end it with /), or leave --keep out"
        )
    db = app.open_existing(db_path)
    try:
        done = store.backup(db, target, overwrite=overwrite)
    finally:
        db.close()
    for path in done.partials_removed:
        click.echo(f"removed {path} (left by a backup that did not finish)")
    size = done.size / 2**20
    click.echo(f"backup: {done.path} ({size:.1f} MB, {done.posts:,} posts, checked)")
    if keep is not None:
        for path in store.prune(target.parent, db_path, keep):
            click.echo(f"removed {path} (older than the {keep} newest)")


def _target(dest: str | None, db_path: Path) -> tuple[Path, bool]:
    """The backup file DEST means, and whether its name is the time-stamped one (a folder's:
    one there, or a path ending in a slash, which Path() would drop)."""
    if dest is None:
        folder = db_path.parent / DEFAULT_FOLDER
    elif dest.endswith(("/", os.sep)) or Path(dest).is_dir():
        folder = Path(dest)
    else:
        return Path(dest), False
    return folder / store.backup_name(db_path, clock.now()), True
