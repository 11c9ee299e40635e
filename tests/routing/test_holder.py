"""Hot reload of the configuration set: swap atomically, refuse a broken set and keep the old
one, SIGHUP (routing.yaml here; catalog and certs in tests/e2e/test_reload.py)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from broker.config import ConfigHolder, Sources
from broker.errors import ConfigError
from tests.conftest import ROOT, XSD
from tests.pki_support import Pki


@pytest.fixture
def table_file(tmp_path: Path) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_bytes((ROOT / "routing.yaml").read_bytes())
    return path


def _holder(path: Path, test_pki: Pki) -> ConfigHolder:
    return ConfigHolder.load(Sources(path, XSD, test_pki.folder))


def test_reload_swaps_in_a_good_table(table_file: Path, test_pki: Pki) -> None:
    """A clean edit is swapped in and the digest changes with the bytes."""
    holder = _holder(table_file, test_pki)
    before = holder.table
    table_file.write_text(table_file.read_text() + "\n# edited\n")
    result = holder.reload()
    assert result.table is holder.table
    assert holder.table.digest != before.digest


def test_reload_refuses_a_broken_table_and_keeps_the_old(table_file: Path, test_pki: Pki) -> None:
    """A table with an error is refused; the table in force stays, the failure is counted."""
    holder = _holder(table_file, test_pki)
    before = holder.table
    table_file.write_text(
        table_file.read_text().replace("deliver: addressee", "deliver: nobody", 1)
    )
    result = holder.reload()
    assert result.table is None
    assert any("deliver must be 'addressee'" in p for p in result.errors)
    assert holder.table is before
    assert holder.reload_failures == 1


def test_start_up_with_a_broken_table_is_a_config_error(tmp_path: Path, test_pki: Pki) -> None:
    """The gateway will not start on a table with errors."""
    path = tmp_path / "routing.yaml"
    path.write_text("version: 2\n")
    with pytest.raises(ConfigError, match="version must be 1"):
        _holder(path, test_pki)


async def test_sighup_reloads(table_file: Path, test_pki: Pki) -> None:
    """SIGHUP to the process reloads the table."""
    holder = _holder(table_file, test_pki)
    before = holder.table.digest
    table_file.write_text(table_file.read_text() + "\n# sighup\n")
    loop = asyncio.get_running_loop()
    holder.install_sighup(loop)
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if holder.table.digest != before:
                break
        assert holder.table.digest != before
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
