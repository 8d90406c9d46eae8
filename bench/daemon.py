"""The daemon at rest: resident memory, and requests per stream per idle poll.

Starts the four sandboxes on 127.0.0.1 (a day of traffic), writes a config with one brand on all
four platforms (posts, mentions and one keyword: three streams each), and starts ``touchpoint run``
as a child process. After the first collection and classification it lets the daemon settle, then
counts, over a window of idle polls (nothing new), the requests each stream made per run it
recorded, and reads the daemon's resident memory (VmRSS) at rest. The classify child's memory,
sampled while it runs, is printed apart: it exits after each pass.

Usage: python bench/daemon.py [--interval 3] [--idle-polls 5]
Targets: memory at rest 150 MB or less; exactly 1.0 request per stream per idle poll.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from monitor import clock
from monitor.sandbox import fleet
from monitor.sandbox.traffic import TrafficSandbox

# a part of the request path that tells each stream apart, most specific first (the sandboxes
# record every request they answer)
STREAM_PATHS = {
    "x": {"keywords": "/search/recent", "mentions": "/mentions", "posts": "/tweets"},
    "reddit": {"keywords": "/search", "mentions": "/message/inbox", "posts": "/overview"},
    "mastodon": {"keywords": "/search", "mentions": "/notifications", "posts": "/statuses"},
    "bluesky": {"keywords": "search", "mentions": "listNotifications", "posts": "getAuthorFeed"},
}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(c) for c in text)
    return found


def rows(db_path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Read the daemon's store beside it ([] until it has created its tables)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return list(conn.execute(sql, params))
    except sqlite3.OperationalError:  # the daemon has not created its tables yet
        return []
    finally:
        conn.close()


def runs_ok(db_path: Path) -> Counter[tuple[str, str]]:
    found = rows(
        db_path, "SELECT platform, stream, count(*) FROM runs WHERE outcome = 'ok' GROUP BY 1, 2"
    )
    return Counter({(str(p), str(s)): int(str(n)) for p, s, n in found})


def new_items(db_path: Path, since_run_id: int) -> int:
    found = rows(db_path, "SELECT coalesce(sum(items_new), 0) FROM runs WHERE id > ?", since_run_id)
    return int(str(found[0][0]))


def last_run_id(db_path: Path) -> int:
    return int(str(rows(db_path, "SELECT coalesce(max(id), 0) FROM runs")[0][0]))


def requests_by_stream(servers: dict[str, TrafficSandbox]) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for platform, server in servers.items():
        for request in server.requests:
            for stream, marker in STREAM_PATHS[platform].items():
                if marker in request.path:
                    counts[(platform, stream)] += 1
                    break
            else:
                counts[(platform, f"other {request.path}")] += 1
    return counts


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=int, default=3, help="seconds between polls")
    parser.add_argument("--idle-polls", type=int, default=5, help="idle polls per stream")
    args = parser.parse_args()
    os.environ.update(fleet.environment())
    end = clock.now().replace(microsecond=0)
    with (
        tempfile.TemporaryDirectory() as tmp,
        fleet.running(seed=5, start=end - timedelta(days=1), end=end) as servers,
    ):
        config = Path(tmp) / "touchpoint.toml"
        text = fleet.config_text({p: s.url for p, s in servers.items()})
        daemon_section = (
            f"[collect]\ninterval_seconds = {args.interval}\n\n"
            "[daemon]\nmax_jitter_seconds = 0\nalerts_interval_seconds = 60\n\n"
        )
        config.write_text(text.replace("[platforms.", daemon_section + "[platforms.", 1))
        db_path = Path(tmp) / "touchpoint.db"
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            child_peak = settle(proc.pid, db_path, args.interval)
            before_runs, before_requests = runs_ok(db_path), requests_by_stream(servers)
            first_idle_run = last_run_id(db_path)
            time.sleep(args.interval * args.idle_polls + args.interval / 2)
            rss = rss_mb(proc.pid)
            runs = runs_ok(db_path) - before_runs
            requests = requests_by_stream(servers) - before_requests
            fresh = new_items(db_path, first_idle_run)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    report(rss, child_peak, runs, requests, fresh)
    return 0


def settle(pid: int, db_path: Path, interval: int) -> float:
    """Wait for the first collection of all 12 streams and its classification; return the
    classify child's peak resident memory seen meanwhile."""
    peak = 0.0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for child in children(pid):
            with contextlib.suppress(FileNotFoundError):  # it may exit meanwhile
                peak = max(peak, rss_mb(child))
        if db_path.exists() and len(runs_ok(db_path)) == 12 and peak and not children(pid):
            time.sleep(interval)  # one more poll: the daemon is at rest from here on
            return peak
        time.sleep(0.05)
    raise SystemExit("the daemon did not settle within 120 s")


def report(
    rss: float,
    child_peak: float,
    runs: Counter[tuple[str, str]],
    requests: Counter[tuple[str, str]],
    fresh: int,
) -> None:
    print(f"daemon resident memory at rest: {rss:.1f} MB (target 150 MB or less)")
    print(f"classify child, peak resident memory sampled: {child_peak:.1f} MB (exits after)")
    print(f"new items during the idle window: {fresh}")
    print(f"{'stream':<22}{'idle polls':>11}{'requests':>10}{'per poll':>10}")
    per_poll = []
    for key in sorted(set(runs) | set(requests)):
        n_runs, n_requests = runs.get(key, 0), requests.get(key, 0)
        ratio = n_requests / n_runs if n_runs else float("inf")
        per_poll.append(ratio)
        print(f"{'/'.join(key):<22}{n_runs:>11}{n_requests:>10}{ratio:>10.2f}")
    print(f"requests per stream per idle poll: min {min(per_poll):.2f}, max {max(per_poll):.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
