"""Time as the gateway writes it: UTC with milliseconds, ``YYYY-MM-DDThh:mm:ss.sssZ`` (SPEC §3)."""

from __future__ import annotations

import datetime as dt
import re


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


_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def parse_rfc3339(text: str) -> dt.datetime:
    """An RFC 3339 date-time with any offset (``z`` or ``Z``, any fraction digits), as an
    aware datetime; ValueError otherwise. For query parameters that clients write."""
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not an RFC 3339 date-time (e.g. 2026-12-01T10:00:00Z)")
    day, clock_time, fraction, offset = match.groups()
    micro = (fraction or ".0")[1:7].ljust(6, "0")
    zone = "+00:00" if offset in ("Z", "z") else offset
    moment = dt.datetime.fromisoformat(f"{day}T{clock_time}.{micro}{zone}")
    return moment.astimezone(dt.UTC)
