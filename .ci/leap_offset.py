"""Print the seconds from now to 23:57 UTC on the first 29 February at least 400 days away.

`make test-shifted` hands them to libfaketime (``FAKETIME=+N``), so the suite runs more than a
year on, on a leap day, and crosses midnight into 1 March while it runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

AT_LEAST = timedelta(days=400)


def leap_evening(after: datetime) -> datetime:
    """23:57 UTC on the first 29 February at least ``AT_LEAST`` after ``after``."""
    year = (after + AT_LEAST).year
    while True:
        try:
            when = datetime(year, 2, 29, 23, 57, tzinfo=UTC)
        except ValueError:  # not a leap year
            when = None
        if when is not None and when - after >= AT_LEAST:
            return when
        year += 1


if __name__ == "__main__":
    now = datetime.now(UTC)
    print(int((leap_evening(now) - now).total_seconds()))
