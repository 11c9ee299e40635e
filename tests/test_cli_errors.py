"""Usage errors of the CLI (SPEC §11): a file argument that does not exist or cannot be read
is one line and exit 2, for every command that takes one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pki_support import Pki
from tests.test_cli_validate import broker


@pytest.mark.parametrize(
    "args",
    [
        ("routing", "check", "{missing}"),
        ("routing", "explain", "{missing}"),
        ("validate", "{missing}"),
        ("verify", "{missing}"),
        ("sign", "--key", "{missing}", "--cert", "{missing}", "{missing}"),
        ("send", "--key", "{missing}", "--cert", "{missing}", "{missing}"),
        ("audit", "verify", "--file", "{missing}"),
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_missing_file_is_one_line_and_exit_2(args: tuple[str, ...], tmp_path: Path) -> None:
    """The line names the argument and the file."""
    missing = str(tmp_path / "missing.xml")
    result = broker(*(a.format(missing=missing) for a in args))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{missing}: no such file" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_folder_given_as_a_file_is_a_usage_error(tmp_path: Path) -> None:
    """`routing check DIR` says it is a folder."""
    result = broker("routing", "check", str(tmp_path))
    assert result.returncode == 2
    assert "is a folder, not a file" in result.stderr


def test_audit_verify_without_a_gateway_certificate_checks_the_chain(
    tmp_path: Path, test_pki: Pki
) -> None:
    """No certs/gateway/cert.pem: the chain is checked alone, and the last line says the
    signatures were not checked and how to check them (exit 0 while the chain holds)."""
    import asyncio

    from broker.audit import AuditEvent, Auditor
    from broker.store.sqlite import SqliteStore

    async def fill() -> None:
        store = SqliteStore(str(tmp_path / "s.sqlite3"), Auditor(test_pki.gateway()))
        await store.open()
        await store.audit([AuditEvent("gateway_started", None)])
        await store.close()

    asyncio.run(fill())
    result = broker(
        "audit",
        "verify",
        "--store",
        f"sqlite:///{tmp_path / 's.sqlite3'}",
        "--certs",
        str(tmp_path / "no-certs"),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("audit log intact: 1 entries, the hash chain holds")
    assert lines[-1].startswith("the entries' signatures were NOT checked")
    assert "--cert" in lines[-1]
