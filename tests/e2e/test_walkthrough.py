"""The README's "local exchange in two terminals", command for command, on a fresh folder:
`broker certs demo`, `broker simulate … --routing-overlay`, `broker serve`, `broker send`; the
message is delivered and verified at the simulated inbox, and the receipt pushed back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.nodes import free_ports


def _broker(*args: str) -> list[str]:
    return [sys.executable, "-m", "broker.cli", *args]


def _wait_for_line(path: Path, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [line for line in path.read_text().splitlines() if text in line]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no line with {text!r} in {path}:\n{path.read_text()}")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A fresh working folder holding what a clone has: routing.yaml, xsd/ and tests/data."""
    shutil.copy(ROOT / "routing.yaml", tmp_path / "routing.yaml")
    shutil.copytree(ROOT / "xsd", tmp_path / "xsd")
    (tmp_path / "tests").mkdir()
    shutil.copytree(ROOT / "tests" / "data", tmp_path / "tests" / "data")
    return tmp_path


def test_readme_walkthrough_delivers_a_verified_message(folder: Path) -> None:
    admin, run = _fresh_gateway_folder(folder)
    simulate_log, serve_log = folder / "simulate.log", folder / "serve.log"
    with open(simulate_log, "w") as sim_out, open(serve_log, "w") as serve_out:
        simulator = subprocess.Popen(  # type: ignore[call-overload]
            _broker("simulate", "KZ-SW", "RU-SW", "--routing-overlay", "local.yaml"),
            stdout=sim_out,
            stderr=subprocess.STDOUT,
            **run,
        )
        server = None
        try:
            _wait_for_line(simulate_log, "listening RU-SW https://127.0.0.1:")
            server = subprocess.Popen(  # type: ignore[call-overload]
                _broker("serve", "--routing", "local.yaml", "--create-store"),
                stdout=serve_out,
                stderr=subprocess.STDOUT,
                **run,
            )
            _wait_ready(admin, server)
            sent = subprocess.run(  # type: ignore[call-overload]
                _broker(
                    "send",
                    "--key",
                    "certs/participants/KZ-SW/key.pem",
                    "--cert",
                    "certs/participants/KZ-SW/cert.pem",
                    "tests/data/valid-goods-declaration-kz-to-ru.xml",
                ),
                capture_output=True,
                check=False,
                **run,
            )
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert sent.stdout.startswith("HTTP 202: Accepted")
            line = _wait_for_line(simulate_log, "received RU-SW urn:uuid:6a3f8ea1-")
            assert line.endswith(" verified")
            _wait_for_line(simulate_log, "receipt KZ-SW Delivered verified")
        finally:
            for process in (server, simulator):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=30)
    assert "Traceback" not in simulate_log.read_text()


def _fresh_gateway_folder(folder: Path) -> tuple[int, dict[str, object]]:
    """Free ports for `broker serve` (through the env variables the README's commands read),
    and `broker certs demo` run in ``folder``: (admin port, subprocess keyword arguments)."""
    listen, admin = free_ports(2)
    env = {
        **os.environ,
        "BROKER_LISTEN": f"127.0.0.1:{listen}",
        "BROKER_ADMIN": f"127.0.0.1:{admin}",
        "BROKER_GATEWAY": f"https://127.0.0.1:{listen}",
    }
    run: dict[str, object] = {"cwd": folder, "env": env, "text": True}
    made = subprocess.run(_broker("certs", "demo"), capture_output=True, check=False, **run)  # type: ignore[call-overload]
    assert made.returncode == 0, made.stderr
    return admin, run


def _wait_ready(admin: int, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, "broker serve exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("broker serve did not become ready")


def test_simulate_send_submits_traffic_that_is_delivered(folder: Path) -> None:
    """`broker simulate … --send 5`: both simulated participants submit goods declarations;
    the ones addressed to each other arrive verified."""
    admin, run = _fresh_gateway_folder(folder)
    # The overlay first (no traffic yet), then the gateway, then the simulator that sends.
    overlay_log, simulate_log = folder / "overlay.log", folder / "simulate.log"
    with open(overlay_log, "w") as out:
        writer = subprocess.Popen(  # type: ignore[call-overload]
            _broker("simulate", "KZ-SW", "RU-SW", "--routing-overlay", "local.yaml"),
            stdout=out, stderr=subprocess.STDOUT, **run,
        )  # fmt: skip
        _wait_for_line(overlay_log, "listening RU-SW")
        writer.terminate()
        writer.wait(timeout=30)
    with open(folder / "serve.log", "w") as serve_out, open(simulate_log, "w") as sim_out:
        server = subprocess.Popen(  # type: ignore[call-overload]
            _broker("serve", "--routing", "local.yaml", "--create-store"),
            stdout=serve_out, stderr=subprocess.STDOUT, **run,
        )  # fmt: skip
        simulator = None
        try:
            _wait_ready(admin, server)
            # Same ports as the overlay: the simulator listens where local.yaml points.
            ports = [
                line.rsplit(":", 1)[1].split("/", 1)[0]
                for line in overlay_log.read_text().splitlines()
                if line.startswith("listening")
            ]
            simulator = subprocess.Popen(  # type: ignore[call-overload]
                _broker(
                    "simulate", "KZ-SW", "RU-SW", "--send", "5", "--ports", ",".join(ports),
                ),
                stdout=sim_out, stderr=subprocess.STDOUT, **run,
            )  # fmt: skip
            _wait_for_line(simulate_log, "sent KZ-SW HTTP 202")
            assert _wait_for_line(simulate_log, "received RU-SW urn:uuid:").endswith(" verified")
            assert _wait_for_line(simulate_log, "received KZ-SW urn:uuid:").endswith(" verified")
        finally:
            for process in (simulator, server):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=30)
    assert "Traceback" not in simulate_log.read_text()
