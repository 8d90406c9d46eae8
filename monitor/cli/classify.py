"""``touchpoint classify``, ``evaluate`` and ``train``: the classifier's commands.

scikit-learn loads only inside these commands, never when ``monitor.cli`` is imported (the daemon
stays lean).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from monitor import clock, pipeline, store
from monitor.cli.app import AppContext, cli, pass_app
from monitor.cli.common import UtcTime, refuse_store_target
from monitor.config import Settings

if TYPE_CHECKING:  # scikit-learn loads only for the commands that classify (the daemon stays lean)
    import classifiers


logger = logging.getLogger(__name__)


def _classifier(settings: Settings | None, accurate: bool) -> classifiers.Classifier:
    import classifiers

    try:
        if settings is None:
            return classifiers.load_default(accurate=accurate)
        if accurate:
            settings = dataclasses.replace(settings, accurate_classifier=True)
        return pipeline.load_classifier(settings)
    except classifiers.ModelLoadError as exc:
        raise click.ClickException(
            f"the classifier model cannot be loaded: {exc}. Fix: check "
            "[classifier] model_path and accurate, or retrain with `touchpoint train`"
        ) from None


def exit_with_parent(fd: int) -> None:
    """End this process when the write end of the pipe ``fd`` reads from closes: the daemon
    that started it holds that end until it has waited for it, and the kernel closes it when
    the daemon dies, even by SIGKILL. A classify left running would write to the store beside
    the next daemon, outside its lock."""

    def watch() -> None:
        while os.read(fd, 64):
            pass
        logger.warning("classify: the daemon that started it is gone: stopping")
        os._exit(3)  # no clean-up: the store's transaction in flight rolls back on its own

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


_ACCURATE = click.option(
    "--accurate",
    is_flag=True,
    help="Add the slower, more accurate mpnet part (as [classifier] accurate = true; "
    "needs the accurate extra).",
)


@cli.command()
@click.option(
    "--since",
    type=UtcTime(),
    help="Only posts created at or after this time (UTC), e.g. 2026-11-01.",
)
@click.option(
    "--relabel", is_flag=True, help="Also relabel posts labelled by another model version."
)
@_ACCURATE
@click.option("--parent-fd", type=int, hidden=True, help="The daemon's pipe: exit when it closes.")
@pass_app
def classify(
    app: AppContext, since: datetime | None, relabel: bool, accurate: bool, parent_fd: int | None
) -> None:
    """Label the brand's posts engaging, inspiring or sales-pitch (collect does this too).

    \b
    Example:
        touchpoint classify --relabel
    """
    if parent_fd is not None:
        exit_with_parent(parent_fd)
    settings = app.settings()
    db = app.open_existing(app.db_override or settings.db_path)
    classifier = _classifier(settings, accurate)
    done = pipeline.classify_pending(db, classifier, relabel=relabel, since=since)
    counts = ", ".join(f"{n} {label}" for label, n in sorted(store.count_labels(db).items()))
    click.echo(
        f"labelled {done} posts with model {classifier.version}; all labels: {counts or '-'}"
    )


@cli.command()
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV with columns text and label (others ignored).",
)
@click.option(
    "--model",
    "model_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A model `touchpoint train` wrote (default: the config's [classifier] model_path, else "
    "the shipped model).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a report.")
@_ACCURATE
@pass_app
def evaluate(
    app: AppContext, data: Path, model_file: Path | None, as_json: bool, accurate: bool
) -> None:
    """Score the classifier on your own labelled posts: macro-F1, accuracy, per class.

    Needs no config: it scores --model, else the model the config names (when there is a
    config that can be read), else the shipped one, and says which.

    \b
    Example:
        touchpoint evaluate --data labelled.csv --model touchpoint-model.skops --json
    """
    from classifiers.evaluate import evaluate as score

    texts, labels = _read_labelled(data)
    model = _evaluated_model(app, model_file, accurate)
    if not as_json:
        click.echo(f"model {model.version}", err=True)
    try:
        report = score(model, texts, labels)
    except ValueError as exc:
        raise click.ClickException(f"{data}: {exc}") from None
    if as_json:
        keys = ("macro_f1", "accuracy", "per_class", "n")
        click.echo(json.dumps({k: report[k] for k in keys}, indent=2))
        return
    click.echo(
        f"n={report['n']}  macro-F1 {report['macro_f1']:.3f}  accuracy {report['accuracy']:.3f}"
    )
    for label, row in report["per_class"].items():
        click.echo(
            f"  {label:12} precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
            f"F1 {row['f1']:.3f}  n={row['support']}"
        )


def _evaluated_model(
    app: AppContext, model_file: Path | None, accurate: bool
) -> classifiers.Classifier:
    """--model; else the config's model (a config that cannot be read, say one with no brand
    yet, is named and passed over: only its [classifier] section would matter here)."""
    import classifiers

    if model_file is not None:
        try:
            return classifiers.load_default(model_file, accurate=accurate)
        except classifiers.ModelLoadError as exc:
            raise click.ClickException(
                f"--model {model_file}: {exc}. Fix: give a model `touchpoint train` wrote"
            ) from None
    settings = None
    if app.config_path.exists():
        try:
            settings = app.settings()
        except click.ClickException as exc:
            click.echo(
                f"note: config not read ({exc.message}); scoring the shipped model", err=True
            )
    return _classifier(settings, accurate)


def _read_labelled(path: Path) -> tuple[list[str], list[str]]:
    from classifiers.evaluate import read_labelled

    try:
        rows = read_labelled(path)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    return [t for t, _ in rows], [label for _, label in rows]


@cli.command()
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your own labelled posts (CSV: text,label) added to the shipped corpus.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Model file to write (default: touchpoint-model.skops beside the config).",
)
@click.option(
    "--cv-seeds",
    type=click.IntRange(1, 3),
    default=3,
    show_default=True,
    help="Cross-validation rounds whose scores go into the model's sidecar: 1 is about twice "
    "as fast, its figures less sure.",
)
@pass_app
def train(app: AppContext, data: Path | None, output: Path | None, cv_seeds: int) -> None:
    """Retrain the classifier on the shipped corpus plus your labelled posts.

    Writes the model and its sidecar; point [classifier] model_path at it to use it (the line
    to add is printed; a relative model_path is read from the config file's folder). It takes
    a minute or two on 2 cores; each step (cross-validation folds, the final fit) is logged to
    standard error as it goes.

    \b
    Example:
        touchpoint train --data our_posts.csv -o touchpoint-model.skops
    """
    from classifiers.train import main as train_main

    if data is not None:
        _read_labelled(data)  # a bad file is refused now, not after minutes of training
    folder = app.config_path.resolve().parent
    target = (output or folder / "touchpoint-model.skops").resolve()
    refuse_store_target(app.db_path_if_known(), target, "-o")
    args = ["--out", str(target), "--no-card", "--cv-seeds", str(cv_seeds)]
    args += ["--data", str(data)] if data else []
    steps = logging.getLogger("classifiers")
    level = steps.level
    if not app.verbose:  # minutes of work: show its steps (the classifiers' INFO lines) anyway
        steps.setLevel(logging.INFO)
    try:
        failed = train_main(args, today=clock.now().date()) != 0
    finally:
        steps.setLevel(level)
    if failed:
        raise click.ClickException("training failed (see the log above)")
    shown = target.relative_to(folder) if target.is_relative_to(folder) else target
    click.echo(f'wrote {target}. Use it: [classifier] model_path = "{shown}" in {app.config_path}')
