"""Headless Chromium driven over the DevTools protocol on a pipe (no websocket library needed).

Chromium reads commands from its fd 3 and writes replies and events to its fd 4, one JSON object
each, NUL-terminated (``--remote-debugging-pipe``). Only Debian's ``chromium`` is used; a missing
browser fails the test with the command that installs it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
)
TIMEOUT = 30.0


def chromium_path() -> str:
    """The Chromium binary; fail (not skip) with the fix when it is missing."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "chromium is not installed: the digest's HTML is checked in a real browser. "
            "Fix: apt-get install chromium (Debian's package; .ci/run installs it)"
        )
    return path


class Browser:
    """One headless Chromium with one page, for one test."""

    def __init__(self, width: int = 900, height: int = 1400) -> None:
        self.profile = tempfile.TemporaryDirectory(prefix="touchpoint-chromium-")
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()

        def wire() -> None:  # in the child: the pipes become fds 3 and 4
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)

        self.process = subprocess.Popen(
            [
                chromium_path(),
                *FLAGS,
                f"--user-data-dir={self.profile.name}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            preexec_fn=wire,
            close_fds=False,
            # Chromium is not touchpoint and a page's layout does not depend on the date: it runs
            # on the machine's clock (under `make test-shifted`, with libfaketime preloaded, an
            # earlier build of it made Chromium spin its threads at load 50 on 2 cores)
            env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        try:
            self.session = self._attach()
        except BaseException:
            self.process.kill()
            self.process.wait(10)
            raise

    def _send(self, method: str, params: dict[str, Any] | None = None, *, page: bool = True) -> Any:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if page:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._read], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._read, 65536)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(raw))

    def _attach(self) -> str:
        targets = self._send("Target.getTargets", page=False)["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        reply = self._send(
            "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}, page=False
        )
        return str(reply["sessionId"])

    def open(self, path: Path) -> None:
        """Load a file and wait for its load event."""
        self._send("Page.enable")
        self._send("Runtime.enable")
        self.events.clear()
        self._send("Page.navigate", {"url": path.resolve().as_uri()})
        deadline = time.monotonic() + TIMEOUT
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError("the page did not load")
            self.events.append(self._receive())

    def emulate_phone(self, width: int, height: int) -> None:
        """Lay pages out as a phone's screen of ``width`` x ``height`` CSS pixels (headless
        Chromium's window cannot be narrower than 500)."""
        metrics = {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": True}
        self._send("Emulation.setDeviceMetricsOverride", metrics)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        reply = self._send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def screenshot(self, path: Path) -> None:
        """Save the whole page as a PNG (to look at when a test fails)."""
        data = self._send("Page.captureScreenshot", {"captureBeyondViewport": True})["data"]
        path.write_bytes(base64.b64decode(data))

    def methods(self) -> list[str]:
        """The events seen since the page was opened."""
        return [str(e.get("method")) for e in self.events]

    def close(self) -> None:
        """Close the browser and remove its profile."""
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):  # it may close first
            self._send("Browser.close", page=False)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        os.close(self._write)
        os.close(self._read)
        self.profile.cleanup()
