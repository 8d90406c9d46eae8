"""Files written for a user: whole or not at all, private unless asked otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor import files


def test_a_write_that_fails_half_way_leaves_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "digest.html"
    target.write_text("yesterday's digest")
    with pytest.raises(RuntimeError), files.replacing(target) as handle:
        handle.write("half of today's")
        raise RuntimeError("disk full, say")
    assert target.read_text() == "yesterday's digest"
    assert list(tmp_path.iterdir()) == [target]  # no partial file left behind


def test_a_write_replaces_the_file_with_the_mode_asked(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "export.csv"
    files.write_text(target, "id\n1\n")
    assert target.read_text() == "id\n1\n" and (target.stat().st_mode & 0o777) == files.PRIVATE
    files.write_text(target, "id\n2\n", mode=files.SHARED)
    assert target.read_text() == "id\n2\n" and (target.stat().st_mode & 0o777) == files.SHARED


def test_a_link_keeps_its_target_and_a_device_is_written_in_place(tmp_path: Path) -> None:
    target = tmp_path / "real.csv"
    target.write_text("old")
    link = tmp_path / "latest.csv"
    link.symlink_to(target)
    files.write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    files.write_text(Path("/dev/null"), "gone")  # a device is not replaced by a file
    assert Path("/dev/null").is_char_device()
