"""The console's first part over the real admin listener: sign-in with the operator token,
the session cookie, CSRF, the exchange matrix and its CSV checked against the store."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import Exchange, open_exchange, wait_for
from tests.e2e.nodes import signed_declarations
from tests.pki_support import Pki

TOKEN = "s3cret-operator-token"


@pytest.fixture
async def guarded(test_pki: Pki, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with open_exchange(test_pki, tmp_path, admin_token=TOKEN) as opened:
        yield opened


def _base(exchange: Exchange) -> str:
    return f"http://127.0.0.1:{exchange.server.admin_port}"


async def _signed_in(exchange: Exchange) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.post(
        f"{_base(exchange)}/console/login", data={"token": TOKEN}, allow_redirects=False
    ) as answer:
        assert answer.status == 303
        cookie = answer.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "Path=/console" in cookie
    return session


async def test_nothing_without_a_session(guarded: Exchange) -> None:
    base = _base(guarded)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/console/", allow_redirects=False) as answer:
            assert answer.status == 303
            assert answer.headers["Location"] == "/console/login"
        async with session.get(f"{base}/console/matrix.csv") as answer:
            assert answer.status == 401
        async with session.get(f"{base}/console/login") as answer:
            assert answer.status == 200
            assert "Operator token" in await answer.text()
        async with session.post(f"{base}/console/login", data={"token": "wrong"}) as answer:
            assert answer.status == 401
        # A session id this gateway never issued (another gateway's, a guess) is no session.
        session.cookie_jar.update_cookies({"broker_console": "forged"})
        async with session.get(f"{base}/console/", allow_redirects=False) as answer:
            assert answer.status == 303


async def test_matrix_and_csv_count_what_the_store_holds(guarded: Exchange) -> None:
    for data in signed_declarations(guarded.pki, 2).values():
        assert (await guarded.post("KZ-SW", data))[0] == 202
    await wait_for(lambda: len(guarded.windows["RU-SW"].inbox) == 2)
    session = await _signed_in(guarded)
    async with session:
        async with session.get(f"{_base(guarded)}/console/matrix.csv") as answer:
            assert answer.status == 200
            rows = list(csv.DictReader(io.StringIO(await answer.text())))
        stored = await guarded.server.gateway.store.matrix(
            "2000-01-01T00:00:00.000Z", "2100-01-01T00:00:00.000Z"
        )
        assert [(r["sender"], r["destination"], int(r["messages"])) for r in rows] == [
            (s.sender, s.destination, s.messages) for s in stored
        ]
        assert rows[0]["messages"] == "2"
        async with session.get(f"{_base(guarded)}/console/") as answer:
            assert answer.status == 200
            page = await answer.text()
        assert "<th scope='row'>KZ-SW</th>" in page
        assert "2 messages" in page
        assert "src=" not in page  # nothing loaded from elsewhere


async def test_csrf_is_required_and_sign_out_is_audited(guarded: Exchange) -> None:
    session = await _signed_in(guarded)
    async with session:
        base = _base(guarded)
        async with session.post(f"{base}/console/logout", data={}) as answer:
            assert answer.status == 403
        async with session.post(f"{base}/console/logout", data={"csrf": "other"}) as answer:
            assert answer.status == 403
        async with session.get(f"{base}/console/") as answer:
            assert answer.status == 200  # still signed in: nothing changed
            page = await answer.text()
        csrf = page.split("name='csrf' value='", 1)[1].split("'", 1)[0]
        async with session.post(
            f"{base}/console/logout", data={"csrf": csrf}, allow_redirects=False
        ) as answer:
            assert answer.status == 303
        async with session.get(f"{base}/console/", allow_redirects=False) as answer:
            assert answer.status == 303
    entries = await guarded.server.gateway.store.audit_entries(1, 1000)
    events = [(e.event, e.detail) for e in entries if e.event.startswith("console_")]
    assert [event for event, _ in events] == ["console_login", "console_logout"]
    assert all('"by":"console session ' in detail for _, detail in events)


async def test_without_a_token_the_loopback_console_needs_no_sign_in(exchange: Exchange) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{_base(exchange)}/console/", allow_redirects=False) as answer,
    ):
        assert answer.status == 200
        assert "Exchange matrix" in await answer.text()
