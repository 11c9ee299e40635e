"""Time as the gateway writes it: UTC with milliseconds, ``YYYY-MM-DDThh:mm:ss.sssZ`` (SPEC §3)."""

from __future__ import annotations

import datetime as dt


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def format_time(moment: dt.datetime) -> str:
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(text: str) -> dt.datetime:
    """Read a time the gateway wrote (``…Z``); ValueError otherwise."""
    if not text.endswith("Z"):
        raise ValueError(f"{text!r} is not a UTC time ending in Z")
    return dt.datetime.fromisoformat(text[:-1] + "+00:00")
