"""The console in a real browser (Chromium, driven by Playwright), as an operator uses it:
sign in, read the matrix, follow a cell, open a message and its verified receipts, retry a
failed destination until it is delivered, explain, reload a broken table, spot an expiring
certificate. Any JavaScript console error fails the test; each page is screenshotted."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker import clock, pki
from tests.e2e.browser import Browser, browser
from tests.e2e.conftest import Exchange, open_exchange
from tests.e2e.console_support import TOKEN, admin_base, traffic
from tests.pki_support import Pki, country_ca


@pytest.fixture
async def operator(test_pki: Pki, tmp_path: Path) -> AsyncIterator[tuple[Exchange, Browser]]:
    # A copy of the test PKI with one certificate 10 days from expiry.
    certs = tmp_path / "certs"
    shutil.copytree(test_pki.folder, certs)
    soon = pki.make_leaf(
        country_ca(certs, "BY"), "BY-SOON", "BY",
        not_before=clock.now() - dt.timedelta(days=355), days=365,
    )  # fmt: skip
    pki.write_identity(certs / "participants" / "BY-SOON", soon)
    async with (
        open_exchange(
            dataclasses.replace(test_pki, folder=certs), tmp_path, admin_token=TOKEN
        ) as exchange,
        browser(admin_base(exchange)) as user,
    ):
        await user.open("/console/")
        assert user.page.url.endswith("/console/login")
        await user.page.fill("input[name=token]", TOKEN)
        await user.page.click("button:has-text('Sign in')")
        await user.page.wait_for_url("**/console/")
        yield exchange, user


async def test_matrix_cell_message_receipts_and_retry(operator: tuple[Exchange, Browser]) -> None:
    exchange, user = operator
    mix = await traffic(exchange)
    store = exchange.server.gateway.store
    page = user.page
    await page.reload()
    stored = await store.matrix(
        "2000-01-01T00:00:00.000Z", "2100-01-01T00:00:00.000Z", merge_processes=True
    )
    cells = page.locator("td.cell")
    assert await cells.count() == len(stored)
    for row in stored:
        cell = page.locator(
            f"td.cell[data-sender='{row.sender}'][data-destination='{row.destination}']"
        )
        assert await cell.get_attribute("data-messages") == str(row.messages)
        assert f"{row.failed} failed" in await cell.inner_text()
    await user.shot("matrix")

    await cells.first.click()  # the whole cell is a link (console.js)
    await page.wait_for_url("**/console/messages?*")
    listed = await page.locator("table.messages tbody tr").all_inner_texts()
    assert len(listed) == 4
    await user.shot("messages")

    await page.click(f"text={mix.delivered[0]}")
    await page.wait_for_url(f"**/console/messages/{mix.delivered[0]}")
    verdicts = await page.locator("table.receipts tbody tr td:nth-child(4)").all_inner_texts()
    assert verdicts == ["verified", "verified"]
    assert await page.locator("details.explain").inner_text() != ""
    assert "matches" in await page.locator("details.explain").inner_text()
    await user.shot("message")

    await user.open(f"/console/messages/{mix.failed}")
    assert "failed" in await page.locator("table.destinations").inner_text()
    await user.shot("message-failed")
    await page.click("button:has-text('Retry RU-SW')")
    await page.wait_for_url(f"**/console/messages/{mix.failed}")
    for _ in range(100):
        if "delivered" in await page.locator("table.destinations").inner_text():
            break
        await page.wait_for_timeout(100)
        await page.reload()
    assert "delivered" in await page.locator("table.destinations").inner_text()
    assert "retry_requested" in await page.locator("table.timeline").inner_text()


async def test_explain_reload_certificates_audit_health(
    operator: tuple[Exchange, Browser],
) -> None:
    exchange, user = operator
    page = user.page
    await user.open("/console/routing")
    await page.fill("input[name=action]", "int://CP/P.SS.08/1.0.0/P.SS.08.PRC.001/X/Y")
    await page.fill("input[name=document]", "R.SS.08.001")
    await page.fill("input[name=from]", "BY-SW")
    await page.fill("input[name=to]", "EAEU://KZ/CP/P.SS.08/X")
    await page.click("button[name=explain]")
    explanation = await page.locator("section.explanation").inner_text()
    assert "ss08-alert-to-all" in explanation
    assert "deliver to" in explanation
    await user.shot("routing-explain")

    routing = exchange.folder / "routing.yaml"
    routing.write_text(routing.read_text().replace("country: BY", "country: Belarus", 1))
    await page.click("form.reload button")
    alert = await page.locator("[role=alert]").inner_text()
    assert "Reload refused" in alert
    assert "routing.yaml:" in alert  # file:line:column of the error
    await user.shot("routing-reload-refused")

    await user.open("/console/certificates")
    expiring = page.locator("tr.cert.expiring")
    assert await expiring.count() == 1
    assert "expires in 10 days" in await expiring.inner_text()
    assert "BY-SOON" in await expiring.inner_text()
    await user.shot("certificates")

    await user.open("/console/audit")
    await page.click("button:has-text('Verify the chain now')")
    await page.locator(".verdict .good").wait_for(timeout=10_000)
    assert "intact" in await page.locator(".verdict").inner_text()
    await user.shot("audit")

    await user.open("/console/health")
    assert "reachable" in await page.locator("dl.facts").inner_text()
    await user.shot("health")
