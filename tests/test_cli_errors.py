"""Usage errors of the CLI (SPEC §11): a file argument that does not exist or cannot be read
is one line and exit 2, for every command that takes one."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
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
    from broker.store import open_store

    async def fill() -> None:
        store = open_store(
            f"sqlite:///{tmp_path / 's.sqlite3'}", Auditor(test_pki.gateway()), create=True
        )
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


def _parsers(
    parser: argparse.ArgumentParser, name: str = "broker"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from _parsers(child, f"{name} {sub}")


def test_every_option_and_argument_has_help() -> None:
    """`--help` explains every option and positional argument of every command; options with
    a default or an environment variable say which."""
    from broker.cli import build_parser

    missing = []
    for name, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                missing.append(label)
            elif (
                action.option_strings
                and action.default not in (None, False, argparse.SUPPRESS)
                and "default" not in action.help
                and "env " not in action.help
            ):
                missing.append(f"{label} (default {action.default!r} not shown)")
    assert not missing, "\n".join(missing)


def test_validate_prints_each_error_once_and_a_summary() -> None:
    """Several files: each error once (under its count), then one summary line."""
    from tests.conftest import DATA

    two = DATA / "invalid-SCHEMA_INVALID-declaration-two-errors.xml"
    result = broker("validate", str(DATA / "valid-conformity-kz-to-ru.xml"), str(two))
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert lines[1] == f"{two}: SCHEMA_INVALID: 2 errors"
    details = [line for line in lines if line.startswith("    line ")]
    assert len(details) == len(set(details)) == 2
    assert lines[-1] == "2 file(s): 1 valid, 1 invalid"
