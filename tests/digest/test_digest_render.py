"""The digest's text and HTML renderings: figures formatted, untrusted text neutralised."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta

import pytest

from monitor.digest import BrandDigest, render_html, render_text, subject
from monitor.digest.build import Change, Mix
from monitor.digest.render import change, duration, segments, text_bar
from monitor.digest.send import build_mail
from tests.digest import fixture

CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_digest_text_shows_the_figures(digest: BrandDigest) -> None:
    text = render_text(digest)
    assert "touchpoint digest: acme, 2026-11-20 (Europe/Berlin)" in text
    assert "mentions         9 (+7)" in text
    assert "answered         78% (+28 pts)" in text
    assert "median response  30 min (+10 min)" in text
    assert "p90 response     2 h 30 min (+2 h 10 min)" in text
    assert "sales-pitch      29% (+29 pts), target at most 20%" in text
    assert "3 of 4 channels alive" in text
    assert "bluesky: silent: nothing posted or replied for 10 days" in text
    assert re.search(r"x +\[E{15}I{8}S{7}\] engaging 2 \(50%\), inspiring 1 \(25%\)", text)
    assert "1 not classified yet" in text
    assert "OLDEST UNANSWERED MENTIONS (2 in all)" in text
    assert "https://x.com/fay/status/6" in text
    assert "waiting 10 h" in text  # fay wrote at 22:00 local, the digest is of 08:00


def test_digest_text_per_channel_columns_line_up(digest: BrandDigest) -> None:
    # the fixture's x row has the widest cells: "+25 pts" sells, "+1 h 20 min" median change
    text = render_text(digest)
    table = text[text.index("PER CHANNEL") : text.index("OLDEST UNANSWERED")].splitlines()[1:]
    header, rows = table[0], [r for r in table[1:] if r.strip()]
    assert "+1 h 20 min" in text and "+25 pts" in text
    for row in rows:
        cells = row.split("  silent")[0].split("  sells above")[0]
        assert len(cells) == len(header), f"{row!r} does not line up with {header!r}"


def test_digest_text_has_no_control_characters(digest: BrandDigest) -> None:
    text = render_text(digest)
    assert not CONTROLS.search(text)
    # the hostile mention is there, as one line of plain characters, with no link
    line = next(line for line in text.splitlines() if "__pwned" in line)
    assert line.strip().startswith('<script>window.__pwned = "script"</script>')
    assert line.strip().endswith("evil Bcc: attacker@example.com")
    assert fixture.TEMPLATE_SYNTAX in line and "49" not in line
    assert "javascript:" not in text


def test_digest_html_escapes_post_text(digest: BrandDigest) -> None:
    html = render_html(digest)
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;window.__pwned = &#34;script&#34;&lt;/script&gt;" in html
    assert "{{ 7*7 }}{% raw %}{# x #}" in html
    assert "javascript:" not in html
    assert 'href="https://x.com/fay/status/6"' in html
    assert re.search(r">p90 response</td><td[^>]*>2 h 30 min</td><td[^>]*>\+2 h 10 min<", html)
    assert not CONTROLS.search(html)
    # layout is inline (some email clients drop style blocks); the one block only narrows the
    # per-channel table on phones, inside a media query
    (block,) = re.findall(r"<style>(.*?)</style>", html, flags=re.S)
    assert re.sub(r"/\*.*?\*/", "", block, flags=re.S).strip().startswith("@media (max-width")


def test_digest_email_is_multipart_and_its_headers_are_clean(digest: BrandDigest) -> None:
    mail = build_mail(
        digest, sender="digest@brand.example", recipient="team@brand.example", now=fixture.AS_OF
    )
    parsed = email.message_from_bytes(mail.as_bytes(), policy=email.policy.SMTP)
    assert parsed["Subject"] == "[touchpoint] acme digest for 2026-11-20, 2 unanswered"
    assert parsed["To"] == "team@brand.example"
    assert parsed.get_content_type() == "multipart/alternative"
    kinds = [part.get_content_type() for part in parsed.iter_parts()]  # type: ignore[attr-defined]
    assert kinds == ["text/plain", "text/html"]
    again = build_mail(
        digest, sender="digest@brand.example", recipient="team@brand.example", now=fixture.AS_OF
    )
    assert again["Message-ID"] == mail["Message-ID"]  # the same digest, the same id
    other = build_mail(
        digest, sender="digest@brand.example", recipient="ops@brand.example", now=fixture.AS_OF
    )
    assert other["Message-ID"] != mail["Message-ID"]
    assert "\n" not in subject(digest) and "\r" not in subject(digest)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "–"),
        (timedelta(seconds=45), "45 s"),
        (timedelta(minutes=32), "32 min"),
        (timedelta(hours=6, minutes=12), "6 h 12 min"),
        (timedelta(hours=5), "5 h"),
        (timedelta(days=2, hours=3), "2 d 3 h"),
    ],
    ids=["none", "seconds", "minutes", "hours", "whole-hours", "days"],
)
def test_digest_durations_read_well(value: timedelta | None, shown: str) -> None:
    assert duration(value) == shown


@pytest.mark.parametrize(
    ("item", "shown"),
    [
        (Change("mentions", 9, 2), "+7"),
        (Change("posts", 1, 3), "−2"),
        (Change("posts", 3, 3), "±0"),
        (Change("answered_share", 0.5, 0.75), "−25 pts"),
        (Change("median_response", 1800, 1200), "+10 min"),
        (Change("sales_share", 0.2, None), "new"),
        (Change("sales_share", None, None), "–"),
    ],
    ids=["up", "down", "same", "share", "time", "new", "unknown"],
)
def test_digest_changes_read_well(item: Change, shown: str) -> None:
    assert change(item) == shown


def test_digest_chart_widths_add_up() -> None:
    parts = segments(Mix(engaging=1, inspiring=1, sales_pitch=1))
    assert [p.width for p in parts] == [34, 33, 33]
    assert segments(Mix(unlabelled=3)) == []
    assert text_bar(Mix(engaging=3, sales_pitch=1), width=8) == "[EEEEEESS]"
    assert text_bar(Mix(), width=4) == "[....]"
