"""`broker simulate PARTICIPANT…`: simulated single windows as a process of their own.

With `broker serve` on a routing.yaml whose endpoints point at them (`--routing-overlay`
writes one), two terminals make a complete local exchange. Each window is a TLS inbox with the
participant's development server certificate (`<certs>/participants/<ID>/`), that demands the
gateway's client certificate and answers like a real inbox:
- it verifies both signatures of every delivery (the sender's against the trusted CAs, the
  gateway's against `certs/gateway/ca.pem`) and answers 200, or 400 with the reason;
- it keeps the pushed receipts and verifies them (signed by a certificate of
  certs/gateway/ca.pem);
- with `--answer`, it answers each verified message with a signed P.MSG.PRS signal back through
  the gateway;
- with `--send RATE`, each simulated participant submits RATE goods declarations a second to
  the gateway, addressed in turn to the other member states (their document says SIMULATED
  TRAFFIC).

The output is one line per event, for people and scripts alike:

    listening KZ-SW https://127.0.0.1:40121/eaeu/inbox
    received RU-SW urn:uuid:… verified
    refused RU-SW urn:uuid:… the countersignature is not by …
    receipt KZ-SW Delivered verified
    status KZ-SW received 3 verified 3 refused 0 receipts 2
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import aiohttp
import yaml

from broker.compose import Addressing, compose_envelope
from broker.errors import ConfigError, UsageError
from broker.gost_pki import signing_identity
from broker.routing.table import RoutingTable
from broker.send import send
from broker.simulator import Received, SingleWindow
from broker.tasks import TaskGroup


def overlay(text: str, urls: dict[str, tuple[str, str]]) -> str:
    """``text`` (a routing.yaml) with the ``endpoint`` and ``receipts`` of each participant in
    ``urls`` (id → (endpoint, receipts)) replaced, or added, and nothing else changed:
    comments, order and layout stay."""
    root = yaml.compose(text)
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError("the routing table is not a mapping")
    participants = next(
        (v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "participants"),
        None,
    )
    if not isinstance(participants, yaml.MappingNode):
        raise ConfigError("the routing table has no participants mapping")
    edits: list[tuple[int, int, str]] = []
    for key, node in participants.value:
        if key.value not in urls or not isinstance(node, yaml.MappingNode):
            continue
        endpoint, receipts = urls[key.value]
        fields = {k.value: (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
        if "endpoint" not in fields:
            raise ConfigError(f"participant {key.value} has no endpoint")
        end_key, end_value = fields["endpoint"]
        edits.append((end_value.start_mark.index, end_value.end_mark.index, f'"{endpoint}"'))
        if "receipts" in fields:
            value = fields["receipts"][1]
            edits.append((value.start_mark.index, value.end_mark.index, f'"{receipts}"'))
        elif node.flow_style:
            at = end_value.end_mark.index
            edits.append((at, at, f', receipts: "{receipts}"'))
        else:
            at = end_value.end_mark.index
            indent = " " * end_key.start_mark.column
            edits.append((at, at, f'\n{indent}receipts: "{receipts}"'))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def _say(line: str) -> None:
    print(line, flush=True)


def _report_delivery(participant: str) -> Callable[[str, Received], None]:
    def received(message_id: str, found: Received) -> None:
        verdict = "verified" if found.verified else found.reason
        _say(f"{'received' if found.verified else 'refused'} {participant} {message_id} {verdict}")

    return received


def _report_receipt(participant: str) -> Callable[[str, str], None]:
    def receipt(kind: str, verdict: str) -> None:
        _say(f"receipt {participant} {kind} {verdict}")

    return receipt


def _traffic(table: RoutingTable, sender: str, number: int) -> bytes:
    """The ``number``-th simulated goods declaration from ``sender``, addressed in turn to
    each participant of another country (unsigned)."""
    own = table.participants[sender].country
    others = sorted({p.country for p in table.participants.values()} - {own, "EEC"})
    to = others[number % len(others)]
    document = (resources.files("broker.samples") / "goods-declaration.xml").read_bytes()
    return compose_envelope(
        document,
        Addressing(
            to=f"EAEU://{to}/CP/P.CC.01/P.CC.01.ACT.002",
            reply_to=f"EAEU://{own}/CP/P.CC.01/P.CC.01.ACT.001",
            action="int://CP/P.CC.01/1.0.0/P.CC.01.PRC.001/P.CC.01.TRN.001/P.CC.01.MSG.001",
        ),
    )


async def _send_traffic(
    table: RoutingTable, sender: str, certs: Path, gateway: str, rate: float, stop: asyncio.Event
) -> None:
    """Submit ``rate`` messages a second as ``sender`` until ``stop``, one line each."""
    folder = certs / "participants" / sender
    number = 0
    while not stop.is_set():
        try:
            result = await send(
                _traffic(table, sender, number),
                gateway=gateway,
                key=folder / "key.pem",
                cert=folder / "cert.pem",
                signing=signing_identity(folder),
                gateway_ca=certs / "gateway" / "ca.pem",
            )
            _say(f"sent {sender} HTTP {result.status}")
        except (aiohttp.ClientError, OSError, ConfigError) as exc:
            _say(f"sent {sender} failed: {type(exc).__name__}: {exc}")
        number += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1 / rate)


async def run(
    participants: Sequence[str],
    *,
    table: RoutingTable,
    routing: Path,
    certs: Path,
    overlay_path: Path | None,
    gateway: str | None,
    answer: bool,
    status_every: float,
    send_rate: float | None = None,
    ports: Sequence[int] | None = None,
) -> int:
    unknown = [p for p in participants if p not in table.participants]
    if unknown:
        raise UsageError(f"{', '.join(unknown)}: not a participant of {routing}")
    for pid in participants:
        folder = certs / "participants" / pid
        if not (folder / "key.pem").is_file():
            raise ConfigError(
                f"{folder}: no development identity (run `broker certs demo --certs {certs}`)"
            )
    if (answer or send_rate) and not gateway:
        raise UsageError("--answer and --send need --gateway, the gateway's intake URL")
    if ports is not None and len(ports) != len(participants):
        raise UsageError(f"--ports gives {len(ports)} port(s) for {len(participants)} participants")
    windows = [
        SingleWindow(
            pid,
            certs,
            strict=True,
            answer_all=answer,
            gateway=gateway,
            port=ports[number] if ports else 0,
        )
        for number, pid in enumerate(participants)
    ]
    for window in windows:
        window.on_received = _report_delivery(window.participant)
        window.on_receipt = _report_receipt(window.participant)
        await window.start()
    if overlay_path is not None:
        urls = {w.participant: (w.endpoint, w.receipts_url) for w in windows}
        overlay_path.write_text(overlay(routing.read_text(encoding="utf-8"), urls), "utf-8")
        _say(f"overlay {overlay_path}")
    for window in windows:
        _say(f"listening {window.participant} {window.endpoint}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    senders = TaskGroup()
    if send_rate and gateway:
        for pid in participants:
            senders.start(_send_traffic(table, pid, certs, gateway, send_rate, stop), f"send-{pid}")
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), status_every)
            for window in windows:
                verified = sum(r.verified for r in window.inbox)
                _say(
                    f"status {window.participant} received {len(window.inbox)} verified "
                    f"{verified} refused {len(window.inbox) - verified} receipts "
                    f"{len(window.receipts)}"
                )
    finally:
        stop.set()
        await senders.drain(timeout=10)
        for window in windows:
            await window.stop()
    sys.stdout.flush()
    return 0
