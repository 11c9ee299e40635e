"""End to end over real TLS on loopback: intake, delivery, receipts, read API (SPEC §7–§9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker import xmlsafe
from broker.receipts import RCPT, check_message_digest, verify_receipt
from tests.e2e.conftest import Exchange, wait_for
from tests.pki_support import XMLSEC_ID_ATTRS, run_xmlsec, sign_as

pytestmark = pytest.mark.xmlsec


def _receipt(exchange: Exchange, data: bytes) -> tuple[str, dict[str, object]]:
    checked = verify_receipt(data, exchange.pki.gateway().ca)
    return checked.receipt.kind, vars(checked.receipt)


async def test_happy_path_fans_out_and_both_signatures_verify_at_the_destination(
    exchange: Exchange, xmlsec1: str, tmp_path: Path
) -> None:
    """202 + Accepted; each destination gets the envelope; xmlsec1 verifies both signatures."""
    message = sign_as(exchange.pki, "KZ-SW")
    status, data = await exchange.post("KZ-SW", message)
    assert status == 202, data
    kind, receipt = _receipt(exchange, data)
    assert kind == "Accepted"
    assert receipt["destinations"] == ("RU-SW", "BY-SW")
    assert receipt["route"] == "ts01-registry-update-to-all"
    ru, by = exchange.windows["RU-SW"], exchange.windows["BY-SW"]
    await wait_for(lambda: len(ru.inbox) == 1 and len(by.inbox) == 1)
    assert not exchange.windows["KZ-SW"].inbox  # a glob never delivers back to the sender
    forwarded = ru.inbox[0]
    assert forwarded.sender_verified, forwarded.problem
    assert forwarded.gateway_verified, forwarded.problem
    path = tmp_path / "forwarded.xml"
    path.write_bytes(forwarded.body)
    root = xmlsafe.parse(forwarded.body)
    ids = [s.get("Id") for s in root.iter("{http://www.w3.org/2000/09/xmldsig#}Signature")]
    for node_id, ca in ((ids[0], "trust/KZ/ca.pem"), (ids[1], "gateway/ca.pem")):
        result = run_xmlsec(
            xmlsec1,
            "--verify",
            "--trusted-pem",
            str(exchange.pki.folder / ca),
            *XMLSEC_ID_ATTRS,
            "--node-id",
            str(node_id),
            str(path),
        )
        assert result.returncode == 0, result.stderr
    # The Delivered receipts are pushed to the sender's receipts URL.
    kz = exchange.windows["KZ-SW"]
    await wait_for(lambda: len(kz.receipts) == 2)
    pushed = sorted(
        _receipt(exchange, r)[1]["destinations"][0]  # type: ignore[index]
        for r in kz.receipts
    )
    assert pushed == ["BY-SW", "RU-SW"]
    for body in kz.receipts:
        checked = verify_receipt(body, exchange.pki.gateway().ca)
        assert checked.receipt.kind == "Delivered"
        assert checked.receipt.attempts == 1
        assert check_message_digest(checked.receipt, message)


async def test_identical_resubmission_gets_the_original_receipt_and_no_new_delivery(
    exchange: Exchange,
) -> None:
    """Same sender, MessageID and bytes: 200 with the byte-identical Accepted receipt."""
    message = sign_as(exchange.pki, "RU-SW", "valid-processing-result-ru-to-kz.xml")
    first_status, first = await exchange.post("RU-SW", message)
    assert first_status == 202
    kz, ru = exchange.windows["KZ-SW"], exchange.windows["RU-SW"]
    await wait_for(lambda: len(kz.inbox) == 1 and len(ru.receipts) == 1)
    second_status, second = await exchange.post("RU-SW", message)
    assert second_status == 200
    assert second == first
    await exchange.server.worker.store.counts()  # let the worker look at the store once more
    await wait_for(lambda: exchange.server.worker.attempts_made >= 2, 0.5)
    assert len(kz.inbox) == 1


async def test_same_message_id_with_other_content_is_duplicate_conflict(
    exchange: Exchange,
) -> None:
    """Same sender and MessageID, another digest: 409 DUPLICATE_CONFLICT with a receipt."""
    assert (
        await exchange.post(
            "RU-SW", sign_as(exchange.pki, "RU-SW", "valid-processing-result-ru-to-kz.xml")
        )
    )[0] == 202
    changed = sign_as(
        exchange.pki,
        "RU-SW",
        "valid-processing-result-ru-to-kz.xml",
        edit=lambda t: t.replace("<pr:ProcessingResultV2Code>3<", "<pr:ProcessingResultV2Code>4<"),
    )
    status, data = await exchange.post("RU-SW", changed)
    assert status == 409
    kind, receipt = _receipt(exchange, data)
    assert kind == "Rejected"
    assert receipt["errors"][0][0] == "DUPLICATE_CONFLICT"  # type: ignore[index]


async def test_503_twice_then_200_is_delivered_with_attempts_3(exchange: Exchange) -> None:
    """Retryable answers are retried with backoff; the Delivered receipt counts 3 attempts."""
    kz, ru = exchange.windows["KZ-SW"], exchange.windows["RU-SW"]
    kz.fail_next = [503, 503]
    status, _ = await exchange.post(
        "RU-SW", sign_as(exchange.pki, "RU-SW", "valid-processing-result-ru-to-kz.xml")
    )
    assert status == 202
    await wait_for(lambda: len(kz.inbox) == 1 and len(ru.receipts) == 1)
    checked = verify_receipt(ru.receipts[0], exchange.pki.gateway().ca)
    assert (checked.receipt.kind, checked.receipt.attempts) == ("Delivered", 3)


async def test_permanent_400_fails_with_destination_rejected(exchange: Exchange) -> None:
    """A 4xx other than 408/425/429 fails at once; the Failed receipt says why."""
    ru = exchange.windows["RU-SW"]
    ru.fail_next = [400]
    status, _ = await exchange.post(
        "KZ-SW", sign_as(exchange.pki, "KZ-SW", "valid-goods-declaration-kz-to-ru.xml")
    )
    assert status == 202
    kz = exchange.windows["KZ-SW"]
    await wait_for(lambda: len(kz.receipts) == 1)
    checked = verify_receipt(kz.receipts[0], exchange.pki.gateway().ca)
    assert checked.receipt.kind == "Failed"
    assert checked.receipt.attempts == 1
    assert checked.receipt.errors[0][0] == "DESTINATION_REJECTED"
    assert not ru.inbox


async def test_ttl_expiry_fails_with_delivery_expired(exchange: Exchange) -> None:
    """A destination that keeps answering 503 past the ttl gets a Failed DELIVERY_EXPIRED."""
    ru = exchange.windows["RU-SW"]
    ru.fail_next = [503] * 1000
    status, _ = await exchange.post(
        "KZ-SW", sign_as(exchange.pki, "KZ-SW", "valid-goods-declaration-kz-to-ru.xml")
    )
    assert status == 202
    kz = exchange.windows["KZ-SW"]
    await wait_for(lambda: len(kz.receipts) == 1, timeout=10)
    checked = verify_receipt(kz.receipts[0], exchange.pki.gateway().ca)
    assert checked.receipt.kind == "Failed"
    assert checked.receipt.errors[0][0] == "DELIVERY_EXPIRED"
    assert checked.receipt.attempts is not None
    assert checked.receipt.attempts > 1


async def test_read_api_answers_only_the_sender(exchange: Exchange) -> None:
    """GET /v1/messages and /v1/receipts: the sender sees them, anyone else gets 404."""
    status, data = await exchange.post("KZ-SW", sign_as(exchange.pki, "KZ-SW"))
    assert status == 202
    receipt_id = str(_receipt(exchange, data)[1]["receipt_id"])
    await wait_for(lambda: len(exchange.windows["KZ-SW"].receipts) == 2)
    message_id = "urn:uuid:3f0c5b7e-9f65-4a0e-8d4c-1c2e3a4b5c01"
    status, body, _ = await exchange.request("KZ-SW", "GET", f"/v1/messages/{message_id}")
    assert status == 200
    view = json.loads(body)
    assert view["sender"] == "KZ-SW"
    assert {d["participant"]: d["state"] for d in view["destinations"]} == {
        "RU-SW": "delivered",
        "BY-SW": "delivered",
    }
    assert sorted(r["kind"] for r in view["receipts"]) == ["Accepted", "Delivered", "Delivered"]
    bare = message_id.removeprefix("urn:uuid:")
    assert (await exchange.request("KZ-SW", "GET", f"/v1/messages/{bare}"))[0] == 200
    assert (await exchange.request("RU-SW", "GET", f"/v1/messages/{message_id}"))[0] == 404
    status, stored, _ = await exchange.request("KZ-SW", "GET", f"/v1/receipts/{receipt_id}")
    assert status == 200
    assert stored == data  # byte for byte
    assert (await exchange.request("BY-SW", "GET", f"/v1/receipts/{receipt_id}"))[0] == 404


@pytest.mark.parametrize(
    ("sender", "sample", "edit", "status", "code"),
    [
        ("KZ-SW", "valid-conformity-kz-to-ru.xml", "schema", 422, "SCHEMA_INVALID"),
        ("KZ-SW", "valid-conformity-kz-to-ru.xml", "unsigned", 422, "SIGNATURE_MISSING"),
        ("RU-SW", "valid-conformity-kz-to-ru.xml", None, 403, "SENDER_MISMATCH"),
        ("KZ-SW", "valid-conformity-kz-to-ru.xml", "malformed", 400, "MALFORMED_XML"),
        ("KZ-SW", "valid-conformity-kz-to-ru.xml", "deny", 403, "ROUTE_DENIED"),
    ],
)
async def test_refusals_get_a_signed_rejected_receipt_and_nothing_is_forwarded(
    exchange: Exchange, sender: str, sample: str, edit: str | None, status: int, code: str
) -> None:
    """Every refusal after reading the body: its §8 status, a signed Rejected receipt naming the
    code, the receipt stored, and nothing delivered anywhere."""
    if edit in {"unsigned", "malformed"}:
        from tests.conftest import DATA

        body = (DATA / sample).read_bytes()
        if edit == "malformed":
            body = body[:-20]
    elif edit == "schema":
        body = sign_as(
            exchange.pki, "KZ-SW", sample, edit=lambda t: t.replace("9405210000", "94052100X0")
        )
    elif edit == "deny":
        body = sign_as(
            exchange.pki, "KZ-SW", sample, edit=lambda t: t.replace("P.TS.01", "P.ZZ.99")
        )
        exchange.server.gateway.config.sources.routing.write_text(
            exchange.server.gateway.config.sources.routing.read_text().replace(
                "routes:\n",
                "routes:\n  - {name: deny, match: {action: 'int://CP/P.ZZ.99/*'}, "
                "reject: 'ROUTE_DENIED: closed'}\n",
            )
        )
        exchange.server.gateway.config.reload()
    else:
        body = sign_as(exchange.pki, "KZ-SW", sample)
    got_status, data = await exchange.post(sender, body)
    assert got_status == status, data
    kind, receipt = _receipt(exchange, data)
    assert kind == "Rejected"
    assert receipt["errors"][0][0] == code  # type: ignore[index]
    assert receipt["track_id"] is None
    assert receipt["route"] is None
    stored = await exchange.server.gateway.store.receipt(str(receipt["receipt_id"]))
    assert stored is not None
    assert stored[1] == data
    assert all(not w.inbox for w in exchange.windows.values())


async def test_unsupported_media_type_and_too_large_have_no_receipt(exchange: Exchange) -> None:
    """415 and 413 are answered before reading the body, without a receipt."""
    status, data = await exchange.post("KZ-SW", b"<x/>", content_type="application/json")
    assert status == 415
    assert json.loads(data)["code"] == "UNSUPPORTED_MEDIA_TYPE"
    big = b"<x>" + b"a" * (10 * 1024 * 1024) + b"</x>"
    status, data = await exchange.post("KZ-SW", big)
    assert status == 413
    assert json.loads(data)["code"] == "TOO_LARGE"


async def test_admin_listener_health_routing_reload_and_retry(exchange: Exchange) -> None:
    """/healthz, /readyz, /metrics, /admin/routing, reload refusing a broken table, and
    retry of a Failed destination delivering it once the destination is back."""
    assert (await exchange.admin("GET", "/healthz"))[0] == 200
    assert (await exchange.admin("GET", "/readyz"))[0] == 200
    status, body = await exchange.admin("GET", "/admin/routing")
    assert json.loads(body)["digest"] == exchange.server.gateway.config.table.digest
    path = exchange.server.gateway.config.sources.routing
    good = path.read_text()
    path.write_text(good.replace("deliver: addressee", "deliver: somebody", 1))
    status, body = await exchange.admin("POST", "/admin/routing/reload")
    assert status == 422
    assert "deliver must be 'addressee'" in json.loads(body)["errors"][0]
    path.write_text(good)
    # A permanent failure, then an operator retry once the destination is fixed.
    ru = exchange.windows["RU-SW"]
    ru.fail_next = [400]
    assert (
        await exchange.post(
            "KZ-SW", sign_as(exchange.pki, "KZ-SW", "valid-goods-declaration-kz-to-ru.xml")
        )
    )[0] == 202
    kz = exchange.windows["KZ-SW"]
    await wait_for(lambda: len(kz.receipts) == 1)
    status, body = await exchange.admin("GET", "/admin/messages?state=failed")
    failed = json.loads(body)
    assert [m["message_id"] for m in failed] == ["urn:uuid:6a3f8ea1-2c98-4d31-b07f-4f5a6d7e8f04"]
    status, body = await exchange.admin(
        "POST", "/admin/messages/urn:uuid:6a3f8ea1-2c98-4d31-b07f-4f5a6d7e8f04/retry"
    )
    assert status == 200
    assert json.loads(body)["retried"] == 1
    await wait_for(lambda: len(ru.inbox) == 1 and len(kz.receipts) == 2)
    kinds = sorted(verify_receipt(r, exchange.pki.gateway().ca).receipt.kind for r in kz.receipts)
    assert kinds == ["Delivered", "Failed"]
    metrics = (await exchange.admin("GET", "/metrics"))[1].decode()
    assert "broker_messages_accepted_total 1.0" in metrics
    root = xmlsafe.parse(kz.receipts[1])
    assert root.findtext(f"{{{RCPT}}}Kind") in ("Delivered", "Failed")
