"""The platform registry: built-ins first in their order, others by name, and one clear line
for an entry point that cannot be used."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from monitor.config import BUILTINS, ConfigError, PlatformError, platforms
from tests.platforms.registry import FAKEPLAT, fresh_registry, install

__all__ = ["fresh_registry"]  # the fixture, used by name

pytestmark = pytest.mark.usefixtures("fresh_registry")


def test_registry_lists_the_built_ins_first_in_their_order() -> None:
    assert tuple(platforms())[: len(BUILTINS)] == BUILTINS
    for name, spec in platforms().items():
        assert spec.name == name and spec.collector.startswith(f"monitor.platforms.{name}.")


def test_registry_puts_other_platforms_after_the_built_ins_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = "fakeplat:PLATFORM"
    install(tmp_path, monkeypatch, "fakeplat", f"fakeplat = {spec}")
    monkeypatch.syspath_prepend(str(FAKEPLAT))
    assert list(platforms()) == [*BUILTINS, "fakeplat"]


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("broken = nosuchmodule_xyz:PLATFORM", "cannot be loaded: ModuleNotFoundError"),
        ("x = monitor.platforms.x:PLATFORM", "platform 'x' is registered twice, also by"),
        ("notaspec = monitor.config:BUILTINS", "names a tuple, not a"),
        ("renamed = monitor.platforms.x:PLATFORM", "its Platform is named 'x'"),
    ],
)
def test_registry_names_an_entry_point_it_cannot_use_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str, problem: str
) -> None:
    install(tmp_path, monkeypatch, "thirdparty", entry)
    with pytest.raises(PlatformError) as raised:
        platforms()
    message = str(raised.value)
    assert isinstance(raised.value, ConfigError)  # the CLI reports it as one line
    assert "\n" not in message and problem in message, message
    assert f"entry point {entry.split(' = ')[0]} = " in message and "Fix: " in message


def test_planning_streams_imports_no_platform_client(tmp_path: Path) -> None:
    """Evaluating alerts asks for the planned streams: the specs answer, no collector module
    (tweepy, praw, httpx clients) is imported."""
    config = tmp_path / "touchpoint.toml"
    config.write_text(
        '[[brands]]\nname = "acme"\nkeywords = ["acme"]\n\n[brands.accounts]\n'
        'x = "acme"\nreddit = "acme"\nmastodon = "acme"\nbluesky = "acme.bsky.social"\n'
    )
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from monitor.alerts import outbox
        from monitor.config import load_settings
        from monitor.platforms.streams import planned_streams
        planned = planned_streams(load_settings(Path({str(config)!r})))
        assert len(planned) == 16, sorted(planned)
        loaded = [m for m in sys.modules if m in ("tweepy", "praw") or m.endswith(".collector")]
        assert not loaded, loaded
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
