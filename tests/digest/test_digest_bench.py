"""bench/digest.py works: it builds both stores, times them and checks the query plans."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_digest", ROOT / "bench" / "digest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_digest_bench_runs_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_bench()
    code = bench.main(
        ["--small", "2000", "--large", "20000", "--rounds", "3", "--dir", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert "digest + alerts for one brand and day:" in out and "ratio" in out
    assert "BAD" not in out
    assert code == 0, out


def test_digest_bench_store_has_the_traffic_it_claims(tmp_path: Path) -> None:
    bench = load_bench()
    db, shape, count = bench.build_store(tmp_path / "s.db", 3000)
    assert shape.brands == 2 and count > 2000
    kinds = dict(db.conn.execute("SELECT kind, count(*) FROM posts GROUP BY kind").fetchall())
    assert set(kinds) == {"post", "reply", "mention", "keyword"}
    answered = db.conn.execute(
        "SELECT count(*) FROM posts r JOIN posts m ON r.in_reply_to_id = m.id "
        "WHERE r.kind = 'reply' AND m.kind = 'mention'"
    ).fetchone()[0]
    assert answered == kinds["reply"]  # every reply answers a mention or its follow-up
    labelled = db.conn.execute("SELECT count(*) FROM labels").fetchone()[0]
    assert labelled == kinds["post"] + kinds["reply"]
    db.conn.close()
