"""The message renderers: hostile post text is neutralised in text, HTML, Slack, JSON, subject."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.notify.message import (
    AlertItem,
    Message,
    email_subject,
    make_test_message,
    render_html,
    render_slack,
    render_text,
    render_webhook,
    slack_escape,
    slack_unescape,
)
from monitor.notify.text import TRUNCATED, clean_block, clean_line, safe_url

HOSTILE = (
    '<script>alert(1)</script> "><img src=x onerror=alert(1)> <!channel> <!here> <!everyone> '
    "<@U123ABC> <!subteam^S1> <https://evil.example|Reply from @brand> &lt;!channel&gt; "
    "*bold* ```fence``` {{ 7*7 }} {% raw %}\r\nBcc: attacker@example.com\n"
    "\x1b[31mred\x1b[0m \x1b]0;title\x07 NUL\x00 \u202egnp.exe\u202c \u2028sep\u0085nel \x7f\x9b2J"
)
HOSTILE_TITLE = "Hello\r\nBcc: attacker@example.com\u2028X-Evil: 1\u0085 <!channel>"
# characters that must never reach an output (line breaks allowed only where a renderer adds them)
FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
SLACK_LINK = re.compile(r"<https?://[^\s<>|]+\|open>")


def item(text: str = HOSTILE, url: str = "javascript:alert(1)", **kw: str) -> AlertItem:
    """An item with hostile text and (by default) a hostile URL."""
    fields = {"author": "<@U999>\r\nevil", "platform": "x", "created_at": "2026-01-01T00:00:00Z"}
    fields.update(kw)
    return AlertItem(text=text, url=url, **fields)


def message(*items: AlertItem, title: str = HOSTILE_TITLE) -> Message:
    """A message with the given items."""
    return Message(
        key="fp123:1",
        brand="acme",
        kind="unanswered_mention",
        severity="warning",
        title=title,
        summary="3 mentions <!here> unanswered\x1b[5m",
        items=items,
        created_at="2026-01-01T00:00:00Z",
    )


def slack_texts(node: Any) -> list[str]:
    """Every ``text`` string anywhere in a Slack payload."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                found.append(value)
            else:
                found += slack_texts(value)
    elif isinstance(node, list):
        for value in node:
            found += slack_texts(value)
    return found


def test_clean_line_removes_controls_ansi_and_bidi() -> None:
    out = clean_line(HOSTILE, 10_000)
    assert not FORBIDDEN.search(out)
    assert "\n" not in out and "\r" not in out
    assert "red" in out and "[31m" not in out and "title" not in out
    assert "Bcc: attacker@example.com" in out  # the text stays, but on the same line


def test_clean_block_keeps_line_breaks_only() -> None:
    out = clean_block("a\r\nb\u2028c\x00d\x1b[1me", 100)
    assert out == "a\nb\ncd" + "e"


def test_huge_text_is_truncated_with_a_marker() -> None:
    out = clean_line("x" * 1_000_000, 280)
    assert len(out) == 280 and out.endswith(TRUNCATED)
    assert clean_line("short", 280) == "short"


def test_lone_surrogates_become_replacement_characters() -> None:
    out = clean_line("a\ud800b", 50)
    assert out == "a\ufffdb"
    out.encode("utf-8")


def test_safe_url_only_http_and_https() -> None:
    assert safe_url("https://example.com/p/1?a=1&b=2") == "https://example.com/p/1?a=1&b=2"
    assert safe_url("HTTP://example.com/") == "HTTP://example.com/"
    for bad in (
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>",
        "https://exa mple.com/",
        "https://example.com/\r\nx",
        "//example.com/",
        "https:///nohost",
        "",
        "https://example.com/" + "a" * 3000,
    ):
        assert safe_url(bad) is None, bad


def test_plain_text_lists_items_then_and_k_more() -> None:
    msg = message(*[item(f"post {i}", url=f"https://x.com/p/{i}") for i in range(25)])
    out = render_text(msg, max_items=20)
    assert "20. " in out and "21. " not in out
    assert out.rstrip().endswith("and 5 more")
    assert "https://x.com/p/0" in out


def test_plain_text_neutralises_hostile_text() -> None:
    out = render_text(message(item()))
    assert not FORBIDDEN.search(out)
    assert "javascript:" not in out
    assert "\x1b" not in out and "\x00" not in out
    first_line = out.split("\n", 1)[0]
    assert first_line.startswith("[WARNING] acme: Hello Bcc: attacker@example.com X-Evil: 1")


class _Tags(HTMLParser):
    """Collects the tags and attributes of an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def test_html_escapes_everything_and_links_only_http() -> None:
    msg = message(item(), item("fine", url='https://x.com/p/1?a=1&b="2"'))
    out = render_html(msg)
    parser = _Tags()
    parser.feed(out)
    allowed = {"html", "head", "meta", "body", "div", "h2", "p", "a", "br"}
    assert {tag for tag, _ in parser.tags} <= allowed
    for tag, attrs in parser.tags:
        for name, value in attrs:
            assert name in {"style", "href", "charset"}, (tag, name)
            if name == "href":
                assert value is not None and value.startswith("https://x.com/p/1")
    hrefs = [v for _, attrs in parser.tags for n, v in attrs if n == "href"]
    assert hrefs == ['https://x.com/p/1?a=1&b="2"']
    assert "<script" not in out and "<img" not in out and "javascript:" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "&amp;lt;!channel&amp;gt;" in out
    assert "{{ 7*7 }}" in out  # template syntax is text, never evaluated
    assert not FORBIDDEN.search(out)


def test_slack_escape_examples() -> None:
    assert slack_escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    assert slack_unescape("&amp;lt;") == "&lt;"
    assert slack_escape("&lt;!channel&gt;") == "&amp;lt;!channel&amp;gt;"


@given(st.text())
def test_slack_escape_has_no_angle_brackets_and_round_trips(text: str) -> None:
    escaped = slack_escape(text)
    assert "<" not in escaped and ">" not in escaped
    assert slack_unescape(escaped) == text


def text_objects(node: Any) -> list[dict[str, Any]]:
    """Every Block Kit text object (a dict with a ``text`` string) in a payload."""
    if isinstance(node, list):
        return [t for child in node for t in text_objects(child)]
    if not isinstance(node, dict):
        return []
    own = [node] if isinstance(node.get("text"), str) and "type" in node else []
    return own + [t for value in node.values() for t in text_objects(value)]


def test_slack_payload_neutralises_every_text_field() -> None:
    payload = render_slack(message(item(), item("ok", url="https://x.com/p/1?a=1&b=2")))
    assert "link_names" not in payload and "parse" not in payload
    assert payload["unfurl_links"] is False
    mrkdwn = [t for t in text_objects(payload) if t.get("type") == "mrkdwn"]
    assert len(mrkdwn) >= 3 and all(t["verbatim"] is True for t in mrkdwn)  # no auto-parsing
    texts = slack_texts(payload)
    assert payload["text"] in texts and len(texts) > 4
    for text in texts:
        assert "<" not in SLACK_LINK.sub("", text) and ">" not in SLACK_LINK.sub("", text)
        assert not FORBIDDEN.search(text)
    joined = "\n".join(texts)
    assert "&lt;!channel&gt;" in joined and "&lt;@U123ABC&gt;" in joined
    assert "&amp;lt;!channel&amp;gt;" in joined
    assert SLACK_LINK.findall(joined) == ["<https://x.com/p/1?a=1&amp;b=2|open>"]
    assert "javascript" not in json.dumps(payload)


def test_slack_payload_respects_block_limits() -> None:
    msg = message(*[item("<&>" * 2000, url="https://x.com/" + "&" * 1500) for _ in range(60)])
    payload = render_slack(msg, max_items=100, max_text=5000)
    assert len(payload["blocks"]) <= 50
    header = payload["blocks"][0]["text"]["text"]
    assert len(header) <= 150
    for block in payload["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
    assert payload["blocks"][-1]["elements"][0]["text"] == "and 20 more"


@settings(max_examples=200)
@given(st.text(), st.text(max_size=300))
def test_slack_payload_never_forms_markup(text: str, title: str) -> None:
    payload = render_slack(message(item(text, url=text, author=text), title=title))
    for field in slack_texts(payload):
        assert "<" not in SLACK_LINK.sub("", field) and ">" not in SLACK_LINK.sub("", field)


def test_webhook_payload_is_structured_and_clean() -> None:
    msg = message(item(), item("ok", url="https://x.com/p/1"))
    payload = render_webhook(msg)
    decoded = json.loads(json.dumps(payload))
    assert decoded["key"] == "fp123:1" and decoded["items_total"] == 2
    first, second = decoded["items"]
    assert first["url"] is None and second["url"] == "https://x.com/p/1"
    assert "<script>alert(1)</script>" in first["text"]  # JSON string: data, not markup
    for value in (first["text"], first["author"], decoded["title"], decoded["summary"]):
        assert not FORBIDDEN.search(value)
    assert "\r" not in first["text"]


def test_email_subject_is_one_safe_line() -> None:
    subject = email_subject(message(title=HOSTILE_TITLE + "x" * 500))
    assert len(subject) <= 160 and subject.endswith(TRUNCATED)
    assert not FORBIDDEN.search(subject) and "\n" not in subject and "\r" not in subject
    assert subject.startswith("[touchpoint] [WARNING] acme: Hello Bcc: attacker@example.com")


def test_email_subject_names_the_brand_once() -> None:
    """The outbox's titles start with the brand (Slack's header shows the title alone)."""
    assert email_subject(message(title="acme: 68 mentions waiting for an answer")) == (
        "[touchpoint] [WARNING] acme: 68 mentions waiting for an answer"
    )
    text = render_text(message(title="acme: 1 stream not collecting"))
    assert text.startswith("[WARNING] acme: 1 stream not collecting\n")
    # a title that names another brand first keeps this one's name in front
    assert email_subject(message(title="acmeco: x")) == "[touchpoint] [WARNING] acme: acmeco: x"


@given(st.text())
def test_email_subject_never_has_a_control_character(title: str) -> None:
    subject = email_subject(message(title=title))
    assert not FORBIDDEN.search(subject) and "\n" not in subject and len(subject) <= 160


def test_make_test_message() -> None:
    msg = make_test_message("ops\r\nslack", now="2026-01-01T00:00:00Z")
    assert msg.kind == "test" and msg.severity == "info"
    assert msg.key == "test:ops slack:2026-01-01T00:00:00Z"
    assert "ops" in render_text(msg)
