"""Durable storage: :class:`Store` (the ledger, one implementation over a connector per
dialect), and :func:`open_store`, the way in from a URL."""

from __future__ import annotations

from broker.audit import Auditor
from broker.errors import ConfigError
from broker.store.base import redact
from broker.store.ledger import Ledger

Store = Ledger
"""What intake, delivery, the APIs and the operator commands use."""


def open_store(
    url: str, auditor: Auditor | None = None, *, create: bool = False, folders: bool = False
) -> Store:
    """The store for a URL: ``sqlite:///relative/path``, ``sqlite:////absolute/path``,
    ``sqlite:///:memory:`` (tests), or a libpq URL ``postgresql://user@host:port/db``.

    ``create``: a SQLite file that does not exist yet may be created (``broker serve``); every
    read-only and operator command refuses one instead, so that a typo in a path is an error
    rather than an empty store. ``folders``: its missing folders may be created too
    (``serve --create-store``)."""
    if url.startswith("sqlite:///"):
        from broker.store.sqlite import SqliteConnector

        path = url.removeprefix("sqlite:///")
        return Ledger(SqliteConnector(path, create=create, folders=folders), auditor)
    if url.startswith(("postgresql://", "postgres://")):
        from broker.store.postgres import PostgresConnector

        return Ledger(PostgresConnector(url), auditor)
    raise ConfigError(f"unknown store URL {redact(url)!r} (sqlite:///path or postgresql://…)")
