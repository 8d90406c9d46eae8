"""The classifier in the pipeline and the CLI: collect labels new brand posts; evaluate."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from classifiers.persist import load, sidecar_path
from monitor import store
from monitor.cli import cli
from monitor.sandbox import fleet
from tests.conftest import TEST_NOW

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@contextmanager
def x_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str = "") -> Iterator[Path]:
    """The X sandbox running, and a config for it (plus ``extra`` TOML); yields the config."""
    for name, value in fleet.environment(["x"]).items():
        monkeypatch.setenv(name, value)
    with fleet.running(seed=4, start=END - timedelta(days=1), end=END, platforms=["x"]) as servers:
        config = tmp_path / "touchpoint.toml"
        config.write_text(fleet.config_text({p: s.url for p, s in servers.items()}) + extra)
        yield config


def test_classify_collect_labels_every_new_brand_post_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with x_sandbox(tmp_path, monkeypatch) as config:
        runner = CliRunner()
        first = runner.invoke(cli, ["--config", str(config), "collect"])
        assert first.exit_code == 0, first.output
        db = store.open_db(tmp_path / "touchpoint.db")
        brand_posts = db.execute("SELECT count(*) FROM posts WHERE is_brand = 1").fetchone()[0]
        assert brand_posts > 0
        assert f"classified {brand_posts} new brand posts" in first.stdout
        labels = dict(db.execute("SELECT label, count(*) FROM labels GROUP BY label").fetchall())
        assert sum(labels.values()) == brand_posts
        assert set(labels) <= {"engaging", "inspiring", "sales-pitch"}
        row = db.execute("SELECT confidence, probabilities, model_version FROM labels").fetchone()
        assert 0 < row[0] <= 1 and abs(sum(json.loads(row[1]).values()) - 1) < 1e-3 and row[2]
        status = store.get_classifier_status(db)
        assert status is not None and status.failures == 0  # what the service alert reads

        again = runner.invoke(cli, ["--config", str(config), "collect"])
        assert "classified 0 new brand posts" in again.stdout
        relabel = runner.invoke(cli, ["--config", str(config), "classify", "--relabel"])
        assert relabel.exit_code == 0 and "labelled 0 posts" in relabel.stdout  # same model
        accurate = runner.invoke(
            cli, ["--config", str(config), "classify", "--relabel", "--accurate"]
        )
        assert accurate.exit_code == 0, accurate.output
        assert f"labelled {brand_posts} posts" in accurate.stdout  # another model version
        versions = {v for (v,) in db.execute("SELECT DISTINCT model_version FROM labels")}
        assert len(versions) == 1 and "+mpnet-" in versions.pop()
        db.conn.close()


def test_classify_collect_with_a_model_that_cannot_load_stores_posts_and_records_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with x_sandbox(tmp_path, monkeypatch, '\n[classifier]\nmodel_path = "gone.skops"\n') as config:
        result = CliRunner().invoke(cli, ["--config", str(config), "collect"])
    assert result.exit_code == 0, result.output
    db = store.open_db(tmp_path / "touchpoint.db")
    assert db.execute("SELECT count(*) FROM posts WHERE is_brand = 1").fetchone()[0] > 0
    assert db.execute("SELECT count(*) FROM labels").fetchone()[0] == 0
    status = store.get_classifier_status(db)
    assert status is not None and status.failures == 1
    assert status.error is not None and "gone.skops" in status.error
    config.write_text(config.read_text().replace('model_path = "gone.skops"', ""))  # fixed
    fixed = CliRunner().invoke(cli, ["--config", str(config), "classify"])
    assert fixed.exit_code == 0, fixed.output
    status = store.get_classifier_status(db)
    assert status is not None and status.failures == 0
    assert db.execute("SELECT count(*) FROM labels").fetchone()[0] > 0
    db.conn.close()


def test_classify_evaluate_reports_json_on_a_labelled_csv(tmp_path: Path) -> None:
    data = tmp_path / "mine.csv"
    with data.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        writer.writerow(
            [1, "Shop our new spring collection now: 30% off with code SPRING30!", "sales-pitch"]
        )
        writer.writerow(
            [2, "Proud of our volunteers who planted 10,000 trees this month.", "inspiring"]
        )
        writer.writerow(
            [3, "What's your favourite way to spend a rainy Sunday? Tell us!", "engaging"]
        )
    result = CliRunner().invoke(cli, ["evaluate", "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"macro_f1", "accuracy", "per_class", "n"} and report["n"] == 3
    assert set(report["per_class"]) == {"engaging", "inspiring", "sales-pitch"}
    bad = tmp_path / "bad.csv"
    bad.write_text("post,category\nhello,x\n")
    refused = CliRunner().invoke(cli, ["evaluate", "--data", str(bad)])
    assert refused.exit_code == 1 and "text and label" in refused.stderr


def test_classify_evaluate_needs_no_working_config_and_scores_the_model_given(
    tmp_path: Path,
) -> None:
    """A config with no brand yet used to stop evaluate ("no brand is configured")."""
    data = tmp_path / "mine.csv"
    data.write_text("text,label\nWin a trip: tag a friend below!,sales-pitch\n")
    (tmp_path / "touchpoint.toml").write_text('[store]\npath = "touchpoint.db"\n')
    shipped = Path(__file__).parents[1] / "classifiers" / "models" / "default.skops"
    version = json.loads(sidecar_path(shipped).read_text())["model_version"]
    result = CliRunner().invoke(cli, ["evaluate", "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "config not read" in result.stderr and f"model {version}" in result.stderr
    given = CliRunner().invoke(cli, ["evaluate", "--data", str(data), "--model", str(shipped)])
    assert given.exit_code == 0 and f"model {version}" in given.stderr, given.output
    assert "config not read" not in given.stderr  # --model: the config is not consulted
    (tmp_path / "other.skops").write_bytes(b"not a model")
    refused = CliRunner().invoke(cli, ["evaluate", "--data", str(data), "--model", "other.skops"])
    assert refused.exit_code == 1 and "Fix:" in refused.stderr and "Traceback" not in refused.output


def test_classify_train_refuses_a_bad_csv_at_once(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhello,spam\n", encoding="utf-8")
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["train", "--data", str(bad)])
    assert result.exit_code == 1 and "Traceback" not in result.output + result.stderr
    assert f"{bad}: line 2: 'spam' is not a label" in result.stderr
    assert time.monotonic() - started < 20  # before any training
    assert not (tmp_path / "touchpoint-model.skops").exists()


@pytest.mark.timeout(300)  # 2× and more above what it takes beside another test worker
def test_classify_train_writes_a_model_that_loads_and_shows_its_steps(tmp_path: Path) -> None:
    """The real command in its own process (one CV round over 2,990 scored posts and each
    diverse source left out: 72 s beside another busy test worker): it says what it is
    doing."""
    mine = tmp_path / "mine.csv"
    mine.write_text(
        "text,label\nUse code TP20 for 20% off all week!,sales-pitch\n"
        "What should we name our new office dog?,engaging\n",
        encoding="utf-8",
    )
    command = [sys.executable, "-m", "monitor", "train", "--data", str(mine), "-o", "m.skops"]
    command += ["--cv-seeds", "1"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {tmp_path / 'm.skops'}. Use it:")
    steps = done.stderr
    assert "cross-validating the linear part on 2990 scored posts" in steps
    assert "seed 0 fold 0:" in steps and "fitting the final model on" in steps
    assert "seed 1 fold 0:" not in steps  # one round, as asked
    model = load(tmp_path / "m.skops")
    assert model.predict_labels(["Use code TP20 for 20% off all week!"]) == ["sales-pitch"]
    assert model.version.startswith(f"{TEST_NOW:%Y%m%d}-")  # dated by touchpoint's clock
    counts = json.loads(sidecar_path(tmp_path / "m.skops").read_text())["metrics"]["counts"]
    assert counts[str(mine)] == {"sales-pitch": 1, "engaging": 1}
