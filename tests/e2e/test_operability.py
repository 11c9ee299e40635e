"""What an operator meets (issue: operable in production): each mistake gets a clear, one-line
answer with exit 2, and the running gateway's hygiene holds — every case driven through the real
`broker` command or the real server."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from broker import pki
from tests.conftest import DATA, ROOT
from tests.e2e.conftest import Exchange, open_exchange
from tests.pki_support import Pki, country_ca, sign_as
from tests.test_cli_validate import broker


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _serve(pki_folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return broker(
        "serve",
        "--certs",
        str(pki_folder),
        "--routing",
        str(ROOT / "routing.yaml"),
        *args,
    )


async def test_second_gateway_on_a_busy_port_fails(exchange: Exchange, tmp_path: Path) -> None:
    """Both listeners refuse a port another gateway holds (no silent SO_REUSEPORT sharing)."""
    intake = f"127.0.0.1:{exchange.server.intake_port}"
    admin = f"127.0.0.1:{exchange.server.admin_port}"
    store = f"sqlite:///{tmp_path / 'other.sqlite3'}"
    result = await asyncio.to_thread(
        _serve, exchange.pki.folder, "--store", store, "--listen", intake, "--admin", "127.0.0.1:0"
    )
    line = _one_line(result)
    assert f"intake listener {intake}: cannot listen: the port is in use" in line
    result = await asyncio.to_thread(
        _serve, exchange.pki.folder, "--store", store, "--listen", "127.0.0.1:0", "--admin", admin
    )
    assert f"admin listener {admin}: cannot listen: the port is in use" in _one_line(result)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("audit", "verify", "--store", "sqlite:///{tmp}/nope.sqlite3"), "no SQLite store at"),
        (("audit", "export", "--store", "sqlite:///{tmp}/nope.sqlite3"), "no SQLite store at"),
        (("messages", "list", "--store", "sqlite:///{tmp}/a/b/nope.sqlite3"), "no SQLite store"),
        (("messages", "show", "x", "--store", "sqlite:///{tmp}/nope.sqlite3"), "no SQLite store"),
        (
            ("messages", "list", "--store", "postgresql://postgres@127.0.0.1:1/test"),
            "the server is unreachable",
        ),
        (
            ("messages", "list", "--store", "postgresql://postgres:s3cret@127.0.0.1:5432/nodb_x"),
            "the database does not exist",
        ),
        (("serve", "--listen", "nonsense"), "is not HOST:PORT"),
        (("serve", "--listen", "127.0.0.1:99999"), "is not HOST:PORT"),
        (("serve", "--deliveries", "0"), "must be 1 or more"),
        (("demo", "--out", "/proc/nope"), "/proc/nope"),
        (("bench", "--messages", "0"), "must be 1 or more"),
        (("messages", "list", "--since", "yesterday"), "is not a UTC time"),
        (("messages", "list", "--limit", "-5"), "must be 1 or more"),
        (("certs", "check", "--certs", "{tmp}"), "no certificates under"),
        (
            ("routing", "explain", str(DATA / "valid-conformity-kz-to-ru.xml"), "--from", "NOPE"),
            "--from NOPE: no such participant",
        ),
    ],
    ids=lambda v: " ".join(v[:3]) if isinstance(v, tuple) else None,
)
def test_environment_and_usage_errors_are_one_line(
    args: tuple[str, ...], expected: str, tmp_path: Path
) -> None:
    """Each is one line with exit 2, no traceback; a typo'd SQLite store is not created; a
    PostgreSQL password never appears."""
    result = broker(*(a.format(tmp=tmp_path) for a in args))
    line = _one_line(result)
    assert expected in line
    assert "s3cret" not in result.stderr
    assert not list(tmp_path.rglob("*.sqlite3"))


async def test_serve_creates_a_store_only_in_an_existing_folder(
    test_pki: Pki, tmp_path: Path
) -> None:
    """No folder for the store: exit 2 saying to create it or pass --create-store."""
    store = f"sqlite:///{tmp_path / 'missing' / 'broker.sqlite3'}"
    result = await asyncio.to_thread(
        _serve,
        test_pki.folder,
        "--store",
        store,
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
    )
    assert "pass --create-store" in _one_line(result)
    assert not (tmp_path / "missing").exists()


async def test_retry_and_show_take_the_bare_uuid_and_refuse_unknown_ids(
    exchange: Exchange,
) -> None:
    """`messages show` and `retry` take the bare uuid; an unknown MessageID is a usage error."""
    await exchange.post("KZ-SW", sign_as(exchange.pki, "KZ-SW"))
    store = f"sqlite:///{exchange.folder / 'broker.sqlite3'}"
    shown = await asyncio.to_thread(
        broker, "messages", "show", "3f0c5b7e-9f65-4a0e-8d4c-1c2e3a4b5c01", "--store", store
    )
    assert shown.returncode == 0, shown.stderr
    assert '"message_id": "urn:uuid:3f0c5b7e-9f65-4a0e-8d4c-1c2e3a4b5c01"' in shown.stdout
    unknown = await asyncio.to_thread(
        broker,
        "messages",
        "retry",
        "00000000-0000-4000-8000-000000000000",
        "--store",
        store,
        "--certs",
        str(exchange.pki.folder),
    )
    assert "no such message" in _one_line(unknown)
    listing = await asyncio.to_thread(broker, "messages", "list", "--store", store)
    header, row = listing.stdout.splitlines()[:2]
    assert header.index("SENDER") == row.index("KZ-SW")  # columns aligned


async def test_send_twice_is_idempotent_and_keeps_every_receipt(
    exchange: Exchange, tmp_path: Path
) -> None:
    """`send` keeps the signed envelope; `send --resend` resubmits those bytes (HTTP 200, the
    original receipt) into a new numbered receipt file; `verify --message` ties the receipt to
    what was sent; `receipts get` and `messages status` answer over mTLS."""
    message = tmp_path / "msg.xml"
    shutil.copy(DATA / "valid-conformity-kz-to-ru.xml", message)
    identity = exchange.pki.folder / "participants" / "KZ-SW"
    common = (
        "--key", str(identity / "key.pem"), "--cert", str(identity / "cert.pem"),
        "--gateway", exchange.base, "--certs", str(exchange.pki.folder),
    )  # fmt: skip
    first = await asyncio.to_thread(broker, "send", *common, str(message))
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.startswith("HTTP 202: Accepted")
    signed = tmp_path / "msg.signed.xml"
    receipt = tmp_path / "msg.receipt.xml"
    original = receipt.read_bytes()
    again = await asyncio.to_thread(broker, "send", *common, "--resend", str(message))
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith("HTTP 200: Accepted")
    assert receipt.read_bytes() == original  # never overwritten
    assert (tmp_path / "msg.receipt-2.xml").read_bytes() == original
    verified = await asyncio.to_thread(
        broker,
        "verify",
        str(receipt),
        "--message",
        str(signed),
        "--certs",
        str(exchange.pki.folder),
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    from broker.receipts import verify_receipt

    receipt_id = verify_receipt(original, exchange.pki.gateway().ca).receipt.receipt_id
    fetched = await asyncio.to_thread(
        broker, "receipts", "get", receipt_id.removeprefix("urn:uuid:"), *common,
        "-o", str(tmp_path / "fetched.xml"),
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "fetched.xml").read_bytes() == original
    status = await asyncio.to_thread(
        broker, "messages", "status", "urn:uuid:3f0c5b7e-9f65-4a0e-8d4c-1c2e3a4b5c01", *common
    )
    assert status.returncode == 0, status.stderr
    assert '"route": "ts01-registry-update-to-all"' in status.stdout


async def test_admin_token_only_as_bearer_and_bad_queries_are_400(
    test_pki: Pki, tmp_path: Path
) -> None:
    """A bare token in Authorization is refused; limit=abc and a bad since answer 400."""
    import aiohttp

    async with open_exchange(test_pki, tmp_path, admin_token="tok") as exchange:
        url = f"http://127.0.0.1:{exchange.server.admin_port}/admin/messages"
        async with aiohttp.ClientSession() as session:
            for headers, expected in (
                ({"Authorization": "tok"}, 401),
                ({"Authorization": "Bearer nope"}, 401),
                ({"Authorization": "Bearer tok"}, 200),
            ):
                async with session.get(url, headers=headers) as response:
                    assert response.status == expected, headers
            for query in ("limit=abc", "limit=0", "since=yesterday", "state=lost"):
                async with session.get(
                    f"{url}?{query}", headers={"Authorization": "Bearer tok"}
                ) as response:
                    assert response.status == 400, query
                    assert "message" in await response.json()


async def test_cut_off_client_and_schema_values_stay_out_of_error_logs(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that resets mid-body is one info line; a schema error's value is withheld from
    the log (the Rejected receipt to the sender still names it)."""
    caplog.set_level(logging.INFO)
    identity = exchange.pki.folder / "participants" / "KZ-SW"
    context = ssl.create_default_context(cafile=str(exchange.pki.folder / "gateway" / "ca.pem"))
    context.load_cert_chain(identity / "cert.pem", identity / "key.pem")
    _, writer = await asyncio.open_connection("127.0.0.1", exchange.server.intake_port, ssl=context)
    writer.write(
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/soap+xml\r\n"
        b"Content-Length: 100000\r\n\r\n<soap:Envelope"
    )
    await writer.drain()
    writer.transport.abort()
    await asyncio.sleep(0.3)
    status, body = await exchange.post(
        "KZ-SW",
        sign_as(exchange.pki, "KZ-SW", edit=lambda t: t.replace("9405210000", "94052100X0")),
    )
    assert status == 422
    assert b"94052100X0" in body
    await asyncio.sleep(0.1)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert not [r for r in caplog.records if r.exc_info], "no traceback is logged"
    assert any(getattr(r, "event", None) == "client_disconnected" for r in caplog.records)
    rejected = [r for r in caplog.records if getattr(r, "event", None) == "rejected"]
    assert rejected
    for record in caplog.records:
        assert "94052100X0" not in str(vars(record))
    assert "value withheld" in str(getattr(rejected[-1], "reason", ""))


async def test_readyz_is_false_while_the_store_cannot_write(exchange: Exchange) -> None:
    """SQLite full (here: its page limit reached): intake answers 503, /readyz goes false;
    once writes work again, /readyz is true again by itself."""
    store = exchange.server.gateway.store
    writer = store.db._writer  # type: ignore[attr-defined]
    pages = writer.conn.execute("PRAGMA page_count").fetchone()[0]
    writer.conn.execute(f"PRAGMA max_page_count = {pages}")
    status, _ = await exchange.post("KZ-SW", sign_as(exchange.pki, "KZ-SW"))
    assert status == 503
    assert (await exchange.admin("GET", "/readyz"))[0] == 503
    writer.conn.execute("PRAGMA max_page_count = 1073741823")
    assert (await exchange.admin("GET", "/readyz"))[0] == 200


async def test_expiring_certificate_is_warned_of_at_start_up(
    test_pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """At start-up, a WARNING names each certificate under certs/ that expires within 30
    days, with the days left."""
    caplog.set_level(logging.WARNING)
    folder = tmp_path / "certs"
    shutil.copytree(test_pki.folder, folder)
    soon = pki.make_leaf(
        country_ca(folder, "KZ"),
        "KZ-SW",
        "KZ",
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
        days=11,
    )
    (folder / "known").mkdir()
    (folder / "known" / "soon.pem").write_bytes(pki.cert_pem(soon.certificate))
    async with open_exchange(dataclasses.replace(test_pki, folder=folder), tmp_path):
        await asyncio.sleep(0.2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("known/soon.pem" in w and "days left" in w for w in warnings), warnings


def test_certs_demo_creates_keys_0600(tmp_path: Path) -> None:
    """Key files are never world-readable, not even for a moment (created 0600)."""
    result = subprocess.run(
        [sys.executable, "-m", "broker.cli", "certs", "demo", "--out", str(tmp_path / "c")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert result.returncode == 0, result.stderr
    keys = [p for p in (tmp_path / "c").rglob("*.pem") if "key" in p.name or "dev-ca" in str(p)]
    assert keys
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


async def test_tls_12_offers_aead_suites_only(exchange: Exchange) -> None:
    """A TLS 1.2 client offering only CBC suites cannot connect; an AEAD one can."""
    identity = exchange.pki.folder / "participants" / "KZ-SW"

    def connect(ciphers: str) -> bool:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(str(exchange.pki.folder / "gateway" / "ca.pem"))
        context.load_cert_chain(identity / "cert.pem", identity / "key.pem")
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(ciphers)
        context.check_hostname = False
        try:
            with (
                socket.create_connection(("127.0.0.1", exchange.server.intake_port), 5) as raw,
                context.wrap_socket(raw) as tls,
            ):
                return tls.version() == "TLSv1.2"
        except ssl.SSLError:
            return False

    assert not await asyncio.to_thread(connect, "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384")
    assert await asyncio.to_thread(connect, "ECDHE+AESGCM")


async def test_admin_refuses_foreign_hosts_and_cross_origin_posts(exchange: Exchange) -> None:
    """SPEC §7: a Host that is no IP literal, not localhost on loopback and not configured is
    421 (DNS rebinding); a POST from another Origin is 403; the listener's own are served."""
    import aiohttp

    port = exchange.server.admin_port
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for host, expected in (("evil.example", 421), (f"localhost:{port}", 200)):
            async with session.get(f"{url}/healthz", headers={"Host": host}) as response:
                assert response.status == expected, host
        async with session.post(
            f"{url}/admin/reload", headers={"Origin": "http://evil.example"}
        ) as response:
            assert response.status == 403
        async with session.post(
            f"{url}/admin/reload", headers={"Origin": f"http://127.0.0.1:{port}"}
        ) as response:
            assert response.status == 200
