"""The digest's HTML in a real browser (headless Chromium): the chart and the unanswered mentions
are visible, and hostile post text is shown as text and never runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from monitor.digest import day_period, read_digest, write_digest
from tests.digest import fixture
from tests.digest.browser import Browser

VISIBLE = """
(selector) => [...document.querySelectorAll(selector)].map((e) => {
  const r = e.getBoundingClientRect(), s = getComputedStyle(e);
  return {w: r.width, h: r.height, left: r.left, right: r.right, top: r.top,
          shown: s.visibility === 'visible' && s.display !== 'none' && s.opacity === '1',
          color: s.backgroundColor, text: e.innerText, href: e.getAttribute('href')};
})
"""


def digest_html(db: Database, tmp_path: Path) -> Path:
    fixture.fill(db)
    settings = fixture.settings(tmp_path / "touchpoint.toml")
    digest = read_digest(
        db, settings.brands[0], day_period(fixture.DAY, fixture.TIMEZONE), as_of=fixture.AS_OF
    )
    html, _ = write_digest(digest, tmp_path / "digest.html")
    return html


@pytest.fixture
def page(db: Database, tmp_path: Path) -> Iterator[tuple[Browser, Path]]:
    html = digest_html(db, tmp_path)
    browser = Browser()
    try:
        browser.open(html)
        yield browser, tmp_path
    finally:
        browser.screenshot(tmp_path / "digest.png")
        browser.close()


def boxes(browser: Browser, selector: str) -> list[dict[str, Any]]:
    found = browser.evaluate(f"({VISIBLE})({json.dumps(selector)})")
    assert isinstance(found, list)
    return found


def on_page(box: dict[str, Any], width: float) -> bool:
    return bool(box["shown"] and box["w"] > 0 and box["h"] > 0 and 0 <= box["left"] <= width)


def test_digest_browser_shows_the_chart(page: tuple[Browser, Path]) -> None:
    browser, _ = page
    width = browser.evaluate("document.documentElement.clientWidth")
    bars = boxes(browser, "#mix-chart td.bar")
    # x: engaging, inspiring, sales-pitch; mastodon: engaging, sales-pitch; reddit: inspiring;
    # all channels: the three
    assert len(bars) == 9
    assert all(on_page(b, width) for b in bars), bars
    x_engaging, x_inspiring, x_sales = boxes(browser, '#mix-chart td[title^="x: "]')
    assert x_engaging["color"] == "rgb(37, 99, 235)"  # blue
    assert x_sales["color"] == "rgb(220, 38, 38)"  # red
    # 2 of 4 engaging, 1 inspiring, 1 sales-pitch: the bar is cut in half, then quarters
    row = x_engaging["w"] + x_inspiring["w"] + x_sales["w"]
    assert x_engaging["w"] / row == pytest.approx(0.5, abs=0.02)
    assert x_sales["w"] / row == pytest.approx(0.25, abs=0.02)
    assert x_engaging["text"].strip() == "50%"


def test_digest_browser_shows_the_unanswered_mentions(page: tuple[Browser, Path]) -> None:
    browser, _ = page
    width = browser.evaluate("document.documentElement.clientWidth")
    mentions = boxes(browser, "#unanswered td.mention")
    assert len(mentions) == 2
    assert all(on_page(m, width) for m in mentions), mentions
    assert "dan" in mentions[0]["text"] and "fay" in mentions[1]["text"]
    assert "Still waiting for my refund" in mentions[1]["text"]
    links = boxes(browser, "#unanswered a")
    assert [a["href"] for a in links] == ["https://x.com/fay/status/6"]  # m4's is javascript:
    assert on_page(links[0], width)


def test_digest_browser_hostile_text_is_shown_and_never_runs(page: tuple[Browser, Path]) -> None:
    browser, _ = page
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    assert browser.evaluate("document.querySelectorAll('script, img, iframe, object').length") == 0
    assert browser.evaluate("document.querySelectorAll('[onerror], [onload]').length") == 0
    hrefs = browser.evaluate("[...document.querySelectorAll('a')].map((a) => a.href)")
    assert hrefs and all(h.startswith(("https://", "http://")) for h in hrefs), hrefs
    shown = boxes(browser, "#unanswered td.mention")[0]["text"]
    # the tags are text on the page; the escape sequence and the bidi override are gone
    assert '<script>window.__pwned = "script"</script>' in shown
    assert "<img src=x onerror=\"window.__pwned='img'\">" in shown
    assert "evil Bcc: attacker@example.com" in shown
    assert fixture.TEMPLATE_SYNTAX in shown  # not evaluated (49) or swallowed
    assert "\x1b" not in shown and "\u202e" not in shown
    methods = browser.methods()
    assert "Page.javascriptDialogOpening" not in methods
    assert "Runtime.exceptionThrown" not in methods
    assert "Runtime.consoleAPICalled" not in methods


@pytest.mark.parametrize("phone", [360, 320])  # the narrowest common phone; the narrowest at all
def test_digest_browser_fits_a_phone_screen(db: Database, tmp_path: Path, phone: int) -> None:
    html = digest_html(db, tmp_path)
    browser = Browser()
    try:
        browser.emulate_phone(phone, 780)  # CSS pixels
        browser.open(html)
        width, scrolled = browser.evaluate(
            "[document.documentElement.clientWidth, document.documentElement.scrollWidth]"
        )
        assert width == phone
        assert scrolled <= width  # nothing to scroll sideways: the seven-column table fits
        tables = boxes(browser, "table[id]")
        assert len(tables) == 5 and all(t["right"] <= width for t in tables), tables
        assert all(on_page(b, width) for b in boxes(browser, "#mix-chart td.bar"))
        assert all(on_page(m, width) for m in boxes(browser, "#unanswered td.mention"))
    finally:
        browser.screenshot(tmp_path / f"phone-{phone}.png")
        browser.close()
