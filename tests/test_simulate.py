"""`broker simulate`'s parts: the routing overlay keeps the table as it was but for the
simulated URLs, and a strict inbox refuses what a real one must refuse, saying why."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp

from broker.routing.load import parse_routing
from broker.simulate import overlay
from broker.simulator import SingleWindow
from tests.conftest import ROOT
from tests.e2e.nodes import ROUTING
from tests.pki_support import Pki, sign_as


def test_overlay_replaces_only_the_urls_in_block_and_flow_style() -> None:
    urls = {
        "KZ-SW": ("https://127.0.0.1:1001/eaeu/inbox", "https://127.0.0.1:1001/eaeu/receipts"),
        "RU-SW": ("https://127.0.0.1:1002/eaeu/inbox", "https://127.0.0.1:1002/eaeu/receipts"),
    }
    shipped = (ROOT / "routing.yaml").read_text()
    changed = overlay(shipped, urls)
    table = parse_routing(changed.encode()).table
    assert table is not None
    assert table.participants["KZ-SW"].endpoint == urls["KZ-SW"][0]
    assert table.participants["RU-SW"].receipts == urls["RU-SW"][1]
    assert table.participants["BY-SW"].endpoint == "https://sw.by.example/eaeu/inbox"
    before, after = shipped.splitlines(), changed.splitlines()
    assert len(before) == len(after)  # comments and layout kept: only four lines differ
    differ = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert [b.split(":", 1)[0].strip() for _, b in differ] == ["endpoint", "receipts"] * 2
    # Flow style, no receipts key: it is added.
    flow = ROUTING.format(endpoint="https://ru.example/in")
    table = parse_routing(overlay(flow, urls).encode()).table
    assert table is not None
    assert table.participants["RU-SW"].endpoint == urls["RU-SW"][0]
    assert table.participants["KZ-SW"].receipts == urls["KZ-SW"][1]


async def test_a_strict_inbox_refuses_a_delivery_the_gateway_did_not_countersign(
    test_pki: Pki, tmp_path: Path
) -> None:
    """A KZ-signed message posted straight to RU's inbox (with the gateway's TLS client
    identity, but no countersignature and no int:Integration): 400 with the reason."""
    window = SingleWindow("RU-SW", test_pki.folder, strict=True)
    seen: list[str] = []
    window.on_received = lambda message_id, found: seen.append(found.reason)
    await window.start()
    try:
        context = ssl.create_default_context(
            cafile=str(test_pki.folder / "trust" / "RU" / "ca.pem")
        )
        tls = test_pki.folder / "tls"
        context.load_cert_chain(tls / "cert.pem", tls / "key.pem")
        context.check_hostname = False
        async with (
            aiohttp.ClientSession() as session,
            session.post(window.endpoint, data=sign_as(test_pki, "KZ-SW"), ssl=context) as answer,
        ):
            assert answer.status == 400
            text = await answer.text()
        assert "int:Integration" in text
        assert seen == [text.removeprefix("refused: ").strip()]
    finally:
        await window.stop()
