"""`broker demo` as a new user runs it: one command, a whole exchange, a clean summary."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from broker.signing import gost
from tests.conftest import ROOT
from tests.test_cli_validate import broker


def test_demo_runs_the_whole_exchange_and_leaves_verifiable_receipts(tmp_path: Path) -> None:
    """The demo exits 0, reports no problem, and its receipts verify with `broker verify`."""
    out = tmp_path / "demo"
    result = broker("demo", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'demo OK {"problems": 0}' in result.stdout
    assert "processing result (KZ answers 503 twice)" in result.stdout
    # Russia's processing result is GOST-signed (`broker certs demo --gost RU`), when the GOST
    # backend is installed, as CI requires.
    if gost.available() or os.environ.get("BROKER_REQUIRE_GOST"):
        assert "signed with GOST R 34.10-2012 (gostr34102012-gostr34112012-256)" in result.stdout
    assert "→ KZ-SW  delivered after 3 attempt(s)" in result.stdout
    assert "goods declaration, resent identically         KZ      200" in result.stdout
    assert "SENDER_MISMATCH" in result.stdout
    # Russia's window answers the register update with a signal, which reaches Kazakhstan.
    assert "signal P.MSG.PRS from RU-SW answering urn:uuid:3f0c5b7e" in result.stdout
    assert "route signals-to-addressee → KZ-SW delivered" in result.stdout
    receipts = sorted((out / "receipts").glob("*.xml"))
    assert len(receipts) >= 15
    forwarded = sorted((out / "forwarded").glob("*.xml"))
    assert len(forwarded) == 7  # six messages and the signal
    checked = broker(
        "verify", str(out / "receipts" / "02-Delivered-KZ-SW.xml"), "--certs", str(out / "certs")
    )
    assert checked.returncode == 0, checked.stdout
    assert "attempts      3" in checked.stdout
    assert "`broker demo --keep` leaves it running" in result.stdout


def test_demo_keep_prints_the_console_and_leaves_it_running(tmp_path: Path) -> None:
    """`broker demo --keep`: after the summary, the console answers at the printed address
    with the demo's traffic in its matrix, until Ctrl-C stops it cleanly."""
    with subprocess.Popen(
        [sys.executable, "-m", "broker.cli", "demo", "--keep", "--out", str(tmp_path / "d")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as demo:
        try:
            assert demo.stdout is not None
            console = None
            deadline = time.monotonic() + 120
            while console is None and time.monotonic() < deadline:
                line = demo.stdout.readline()
                assert line, "the demo ended before printing the console's address"
                found = re.search(
                    r"console: (http://127\.0\.0\.1:\d+/console/) — the gateway", line
                )
                console = found.group(1) if found else None
            assert console is not None
            with urllib.request.urlopen(console, timeout=10) as answer:
                page = answer.read().decode()
            assert "Exchange matrix" in page
            assert "<th scope='row'>KZ-SW</th>" in page
            demo.send_signal(signal.SIGINT)
            assert demo.wait(timeout=30) == 0
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait()
