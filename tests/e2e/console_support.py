"""A console user over HTTP (sign-in, the CSRF value of a page, forms), and a known traffic mix
for the console tests: delivered, failed and rejected messages."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import aiohttp

from tests.conftest import ROOT
from tests.e2e.conftest import Exchange, wait_for
from tests.e2e.nodes import signed_declarations

TOKEN = "s3cret-operator-token"
SCRIPT = "<script>alert(1)</script>"


def admin_base(exchange: Exchange) -> str:
    return f"http://127.0.0.1:{exchange.server.admin_port}"


def csrf_of(page: str) -> str:
    match = re.search(r"name='csrf' value='([^']+)'", page)
    assert match, "the page has no csrf field"
    return match.group(1)


def own_assets_only(page: str) -> None:
    """Nothing on a page is loaded from elsewhere (closed networks)."""
    for address in re.findall(r"(?:src|href)='([^']*)'", page):
        assert address.startswith(("/", "?", "#")), address
        assert not address.startswith("//"), address


async def signed_in(exchange: Exchange, token: str = TOKEN) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.post(
        f"{admin_base(exchange)}/console/login", data={"token": token}, allow_redirects=False
    ) as answer:
        assert answer.status == 303, await answer.text()
    return session


@dataclass(frozen=True)
class Traffic:
    delivered: list[str]
    failed: str
    rejected: str


async def traffic(exchange: Exchange) -> Traffic:
    """Four declarations KZ → RU, one refused once by RU with a 400 (Failed at once), and one
    submission rejected for its MessageID, which carries a script."""
    ids = list(signed_declarations(exchange.pki, 4).items())
    failing = ids[-1][0]
    exchange.windows["RU-SW"].fail_for[failing] = [400]
    for _, data in ids:
        assert (await exchange.post("KZ-SW", data))[0] == 202
    store = exchange.server.gateway.store

    async def settled() -> bool:
        view = await store.message(f"urn:uuid:{failing}", None)
        return view is not None and view.state == "failed"

    await wait_for(lambda: len(exchange.windows["RU-SW"].inbox) == 3)
    for _ in range(200):
        if await settled():
            break
        await asyncio.sleep(0.05)
    assert await settled()
    template = (ROOT / "tests/data/valid-goods-declaration-kz-to-ru.xml").read_text()
    hostile = re.sub(
        r"(<wsa:MessageID[^>]*>)[^<]*(</wsa:MessageID>)",
        lambda m: m.group(1) + SCRIPT.replace("<", "&lt;").replace(">", "&gt;") + m.group(2),
        template,
        count=1,
    )
    status, _ = await exchange.post("KZ-SW", hostile.encode())
    assert 400 <= status < 500
    return Traffic([f"urn:uuid:{i}" for i, _ in ids[:-1]], f"urn:uuid:{failing}", SCRIPT)
