"""GOST with the commands a member-state developer and an operator run: `broker sign` with a
GOST key, `broker certs demo --gost`, `broker certs check`, and the same without the backend
(BROKER_NO_GOST=1 stands in for a machine without libengine-gost-openssl)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.gost_support import require_gost


def _broker(
    *args: str, no_gost: bool = False, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BROKER_NO_GOST": "1" if no_gost else "0"}
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=cwd,
    )


def test_certs_demo_gost_into_a_relative_folder(tmp_path: Path) -> None:
    """`broker certs demo --out certs --gost RU` from the working folder, as `make demo` does
    (the openssl command works elsewhere: relative paths must still land here)."""
    require_gost()
    routing = str(ROOT / "routing.yaml")
    made = _broker(
        "certs", "demo", "--out", "certs", "--gost", "RU", "--routing", routing, cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "certs" / "participants" / "RU-SW" / "signing" / "cert.pem").is_file()
    assert (tmp_path / "certs" / "trust" / "RU" / "gost-ca.pem").is_file()


def test_certs_demo_gost_then_sign_and_check(tmp_path: Path) -> None:
    require_gost()
    certs = tmp_path / "certs"
    made = _broker("certs", "demo", "--out", str(certs), "--gost", "RU")
    assert made.returncode == 0, made.stderr
    assert "trust/RU/gost-ca.pem" in made.stdout
    assert "participants/RU-SW/signing/key.pem, cert.pem (GOST)" in made.stdout
    signing = certs / "participants" / "RU-SW" / "signing"
    signed = tmp_path / "signed.xml"
    result = _broker(
        "sign",
        "--key",
        str(signing / "key.pem"),
        "--cert",
        str(signing / "cert.pem"),
        str(ROOT / "tests" / "data" / "valid-processing-result-ru-to-kz.xml"),
        "--output",
        str(signed),
    )
    assert result.returncode == 0, result.stderr
    assert b"gostr34102012-gostr34112012-256" in signed.read_bytes()
    assert b"gostr34112012-256" in signed.read_bytes()
    check = _broker("certs", "check", "--certs", str(certs))
    assert "GOST backend: available" in check.stdout
    assert "participant signing (development) CN=RU-SW" in check.stdout

    without = _broker(
        "sign",
        "--key",
        str(signing / "key.pem"),
        "--cert",
        str(signing / "cert.pem"),
        str(ROOT / "tests" / "data" / "valid-processing-result-ru-to-kz.xml"),
        no_gost=True,
    )
    assert without.returncode == 2
    assert "Traceback" not in without.stderr
    assert len(without.stderr.strip().splitlines()) == 1
    assert "libengine-gost-openssl" in without.stderr
    check = _broker("certs", "check", "--certs", str(certs), no_gost=True)
    assert "GOST backend: not installed" in check.stdout


def test_certs_demo_gost_without_the_backend_is_a_usage_error(tmp_path: Path) -> None:
    result = _broker("certs", "demo", "--out", str(tmp_path / "c"), "--gost", "RU", no_gost=True)
    assert result.returncode == 2
    assert "libengine-gost-openssl" in result.stderr
    assert "Traceback" not in result.stderr
