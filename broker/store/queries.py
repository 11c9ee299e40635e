"""Named SQL queries and migrations, kept in per-dialect .sql files (``sql/<dialect>/``).

``queries.sql`` holds blocks that each start with ``-- name: <name>``; ``migrations/NNN_*.sql``
are applied in order, once each, and recorded in ``schema_migrations``.
"""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def load_queries(dialect: str) -> dict[str, str]:
    text = (resources.files("broker.store") / "sql" / dialect / "queries.sql").read_text("utf-8")
    parts = _NAME.split(text)
    queries = {name: sql.strip() for name, sql in zip(parts[1::2], parts[2::2], strict=True)}
    if len(queries) != len(parts[1::2]):
        raise ValueError(f"duplicate query name in {dialect}/queries.sql")
    return queries


def load_migrations(dialect: str) -> list[tuple[int, str, str]]:
    folder = resources.files("broker.store") / "sql" / dialect / "migrations"
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d+)_(\w+)\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    return sorted(found)


_PARAM = re.compile(r"(?<![:\w]):([a-z_]+)\b")


def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """Turn ``:name`` parameters into ``$1, $2, …`` (asyncpg); return the names in order.

    A name used twice gets one number. ``::type`` casts are left alone."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PARAM.sub(number, sql), tuple(names)
