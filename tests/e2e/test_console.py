"""The console over the real admin listener: sign-in, sessions, CSRF, every page against what
the store holds, escaping, downloads and the audit of console actions. The browser tests
(test_console_browser.py) drive the same pages in Chromium."""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from lxml import etree

from broker.console import auth
from broker.receipts import verify_receipt
from broker.store.base import StoreUnavailable
from broker.store.postgres import drop_schema
from tests.e2e.conftest import Exchange, open_exchange, wait_for
from tests.e2e.console_support import (
    SCRIPT,
    TOKEN,
    admin_base,
    csrf_of,
    own_assets_only,
    signed_in,
    traffic,
)
from tests.e2e.nodes import signed_declarations
from tests.pki_support import Pki
from tests.store.conftest import new_schema, pg_dsn_or_skip

PAGES = (
    "/console/",
    "/console/messages",
    "/console/routing",
    "/console/certificates",
    "/console/audit",
    "/console/health",
    "/console/assets/console.css",
    "/console/assets/console.js",
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def guarded(
    request: pytest.FixtureRequest, test_pki: Pki, tmp_path: Path
) -> AsyncIterator[Exchange]:
    """A gateway with an operator token, on each store the console reads."""
    if request.param == "sqlite":
        async with open_exchange(test_pki, tmp_path, admin_token=TOKEN) as opened:
            yield opened
        return
    base = pg_dsn_or_skip()
    schema, dsn = await new_schema(base)
    try:
        async with open_exchange(test_pki, tmp_path, admin_token=TOKEN, store=dsn) as opened:
            yield opened
    finally:
        await drop_schema(base, schema)


async def test_nothing_without_a_session(guarded: Exchange) -> None:
    base = admin_base(guarded)
    async with aiohttp.ClientSession() as session:
        # No page and no asset: the stylesheet and the script wait for a session too.
        for path in (*PAGES, "/console/messages/urn:uuid:x", "/console/receipts/x"):
            async with session.get(f"{base}{path}", allow_redirects=False) as answer:
                assert answer.status == 303, path
                assert answer.headers["Location"] == "/console/login"
        for path in ("/console/matrix.csv", "/console/matrix.svg", "/console/audit/progress.json"):
            async with session.get(f"{base}{path}") as answer:
                assert answer.status == 401, path
        async with session.get(f"{base}/console/login") as answer:
            assert answer.status == 200
            login = await answer.text()
            assert answer.headers["Content-Security-Policy"] == "default-src 'self'"
        assert "Operator token" in login
        assert "/console/assets/" not in login  # it could not load them
        async with session.get(f"{base}/favicon.ico") as answer:
            assert answer.status == 200  # what browsers ask every origin for
        async with session.post(f"{base}/console/login", data={"token": "wrong"}) as answer:
            assert answer.status == 401
        # A session id this gateway never issued (another gateway's, a guess) is no session.
        session.cookie_jar.update_cookies({"broker_console": "forged"})
        async with session.get(f"{base}/console/", allow_redirects=False) as answer:
            assert answer.status == 303


async def test_a_session_of_another_gateway_is_refused(guarded: Exchange, test_pki: Pki,
                                                       tmp_path: Path) -> None:  # fmt: skip
    other_folder = tmp_path / "other"
    other_folder.mkdir()
    async with open_exchange(test_pki, other_folder, admin_token="another-token") as other:
        session = await signed_in(other, "another-token")
        async with session:
            cookie = next(iter(session.cookie_jar))
            async with aiohttp.ClientSession() as stranger:
                stranger.cookie_jar.update_cookies({cookie.key: cookie.value})
                url = f"{admin_base(guarded)}/console/"
                async with stranger.get(url, allow_redirects=False) as answer:
                    assert answer.status == 303


async def test_login_cookie_and_security_headers(guarded: Exchange) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        url = f"{admin_base(guarded)}/console/login"
        async with session.post(url, data={"token": TOKEN}, allow_redirects=False) as answer:
            assert answer.status == 303
            cookie = answer.headers["Set-Cookie"]
        for flag in ("HttpOnly", "SameSite=Strict", "Path=/console"):
            assert flag in cookie
        assert "Secure" not in cookie  # plain HTTP on loopback; Secure over TLS
        for path in PAGES:
            async with session.get(admin_base(guarded) + path) as answer:
                assert answer.status == 200, path
                assert answer.headers["Content-Security-Policy"] == "default-src 'self'"
                if answer.content_type == "text/html":
                    own_assets_only(await answer.text())


async def test_matrix_csv_svg_and_filters_count_what_the_store_holds(guarded: Exchange) -> None:
    mix = await traffic(guarded)
    session = await signed_in(guarded)
    base = admin_base(guarded)
    async with session:
        async with session.get(f"{base}/console/matrix.csv") as answer:
            assert answer.status == 200
            rows = list(csv.DictReader(io.StringIO(await answer.text())))
        stored = await guarded.server.gateway.store.matrix(
            "2000-01-01T00:00:00.000Z", "2100-01-01T00:00:00.000Z"
        )
        assert [(r["sender"], r["destination"], int(r["messages"])) for r in rows] == [
            (s.sender, s.destination, s.messages) for s in stored
        ]
        assert (rows[0]["messages"], rows[0]["delivered"], rows[0]["failed"]) == ("4", "3", "1")
        assert rows[0]["process"] == "P.CC.01"
        async with session.get(f"{base}/console/") as answer:
            page = await answer.text()
        assert "<th scope='row'>KZ-SW</th>" in page
        assert "data-messages='4'" in page
        assert "75% delivered · 1 failed · 0 pending" in page
        assert "accepted 4" in page
        assert "rejected 1" in page
        # The cell's link opens the message list filtered to it.
        link = page.split("data-destination='RU-SW'", 1)[1].split("href='", 1)[1].split("'")[0]
        assert "sender=KZ-SW" in link
        assert "destination=RU-SW" in link
        async with session.get(base + html.unescape(link)) as answer:
            listed = await answer.text()
        assert all(m in listed for m in [*mix.delivered, mix.failed])
        async with session.get(f"{base}/console/?state=failed") as answer:
            assert "data-messages='1'" in await answer.text()
        async with session.get(f"{base}/console/?document=R.999") as answer:
            assert "No message was accepted" in await answer.text()
        async with session.get(f"{base}/console/?since=yesterday") as answer:
            assert answer.status == 400
        async with session.get(f"{base}/console/matrix.svg?window=7d") as answer:
            assert answer.status == 200
            svg = etree.fromstring(await answer.read())
        texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
        assert "4 msg, 75% delivered" in texts


async def test_message_search_detail_receipts_and_retry(guarded: Exchange) -> None:
    mix = await traffic(guarded)
    store = guarded.server.gateway.store
    session = await signed_in(guarded)
    base = admin_base(guarded)
    async with session:
        async with session.get(f"{base}/console/messages?state=failed") as answer:
            page = await answer.text()
        assert mix.failed in page
        assert not any(m in page for m in mix.delivered)
        assert "RU-SW: DESTINATION_REJECTED" in page  # the last error
        async with session.get(f"{base}/console/messages?code=DESTINATION_REJECTED") as answer:
            assert mix.failed in await answer.text()
        async with session.get(f"{base}/console/messages?state=rejected") as answer:
            page = await answer.text()
        assert "ENVELOPE_INVALID" in page
        assert mix.failed not in page
        view = await store.message(mix.delivered[0], None)
        assert view is not None
        async with session.get(f"{base}/console/messages?track_id={view.track_id}") as answer:
            page = await answer.text()
        assert mix.delivered[0] in page
        assert mix.delivered[1] not in page

        async with session.get(f"{base}/console/messages/{mix.delivered[0]}") as answer:
            page = await answer.text()
        assert view.track_id in page
        for event in ("received", "routed", "accepted", "delivery_attempt", "delivered"):
            assert f"class='event {event}'" in page
        assert page.count("<span class='good'>verified</span>") == len(view.receipts) == 2
        assert "NOT verified" not in page
        assert "goods-declaration-to-addressee" in page
        assert view.route in page
        assert "<strong>matches</strong>" in page  # explain
        receipt = view.receipts[0]
        async with session.get(f"{base}/console/receipts/{receipt.id}") as answer:
            assert answer.headers["Content-Disposition"].startswith("attachment")
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
            body = await answer.read()
        assert body == (await store.receipt(receipt.id) or (None, b""))[1]
        verify_receipt(body, guarded.server.gateway.identity.ca)
        record = await store.record(view.track_id)
        assert record is not None
        for which, expected in (("original", record.raw), ("forwarded", record.forwarded)):
            async with session.get(f"{base}/console/envelopes/{view.track_id}/{which}") as answer:
                assert answer.headers["Content-Disposition"].startswith("attachment")
                assert await answer.read() == expected

        async with session.get(f"{base}/console/messages/{mix.failed}") as answer:
            page = await answer.text()
        assert "Retry RU-SW" in page
        retry = f"{base}/console/messages/{mix.failed}/retry"
        async with session.post(retry, data={"destination": "RU-SW"}) as answer:
            assert answer.status == 403  # no csrf: nothing changes
        assert (await store.message(mix.failed, None)).state == "failed"  # type: ignore[union-attr]
        data = {"destination": "RU-SW", "csrf": csrf_of(page)}
        async with session.post(retry, data=data, allow_redirects=False) as answer:
            assert answer.status == 303
        await wait_for(lambda: len(guarded.windows["RU-SW"].inbox) == 4)
    entries = await store.audit_entries(1, 10_000)
    retries = [e for e in entries if e.event == "retry_requested"]
    assert len(retries) == 1
    assert json.loads(retries[0].detail)["by"].startswith("console session ")


async def test_output_is_escaped(guarded: Exchange) -> None:
    await traffic(guarded)
    session = await signed_in(guarded)
    base = admin_base(guarded)
    async with session:
        async with session.get(f"{base}/console/messages?state=rejected") as answer:
            page = await answer.text()
        assert SCRIPT not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        href = page.split("class='messages'", 1)[1].split("href='", 1)[1].split("'")[0]
        async with session.get(base + html.unescape(href)) as answer:
            detail = await answer.text()
        assert answer.status == 200
        assert SCRIPT not in detail
        assert "Rejected — ENVELOPE_INVALID" in detail
        assert "<span class='good'>verified</span>" in detail  # the Rejected receipt
        async with session.get(f"{base}/console/messages?sender={SCRIPT}") as answer:
            page = await answer.text()
        assert SCRIPT not in page
        assert "&lt;script&gt;" in page


async def test_routing_explain_and_reload(guarded: Exchange) -> None:
    session = await signed_in(guarded)
    base = admin_base(guarded)
    table = guarded.server.gateway.config.table
    async with session:
        async with session.get(f"{base}/console/routing") as answer:
            page = await answer.text()
        assert table.digest in page
        csrf = csrf_of(page)
        query = (
            "explain=1&action=int://CP/P.CC.01/1.0.0/P.CC.01.PRC.001/P.CC.01.TRN.001/"
            "P.CC.01.MSG.001&document=R.055&from=KZ-SW&to=EAEU://RU/CP/P.CC.01/P.CC.01.ACT.002"
        )
        async with session.get(f"{base}/console/routing?{query}") as answer:
            page = await answer.text()
        assert "rule <strong>goods-declaration-to-addressee</strong>" in page
        assert "deliver to RU-SW" in page
        envelope = signed_declarations(guarded.pki, 1).popitem()[1].decode()
        explain = f"{base}/console/routing/explain"
        async with session.post(explain, data={"envelope": envelope, "csrf": csrf}) as answer:
            page = await answer.text()
        assert "deliver to RU-SW" in page
        assert "from KZ-SW" in page
        async with session.post(explain, data={"envelope": "<not-xml", "csrf": csrf}) as answer:
            assert answer.status == 400
            assert "MALFORMED_XML" in await answer.text()

        routing = guarded.folder / "routing.yaml"
        good = routing.read_text()
        routing.write_text(good.replace("deliver: addressee\n", "deliver: adressee\n", 1))
        reload = f"{base}/console/routing/reload"
        async with session.post(reload, data={}) as answer:
            assert answer.status == 403
        async with session.post(reload, data={"csrf": csrf}) as answer:
            assert answer.status == 200
            page = await answer.text()
        assert "Reload refused" in page
        assert "routing.yaml:" in page  # the error with its line
        assert guarded.server.gateway.config.table.digest == table.digest
        routing.write_text(good + "\n# a comment changes the digest\n")
        async with session.post(reload, data={"csrf": csrf}) as answer:
            assert answer.status == 200
            assert "Reloaded" in await answer.text()
        assert guarded.server.gateway.config.table.digest != table.digest
    entries = await guarded.server.gateway.store.audit_entries(1, 10_000)
    reloads = [json.loads(e.detail) for e in entries if e.event == "console_reload"]
    assert [r["reloaded"] for r in reloads] == [False, True]
    assert all(r["by"].startswith("console session ") for r in reloads)


async def test_audit_verification_runs_in_the_background_and_exports(guarded: Exchange) -> None:
    await traffic(guarded)
    session = await signed_in(guarded)
    base = admin_base(guarded)
    store = guarded.server.gateway.store
    async with session:
        async with session.get(f"{base}/console/audit") as answer:
            page = await answer.text()
        head = await store.audit_head()
        assert head is not None
        assert head[1] in page
        verify = f"{base}/console/audit/verify"
        async with session.post(verify, data={"csrf": csrf_of(page)}) as answer:
            assert answer.status == 200  # followed to the audit page
        progress: dict[str, object] = {}
        for _ in range(200):
            async with session.get(f"{base}/console/audit/progress.json") as answer:
                progress = await answer.json()
            if not progress["running"]:
                break
            await asyncio.sleep(0.05)
        assert progress["problem"] is None
        assert progress["error"] is None
        assert progress["checked"] == progress["total"]
        async with session.get(f"{base}/console/audit") as answer:
            assert "intact" in await answer.text()
        async with session.get(f"{base}/console/audit/export?first=2&last=5") as answer:
            assert answer.headers["Content-Disposition"].startswith("attachment")
            exported = json.loads(await answer.read())
    assert [e["seq"] for e in exported["entries"]] == [2, 3, 4, 5]
    events = [e.event for e in await store.audit_entries(1, 10_000)]
    assert "console_audit_verify" in events


async def test_certificates_and_health(guarded: Exchange) -> None:
    await traffic(guarded)
    session = await signed_in(guarded)
    base = admin_base(guarded)
    async with session:
        async with session.get(f"{base}/console/certificates") as answer:
            page = await answer.text()
        assert "<strong>KZ-SW</strong>" in page
        assert "4 sent" in page
        assert "4 received" in page
        assert "days left" in page
        async with session.get(f"{base}/console/health") as answer:
            page = await answer.text()
        assert answer.status == 200
        assert "ready" in page
        assert "reachable" in page
        assert "/metrics" in page


async def test_without_a_token_the_loopback_console_needs_no_sign_in(exchange: Exchange) -> None:
    await traffic(exchange)
    base = admin_base(exchange)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(f"{base}/console/", allow_redirects=False) as answer:
            assert answer.status == 200
            assert "Exchange matrix" in await answer.text()
            assert "broker_console=" in answer.headers["Set-Cookie"]  # a session, for CSRF
        store = exchange.server.gateway.store
        failed = next(v for v in await store.messages("failed", None, None, 10))
        async with session.get(f"{base}/console/messages/{failed.message_id}") as answer:
            page = await answer.text()
        retry = f"{base}/console/messages/{failed.message_id}/retry"
        async with session.post(retry, data={"destination": "RU-SW"}) as answer:
            assert answer.status == 403
        data = {"destination": "RU-SW", "csrf": csrf_of(page)}
        async with session.post(retry, data=data, allow_redirects=False) as answer:
            assert answer.status == 303


async def test_csrf_is_required_and_sign_out_is_audited(guarded: Exchange) -> None:
    session = await signed_in(guarded)
    async with session:
        base = admin_base(guarded)
        async with session.post(f"{base}/console/logout", data={}) as answer:
            assert answer.status == 403
        async with session.post(f"{base}/console/logout", data={"csrf": "other"}) as answer:
            assert answer.status == 403
        async with session.get(f"{base}/console/") as answer:
            assert answer.status == 200  # still signed in: nothing changed
            page = await answer.text()
        async with session.post(
            f"{base}/console/logout", data={"csrf": csrf_of(page)}, allow_redirects=False
        ) as answer:
            assert answer.status == 303
        async with session.get(f"{base}/console/", allow_redirects=False) as answer:
            assert answer.status == 303
    entries = await guarded.server.gateway.store.audit_entries(1, 1000)
    events = [(e.event, e.detail) for e in entries if e.event.startswith("console_")]
    assert [event for event, _ in events] == ["console_login", "console_logout"]
    assert all('"by":"console session ' in detail for _, detail in events)


async def test_an_unreachable_store_is_a_503_page_not_a_crash(
    guarded: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = await signed_in(guarded)

    async def unreachable(*args: object, **kwargs: object) -> None:
        raise StoreUnavailable("PostgreSQL unavailable: the server is unreachable")

    monkeypatch.setattr(guarded.server.gateway.store, "matrix", unreachable)
    async with session, session.get(f"{admin_base(guarded)}/console/") as answer:
        assert answer.status == 503
        assert "The store is unavailable: PostgreSQL unavailable" in await answer.text()


async def test_cookie_less_visits_cannot_grow_the_sessions_without_bound(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a token each first visit opens a session; past the cap the oldest goes."""
    monkeypatch.setattr(auth, "MAX_SESSIONS", 5)
    base = admin_base(exchange)
    cookies = []
    for _ in range(8):
        async with (
            aiohttp.ClientSession() as visitor,
            visitor.get(f"{base}/console/health") as answer,
        ):
            assert answer.status == 200
            cookies.append(answer.cookies["broker_console"].value)
    admin = next(r.app for r in exchange.server._runners if auth.SESSIONS in r.app)
    sessions = admin[auth.SESSIONS]
    assert list(sessions.by_id) == cookies[-5:]
