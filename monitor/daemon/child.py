"""Classification in a short-lived child process (``touchpoint classify``).

scikit-learn and the model need about 290 MB for a few seconds of work per pass: in a child, the
daemon stays small at rest. The child watches a pipe from the daemon and exits when its write
end closes, so it never outlives a daemon killed with SIGKILL.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from monitor import pipeline
from monitor.logs import clean

logger = logging.getLogger(__name__)


def classify_in_child(config: Path, db_path: Path, stop: pipeline.StopCheck) -> str | None:
    """Run ``touchpoint classify`` in a child process, terminating it if ``stop`` gives a
    reason; None if it labelled everything, else why not (its last line, for the store)."""
    command = [
        sys.executable,
        "-m",
        "monitor",
        "--config",
        str(config),
        "--db",
        str(db_path),
        "classify",
    ]
    started = time.monotonic()
    # the child exits when this pipe's write end closes: when the daemon dies (SIGKILL too)
    watched, held = os.pipe()
    try:
        try:
            child = subprocess.Popen(
                [*command, "--parent-fd", str(watched)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                pass_fds=(watched,),
            )
        finally:
            os.close(watched)  # the child has its own copy
        output = _wait_child(child, stop)
    finally:
        os.close(held)
    last = output.strip().splitlines()[-1] if output.strip() else ""
    if child.returncode == 0:  # the child recorded its success (pipeline.classify_pending)
        logger.info("classify: %s (%.1fs)", last, time.monotonic() - started)
        return None
    logger.error("classify failed (exit %s): %s", child.returncode, last or "no output")
    return clean(last.removeprefix("Error: ") or f"exit status {child.returncode}")


def _wait_child(child: subprocess.Popen[str], stop: pipeline.StopCheck) -> str:
    """Wait for a child, terminating it if ``stop`` gives a reason; return its output."""
    chunks: list[str] = []
    while True:
        try:
            out, _ = child.communicate(timeout=0.5)
            chunks.append(out or "")
            return "".join(chunks)
        except subprocess.TimeoutExpired:
            reason = stop()
            if reason is None:
                continue
            logger.warning("classify stopped: %s", reason)
            child.terminate()
            try:
                out, _ = child.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                out, _ = child.communicate()
            chunks.append(out or "")
            return "".join(chunks)
