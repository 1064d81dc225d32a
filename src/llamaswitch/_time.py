"""Times as llamaswitch writes them: ISO 8601 UTC with milliseconds and a ``Z``.

>>> from datetime import UTC, datetime
>>> format_time(datetime(2026, 1, 31, 12, 0, tzinfo=UTC))
'2026-01-31T12:00:00.000Z'
>>> parse_time("2026-01-31T12:00:00.000Z").tzinfo
datetime.timezone.utc
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["format_time", "now", "parse_time"]


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """``2026-01-31T12:00:00.123Z``: fixed width, so text order is time order (SQL too).

    A naive datetime is taken as local time.
    """
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """The inverse of :func:`format_time` (any ISO 8601 with a zone; naive means UTC)."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
