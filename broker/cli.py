"""``broker``: one subcommand per user task (SPEC §11).

Exit status: 0 success, 1 a negative verdict (invalid, untrusted, tampered), 2 a usage or
environment error. Every command that needs them takes ``--routing``, ``--certs``, ``--xsd`` and
``--store``, each also read from ``BROKER_ROUTING``, ``BROKER_CERTS``, ``BROKER_XSD``,
``BROKER_STORE``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from broker.errors import ConfigError, GatewayError, UsageError, plain

if TYPE_CHECKING:
    from broker.routing.table import RoutingTable

EXIT_OK, EXIT_NEGATIVE, EXIT_USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace], int]


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (what and where, exit 2); ``--help`` shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _port_list(text: str) -> list[int]:
    try:
        ports = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of ports like 8501,8502"
        ) from None
    if not all(0 < port < 65536 for port in ports):
        raise argparse.ArgumentTypeError(f"{text!r}: ports go from 1 to 65535")
    return ports


def positive_int(text: str) -> int:
    """A count: a whole number ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be 1 or more")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return value


def host_port(text: str) -> str:
    """``HOST:PORT`` with a port from 0 to 65535 (``[v6]:PORT`` for IPv6)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not HOST:PORT with a port from 0 to 65535 (e.g. 127.0.0.1:8443)"
        )
    return text


def utc_time(text: str) -> str:
    """A time as the store writes it (UTC): YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.sss]][Z]."""
    import datetime as dt

    try:
        parsed = dt.datetime.fromisoformat(text.removesuffix("Z"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a UTC time (YYYY-MM-DD or YYYY-MM-DDThh:mm:ss)"
        ) from None
    if parsed.tzinfo is not None and parsed.utcoffset() != dt.timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r}: give the time in UTC (…Z)")
    from broker import clock

    return clock.format_time(parsed.replace(tzinfo=dt.UTC))


def readable_file(text: str) -> Path:
    """A file argument: it must exist and be readable, else a usage error naming it."""
    path = Path(text)
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except IsADirectoryError as exc:
        raise argparse.ArgumentTypeError(f"{text}: is a folder, not a file") from exc
    except FileNotFoundError as exc:
        raise argparse.ArgumentTypeError(f"{text}: no such file") from exc
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{text}: cannot read: {exc.strerror}") from exc
    return path


def common_options() -> _Parser:
    """The options every command that reads configuration shares (SPEC §11)."""
    parent = _Parser(add_help=False)
    parent.add_argument(
        "--routing",
        type=Path,
        default=Path(_env("BROKER_ROUTING", "routing.yaml")),
        help="routing table (env BROKER_ROUTING; default routing.yaml)",
    )
    parent.add_argument(
        "--certs",
        type=Path,
        default=Path(_env("BROKER_CERTS", "certs")),
        help="certificate folder (env BROKER_CERTS; default certs)",
    )
    parent.add_argument(
        "--xsd",
        type=Path,
        default=Path(_env("BROKER_XSD", "xsd")),
        help="schema folder holding catalog.yaml (env BROKER_XSD; default xsd)",
    )
    parent.add_argument(
        "--store",
        default=_env("BROKER_STORE", "sqlite:///var/broker.sqlite3"),
        help="store URL (env BROKER_STORE; default sqlite:///var/broker.sqlite3)",
    )
    return parent


def participant_options() -> _Parser:
    """How a member-state system reaches the gateway: its key and certificate (mTLS, and the
    signature of `send`), the gateway URL and the CA that vouches for the gateway."""
    parent = _Parser(add_help=False)
    parent.add_argument(
        "--key",
        type=readable_file,
        required=True,
        help="participant private key (PEM): the TLS client identity, and the signing key of send",
    )
    parent.add_argument(
        "--cert", type=readable_file, required=True, help="participant certificate (PEM)"
    )
    parent.add_argument(
        "--gateway",
        default=_env("BROKER_GATEWAY", "https://127.0.0.1:8443"),
        help="gateway base URL (env BROKER_GATEWAY; default https://127.0.0.1:8443)",
    )
    parent.add_argument(
        "--gateway-ca",
        type=readable_file,
        help="CA that issued the gateway's certificates (default: <certs>/gateway/ca.pem)",
    )
    return parent


def _cmd_xsd_check(args: argparse.Namespace) -> int:
    from broker.schemas import Catalog, check_with_xmlschema, read_catalog

    entries = read_catalog(args.xsd)
    failed = 0
    for entry in entries:
        try:
            Catalog(args.xsd, (entry,))
            check_with_xmlschema(args.xsd, entry)
        except ConfigError as exc:
            failed += 1
            print(f"FAIL {entry.code}: {exc.message}")
        else:
            print(f"ok   {entry.code}  {entry.namespace}")
    print(f"{len(entries) - failed} of {len(entries)} document schemas compile")
    return EXIT_NEGATIVE if failed else EXIT_OK


def _cmd_xsd_import(args: argparse.Namespace) -> int:
    from broker.errors import ImportRefused
    from broker.xsdimport import import_schemas

    try:
        added = import_schemas(args.folders, args.xsd, args.code)
    except ImportRefused as exc:
        print(f"broker: xsd import refused, nothing changed: {exc.message}", file=sys.stderr)
        return EXIT_NEGATIVE
    for entry in added:
        print(entry.line())
    if not added:
        print("nothing to add: every document schema is already in the catalog")
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    from broker.schemas import Catalog
    from broker.validation import check_document

    catalog = Catalog.load(args.xsd)
    valid = invalid = 0
    for path in args.files:
        try:
            validated = check_document(path.read_bytes(), catalog)
        except GatewayError as exc:
            invalid += 1
            if len(exc.details) > 1:  # each error once, under a count
                print(f"{path}: {exc.code}: {len(exc.details)} errors")
                for detail in exc.details:
                    print(f"    {detail}")
            else:
                print(f"{path}: {exc.code}: {exc.message}")
        else:
            valid += 1
            env = validated.envelope
            print(f"{path}: OK {validated.entry.code} {env.message_id.value} → {env.to.value}")
    if len(args.files) > 1:
        print(f"{len(args.files)} file(s): {valid} valid, {invalid} invalid")
    return EXIT_NEGATIVE if invalid else EXIT_OK


def _cmd_routing_check(args: argparse.Namespace) -> int:
    from broker.routing.load import load_routing

    path: Path = args.file or args.routing
    result = load_routing(path)
    for problem in result.problems:
        print(problem)
    if result.table is None:
        print(f"{path}: {len(result.errors)} error(s), {len(result.warnings)} warning(s)")
        return EXIT_NEGATIVE
    table = result.table
    print(
        f"{path}: ok — {len(table.participants)} participants, {len(table.rules)} rules, "
        f"{len(result.warnings)} warning(s), sha256 {table.digest}"
    )
    return EXIT_OK


def _routing_table(path: Path) -> RoutingTable | None:
    """The table at ``path``, or None after printing its errors (a usage error for callers)."""
    from broker.routing.load import load_routing

    result = load_routing(path)
    for problem in result.errors:
        print(problem, file=sys.stderr)
    return result.table


def _cmd_routing_explain(args: argparse.Namespace) -> int:
    from broker import xmlsafe
    from broker.envelope import parse_envelope
    from broker.errors import RefusalError
    from broker.routing.explain import explain
    from broker.routing.table import RouteFacts

    table = _routing_table(args.routing)
    if table is None:
        return EXIT_USAGE
    try:
        envelope = parse_envelope(xmlsafe.parse(args.message.read_bytes()))
    except OSError as exc:
        print(f"{args.message}: cannot read: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except RefusalError as exc:
        print(f"{args.message}: {exc}")
        return EXIT_NEGATIVE
    sender = args.sender
    how = "given with --from"
    if sender is not None and sender not in table.participants:
        raise UsageError(
            f"--from {sender}: no such participant in {args.routing} "
            f"({', '.join(sorted(table.participants))})"
        )
    if sender is None:
        guessed = table.participant_for_address(envelope.reply_address.text)
        if guessed is None:
            print(
                f"no participant serves ReplyTo {envelope.reply_address.text}; name the "
                "sender with --from",
                file=sys.stderr,
            )
            return EXIT_USAGE
        sender, how = guessed.id, "the participant serving wsa:ReplyTo"
    facts = RouteFacts(
        envelope.action.value, envelope.document.code or "", sender, envelope.to.value
    )
    print(f"message   {envelope.message_id.value}")
    print(f"action    {facts.action}")
    print(f"document  {facts.document or '(no EDocCode)'}")
    print(f"from      {facts.sender} ({how})")
    print(f"to        {facts.to}")
    print(f"table     {table.source} sha256 {table.digest}")
    explanation = explain(table, facts)
    for verdict in explanation.verdicts:
        rule = verdict.rule
        answer = "MATCHES" if verdict.mismatch is None else f"no — {verdict.mismatch}"
        print(f"  rule {rule.name!r} (line {rule.line}): {answer}")
    if explanation.refusal is not None:
        denied = explanation.refusal.startswith("ROUTE_DENIED")
        print(f"{'rejected' if denied else 'refused'}: {explanation.refusal}")
        return EXIT_NEGATIVE
    print("deliver to:")
    for participant in explanation.destinations:
        print(f"  {participant.id:<10} {participant.endpoint}")
    assert explanation.rule is not None
    print(f"retry     {explanation.rule.retry.describe()}")
    return EXIT_OK


def _cmd_certs_demo(args: argparse.Namespace) -> int:
    from broker.pki import create_demo_pki

    table = _routing_table(args.routing)
    if table is None:
        return EXIT_USAGE
    out: Path = args.out or args.certs
    participants = {p.id: p.country for p in table.participants.values()}
    made = create_demo_pki(out, participants, gateway_key=args.gateway_key, force=args.force)
    if args.gost:
        from broker.gost_pki import create_gost_identities

        unknown = set(args.gost) - set(participants.values())
        if unknown:
            raise UsageError(
                f"--gost {', '.join(sorted(unknown))}: no participant of routing.yaml is there"
            )
        made += create_gost_identities(out, participants, set(args.gost), force=args.force)
    for line in made:
        print(f"created {out / line}")
    print(
        f"{out}: development PKI for {len(participants)} participants "
        f"({'nothing new' if not made else f'{len(made)} item(s) created'}); "
        "never use these keys in production"
    )
    return EXIT_OK


def _cmd_sign(args: argparse.Namespace) -> int:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from broker import xmlsafe
    from broker.envelope import parse_envelope
    from broker.errors import RefusalError
    from broker.signing.sign import load_private_key, sign_envelope

    try:
        key = load_private_key(args.key.read_bytes())
        cert = x509.load_pem_x509_certificate(args.cert.read_bytes())
        data = args.envelope.read_bytes()
    except (OSError, ValueError) as exc:
        print(f"broker sign: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        envelope = parse_envelope(xmlsafe.parse(data))
        signed = sign_envelope(envelope, key, cert.public_bytes(serialization.Encoding.DER))
    except RefusalError as exc:
        print(f"{args.envelope}: {exc}", file=sys.stderr)
        return EXIT_NEGATIVE
    except ValueError as exc:
        print(f"{args.envelope}: {exc}", file=sys.stderr)
        return EXIT_NEGATIVE
    if args.output:
        args.output.write_bytes(signed)
    else:
        sys.stdout.buffer.write(signed)
    return EXIT_OK


def _verify_report(path: Path, data: bytes, trusted: list[Any], trust_path: Path) -> int:
    """`broker verify report.xml`: a conformance report's signature and what it says."""
    from broker.conformance.report import verify_report

    try:
        checked = verify_report(data, trusted)
    except GatewayError as exc:
        print(f"{path}: NOT VALID: {exc} (trusted: {trust_path})")
        return EXIT_NEGATIVE
    print(f"conformance report of {checked.participant}: {checked.verdict}")
    for criterion, verdict, reason in checked.criteria:
        print(f"  {verdict:<4}  {criterion:<32} {reason}")
    print(f"signed by     {checked.signer.subject.rfc4514_string()}")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from cryptography import x509

    from broker.errors import CertificateUntrusted
    from broker.receipts import check_message_digest, describe, verify_receipt

    trust_path: Path = args.trust or args.certs / "gateway" / "ca.pem"
    try:
        trusted = x509.load_pem_x509_certificates(trust_path.read_bytes())
        data = args.receipt.read_bytes()
        message = args.message.read_bytes() if args.message else None
    except OSError as exc:
        raise ConfigError(f"{exc.filename}: cannot read: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"{trust_path}: not a PEM CA certificate: {exc}") from exc
    if b"urn:eaeu:gateway:conformance:v1" in data[:400]:
        return _verify_report(args.receipt, data, trusted, trust_path)
    try:
        checked = verify_receipt(data, trusted)
    except CertificateUntrusted as exc:
        print(
            f"{args.receipt}: NOT VALID: {exc} — is {trust_path} the CA of the gateway that "
            "issued this receipt? (--trust CA.pem)"
        )
        return EXIT_NEGATIVE
    except GatewayError as exc:
        print(f"{args.receipt}: NOT VALID: {exc}")
        return EXIT_NEGATIVE
    for line in describe(checked.receipt):
        print(line)
    print(f"signed by     {checked.signer.subject.rfc4514_string()}")
    if message is not None:
        if not check_message_digest(checked.receipt, message):
            print(
                f"{args.receipt}: NOT VALID: {args.message} is not the message this receipt "
                "attests (digest differs)"
            )
            return EXIT_NEGATIVE
        print(f"message       {args.message} matches the digest")
    print(f"{args.receipt}: valid, signature and chain to {trust_path} hold")
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from broker import logs
    from broker.delivery.breaker import BreakerPolicy
    from broker.delivery.worker import WorkerSettings
    from broker.http.intake import IntakeSettings
    from broker.server import ServeSettings, serve

    logs.configure()
    settings = ServeSettings(
        routing=args.routing,
        certs=args.certs,
        xsd=args.xsd,
        store=args.store,
        listen=args.listen,
        admin=args.admin,
        insecure_http=args.insecure_http,
        worker=WorkerSettings(
            concurrency=args.deliveries,
            lease=args.lease,
            breaker=BreakerPolicy(per_destination=args.per_destination),
        ),
        audit=not args.no_audit,
        admin_token=args.admin_token,
        intake=IntakeSettings(
            max_in_flight=args.max_in_flight,
            insecure=args.insecure_http,
            body_budget=args.body_budget,
            per_participant=args.per_participant,
            min_rate=args.min_rate,
            keepalive_timeout=args.keepalive_timeout,
            handshake_timeout=args.handshake_timeout,
            header_timeout=args.header_timeout,
            max_connections=args.max_connections,
            per_address=args.max_connections_per_address or 0,
        ),
        reuse_port=args.reuse_port,
        purge_every=args.purge_every,
        create_store=args.create_store,
        admin_hosts=tuple(args.admin_hosts),
    )
    try:
        return asyncio.run(serve(settings))
    except OSError as exc:
        print(f"broker serve: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _signed_path(args: argparse.Namespace) -> Path:
    signed: Path = args.signed_out or args.file.with_name(f"{args.file.stem}.signed.xml")
    return signed


def _cmd_send(args: argparse.Namespace) -> int:
    import asyncio

    import aiohttp
    from cryptography import x509

    from broker.receipts import verify_receipt
    from broker.send import numbered, send

    gateway_ca: Path = args.gateway_ca or args.certs / "gateway" / "ca.pem"
    signed_path = _signed_path(args)
    if args.resend:
        if not signed_path.is_file():
            raise ConfigError(
                f"{signed_path}: no saved signed envelope to resend (send {args.file} once "
                "first, or give it with --signed-out)"
            )
        data = signed_path.read_bytes()
    else:
        data = args.file.read_bytes()
    try:
        signing = None
        if args.signing_key or args.signing_cert:
            if not (args.signing_key and args.signing_cert):
                raise UsageError("--signing-key and --signing-cert go together")
            signing = (args.signing_key, args.signing_cert)
        result = asyncio.run(
            send(
                data,
                gateway=args.gateway,
                key=args.key,
                cert=args.cert,
                gateway_ca=gateway_ca,
                signing=signing,
            )
        )
    except aiohttp.ClientError as exc:
        raise ConfigError(f"cannot reach the gateway at {args.gateway}: {plain(exc)}") from exc
    except ConfigError:
        raise
    except GatewayError as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return EXIT_NEGATIVE
    except ValueError as exc:  # not an envelope, or a key that is not RSA/EC
        raise UsageError(f"{args.file} or {args.key}: {exc}") from exc
    if not args.resend:
        # Keep exactly what was sent: `--resend` submits these bytes again, and
        # `broker verify RECEIPT --message` ties the receipt to them.
        signed_path.write_bytes(result.signed)
    if not result.body.lstrip().startswith(b"<"):
        print(f"HTTP {result.status}: {result.body.decode('utf-8', 'replace').strip()}")
        return EXIT_NEGATIVE
    out = numbered(args.receipt or args.file.with_name(f"{args.file.stem}.receipt.xml"))
    out.write_bytes(result.body)
    try:
        checked = verify_receipt(
            result.body, x509.load_pem_x509_certificates(gateway_ca.read_bytes())
        )
    except GatewayError as exc:
        print(f"HTTP {result.status}: the receipt does not verify: {exc}")
        return EXIT_NEGATIVE
    receipt = checked.receipt
    print(
        f"HTTP {result.status}: {receipt.kind} {receipt.message_id} → "
        f"{', '.join(receipt.destinations) or '-'} (receipt saved to {out}, signed envelope "
        f"{signed_path})"
    )
    for code, text in receipt.errors:
        print(f"  {code}: {text}")
    return EXIT_OK if receipt.kind == "Accepted" else EXIT_NEGATIVE


def _as_participant(args: argparse.Namespace, path: str) -> tuple[int, bytes]:
    import asyncio

    import aiohttp

    from broker.send import fetch

    gateway_ca: Path = args.gateway_ca or args.certs / "gateway" / "ca.pem"
    try:
        return asyncio.run(
            fetch(path, gateway=args.gateway, key=args.key, cert=args.cert, gateway_ca=gateway_ca)
        )
    except aiohttp.ClientError as exc:
        raise ConfigError(f"cannot reach the gateway at {args.gateway}: {plain(exc)}") from exc


def _bare_id(text: str) -> str:
    return text.removeprefix("urn:uuid:")


def _cmd_receipts_get(args: argparse.Namespace) -> int:
    status, body = _as_participant(args, f"/v1/receipts/{_bare_id(args.receipt_id)}")
    if status != 200:
        print(f"{args.receipt_id}: HTTP {status}: no such receipt of yours", file=sys.stderr)
        return EXIT_NEGATIVE
    if args.output:
        args.output.write_bytes(body)
        print(f"receipt saved to {args.output}")
    else:
        sys.stdout.write(body.decode("utf-8"))
    return EXIT_OK


def _cmd_messages_status(args: argparse.Namespace) -> int:
    import json

    status, body = _as_participant(args, f"/v1/messages/{_bare_id(args.message_id)}")
    if status != 200:
        print(f"{args.message_id}: HTTP {status}: no such message of yours", file=sys.stderr)
        return EXIT_NEGATIVE
    print(json.dumps(json.loads(body), indent=2, ensure_ascii=False))
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from broker.demo import run_demo

    logging.basicConfig(level=logging.ERROR)
    return asyncio.run(run_demo(args.out, args.xsd, keep=args.keep))


def _cmd_simulate(args: argparse.Namespace) -> int:
    import asyncio

    from broker import simulate

    table = _routing_table(args.routing)
    if table is None:
        raise UsageError(f"{args.routing}: the routing table has errors (see above)")
    return asyncio.run(
        simulate.run(
            args.participants,
            table=table,
            routing=args.routing,
            certs=args.certs,
            overlay_path=args.routing_overlay,
            gateway=args.gateway,
            answer=args.answer,
            status_every=args.status_every,
            send_rate=args.send,
            ports=args.ports,
        )
    )


def _cmd_conformance_inbox(args: argparse.Namespace) -> int:
    import asyncio

    from broker.audit import Auditor
    from broker.conformance import inbox, report
    from broker.conformance.criteria import Evaluation
    from broker.operator import operator_name
    from broker.signing.trust import GatewayIdentity
    from broker.store import open_store

    table = _routing_table(args.routing)
    if table is None:
        raise UsageError(f"{args.routing}: the routing table has errors (see above)")
    prober = inbox.prober_for(
        table,
        args.participant,
        args.url,
        args.certs,
        args.xsd,
        sender_key=args.sender_key,
        sender_cert=args.sender_cert,
        timeout=args.timeout,
    )
    gateway = GatewayIdentity.load(args.certs)
    store = open_store(args.store, Auditor(gateway))

    async def run() -> Evaluation:
        # Every probe is audited in the gateway's chain: open the store before probing.
        await store.open()
        try:
            evaluated = await inbox.evaluate(prober)
            await store.audit(inbox.audit_events(evaluated, f"{operator_name()} (conformance)"))
            return evaluated
        finally:
            await store.close()

    evaluated = asyncio.run(run())
    for item in evaluated.results:
        print(f"{item.verdict:<4}  {item.criterion.id:<32} {item.reason}")
    paths = report.write(evaluated, args.report, gateway)
    print(f"report: {', '.join(str(p) for p in paths)}")
    return EXIT_NEGATIVE if evaluated.failed else EXIT_OK


def _cmd_conformance_sender(args: argparse.Namespace) -> int:
    import asyncio

    from broker import clock
    from broker.conformance import report, sender
    from broker.signing.trust import GatewayIdentity
    from broker.store import open_store

    since = clock.parse_time(args.since).timestamp() if args.since else 0.0
    store = open_store(args.store)

    async def run() -> list[Any]:
        await store.open()
        try:
            return await store.submissions(args.participant, since)
        finally:
            await store.close()

    submissions = asyncio.run(run())
    evaluated = sender.evaluate(args.participant, submissions, args.since or "the start")
    for item in evaluated.results:
        print(f"{item.verdict:<4}  {item.criterion.id:<32} {item.reason}")
    paths = report.write(evaluated, args.report, GatewayIdentity.load(args.certs))
    print(f"report: {', '.join(str(p) for p in paths)}")
    return EXIT_NEGATIVE if evaluated.failed else EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    import asyncio
    import datetime as dt

    from broker import clock, report
    from broker.store import open_store

    now = clock.now()
    since = args.since or clock.format_time(now - dt.timedelta(hours=24))
    until = args.until or clock.format_time(now)
    store = open_store(args.store)

    async def run() -> list[Any]:
        await store.open()
        try:
            # The SVG draws one cell per sender and destination, its percentiles over all
            # the processes; the CSV has a row per process.
            return await store.matrix(
                since, until, args.process, merge_processes=args.format == "svg"
            )
        finally:
            await store.close()

    rows = asyncio.run(run())
    title = f"EAEU exchange {since} to {until}" + (f", {args.process}" if args.process else "")
    text = report.as_csv(rows) if args.format == "csv" else report.as_svg(rows, title)
    if args.output:
        args.output.write_text(text, "utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    import tempfile

    from broker.benchmark import run_bench

    if args.store_given and args.store.startswith("sqlite:///"):
        given = Path(args.store.removeprefix("sqlite:///"))
        if not given.exists():
            raise ConfigError(f"no SQLite store at {given}: check --store / BROKER_STORE")
    if args.console:
        from broker.benchmark_console import run_console_bench

        with tempfile.TemporaryDirectory(prefix="broker-bench-") as folder:
            lines = run_console_bench(
                args.messages or 1_000_000, args.store if args.store_given else None, Path(folder)
            )
        for line in lines:
            print(line)
        return EXIT_OK
    args.messages = args.messages or 2000
    with tempfile.TemporaryDirectory(prefix="broker-bench-") as folder:
        report = run_bench(
            messages=args.messages,
            concurrency=args.concurrency,
            processes=args.processes,
            store=args.store if args.store_given else None,
            xsd=args.xsd,
            folder=Path(folder),
            audit=not args.no_audit,
            use_gost=args.gost,
        )
    for line in report.lines():
        print(line)
    return EXIT_OK if report.accepted == args.messages else EXIT_NEGATIVE


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    import asyncio

    from broker import operator

    try:
        key = operator.gateway_public_key(args.certs, args.cert)
        check = (
            operator.verify_export(args.file, key)
            if args.file
            else asyncio.run(operator.audit_verify(args.store, key))
        )
    except (OSError, ValueError) as exc:
        print(f"broker audit verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if check.problem is not None:
        print(f"audit log TAMPERED: {check.problem} (after {check.entries - 1} intact entries)")
        return EXIT_NEGATIVE
    held = "chain and signatures hold" if key is not None else "the hash chain holds"
    print(f"audit log intact: {check.entries} entries, {held}; head sha256 {check.head}")
    if key is None:
        print(
            f"the entries' signatures were NOT checked: no gateway certificate at "
            f"{args.certs / 'gateway' / 'cert.pem'}; check them with --cert GATEWAY-CERT.pem "
            "(or --certs DIR holding gateway/cert.pem)"
        )
    return EXIT_OK


def _cmd_audit_export(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from broker import operator

    data = asyncio.run(operator.audit_export(args.store, args.first, args.last))
    text = json.dumps(data, indent=1, ensure_ascii=False)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        print(text)
    return EXIT_OK


def _cmd_messages(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from broker import operator

    if args.messages_command == "list":
        views = asyncio.run(
            operator.list_messages(args.store, args.state, args.sender, args.since, args.limit)
        )
        rows = [
            (
                v.accepted_at,
                v.state,
                v.sender,
                v.message_id,
                v.route,
                ", ".join(f"{d.participant}:{d.state}" for d in v.destinations),
            )
            for v in views
        ]
        header = ("ACCEPTED", "STATE", "SENDER", "MESSAGE", "ROUTE", "DESTINATIONS")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
        for row in [header, *rows] if rows else []:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
        print(f"{len(views)} message(s)")
        return EXIT_OK
    message_id = f"urn:uuid:{_bare_id(args.message_id)}"
    found = asyncio.run(operator.show_message(args.store, message_id))
    if found is None:
        raise UsageError(f"{args.message_id}: no such message in the store {_shown(args.store)}")
    if args.messages_command == "show":
        print(
            json.dumps(
                {
                    **found.as_json(),
                    "state": found.state,
                    "accepted_at": found.accepted_at,
                    "bodies_purged_at": found.bodies_purged_at,
                },
                indent=2,
            )
        )
        return EXIT_OK
    count = asyncio.run(
        operator.retry_message(args.store, args.certs, message_id, args.destination)
    )
    print(f"{message_id}: {count} failed destination(s) put back to pending")
    return EXIT_OK if count else EXIT_NEGATIVE


def _shown(url: str) -> str:
    from broker.store.base import redact

    return redact(url)


def _cmd_store_backup(args: argparse.Namespace) -> int:
    from broker import operator

    pages = operator.backup_sqlite(args.store, args.output)
    print(f"backup of {args.store} written to {args.output} ({pages} pages, integrity ok)")
    return EXIT_OK


def _cmd_store_purge(args: argparse.Namespace) -> int:
    import asyncio

    from broker import operator, retention

    table = _routing_table(args.routing)
    if table is None:
        raise UsageError(f"{args.routing}: the routing table has errors (see above)")
    done = asyncio.run(operator.purge(args.store, args.certs, table, dry_run=args.dry_run))
    verb = "would purge" if args.dry_run else "purged"
    print(
        f"{verb}: bodies of {done.bodies} message(s) ({done.bytes} bytes), receipts and status "
        f"of {done.records} message(s) — {table.retention.describe()} by default"
    )
    if retention.keeps_everything(table):
        print(f"{args.routing} has no retention: everything is kept for ever")
    return EXIT_OK


def _cmd_certs_check(args: argparse.Namespace) -> int:
    from broker import operator

    lines, fine = operator.describe_certificates(args.certs)
    if not lines:
        raise UsageError(
            f"no certificates under {args.certs}: check --certs / BROKER_CERTS "
            "(`broker certs demo` makes a development PKI)"
        )
    for line in lines:
        print(line)
    print(operator.gost_status())
    print(
        f"{len(lines)} certificate(s); "
        + ("all valid for more than 30 days" if fine else "SOME NEED ATTENTION")
    )
    return EXIT_OK if fine else EXIT_NEGATIVE


def _report_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--report",
        type=Path,
        default=Path("conformance-report"),
        metavar="DIR",
        help="where report.md, report.html and report.xml go (default conformance-report)",
    )


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = _Parser(
        prog="broker",
        description="EAEU single-window gateway: validate, verify, route, store, deliver, "
        "countersign and give signed receipts for EEC Decision No. 5 exchanges. Exit status: 0 "
        "success, 1 a negative verdict, 2 a usage or environment error. Add --debug anywhere "
        "for a traceback instead of a one-line error.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    xsd = commands.add_parser("xsd", help="schema catalog tools")
    xsd_commands = xsd.add_subparsers(dest="xsd_command", required=True, metavar="ACTION")
    check = xsd_commands.add_parser(
        "check", parents=[common], help="compile every schema of xsd/catalog.yaml"
    )
    check.set_defaults(handler=_cmd_xsd_check)
    xsd_import = xsd_commands.add_parser(
        "import",
        parents=[common],
        help="add the EEC's published registry folders of XSDs to the catalog (SPEC §5)",
        description="Copy the schemas of each DIR into --xsd, add one catalog entry per document "
        "schema (EEC_R_*.xsd) and compile everything; on any error nothing changes. Exit 0 on "
        "success, 1 on an invalid or conflicting schema, 2 on an unreadable DIR.",
    )
    xsd_import.add_argument(
        "folders", nargs="+", type=Path, metavar="DIR", help="a registry folder, as published"
    )
    xsd_import.add_argument(
        "--code",
        help="the code of a document schema whose root element has no <!-- CODE: … --> comment",
    )
    xsd_import.set_defaults(handler=_cmd_xsd_import)

    validate = commands.add_parser(
        "validate",
        parents=[common],
        help="check envelopes offline (SPEC §1 and §5; signatures are not checked)",
    )
    validate.add_argument(
        "files", nargs="+", type=readable_file, metavar="FILE", help="envelopes to check"
    )
    validate.set_defaults(handler=_cmd_validate)
    routing = commands.add_parser("routing", help="routing table tools")
    routing_commands = routing.add_subparsers(
        dest="routing_command", required=True, metavar="ACTION"
    )
    routing_check = routing_commands.add_parser(
        "check", parents=[common], help="report every problem of a routing table"
    )
    routing_check.add_argument(
        "file",
        nargs="?",
        type=readable_file,
        metavar="FILE",
        help="table to check (default: --routing)",
    )
    routing_check.set_defaults(handler=_cmd_routing_check)
    explain = routing_commands.add_parser(
        "explain", parents=[common], help="show which rule routes a message, and why not the others"
    )
    explain.add_argument(
        "message", type=readable_file, metavar="MESSAGE", help="an envelope (signed or not)"
    )
    explain.add_argument(
        "--from",
        dest="sender",
        metavar="PARTICIPANT",
        help="sender id (default: the participant serving wsa:ReplyTo)",
    )
    explain.set_defaults(handler=_cmd_routing_explain)

    certs = commands.add_parser("certs", help="certificate tools")
    certs_commands = certs.add_subparsers(dest="certs_command", required=True, metavar="ACTION")
    demo_pki = certs_commands.add_parser(
        "demo",
        parents=[common],
        help="create a development PKI for the participants of routing.yaml (never production)",
    )
    demo_pki.add_argument("--out", type=Path, help="folder to fill (default: --certs)")
    demo_pki.add_argument(
        "--gateway-key",
        choices=("ec", "rsa"),
        default="ec",
        help="gateway signing key: ECDSA P-256 (default) or RSA-2048",
    )
    demo_pki.add_argument(
        "--gost",
        action="append",
        default=[],
        metavar="CC",
        help="also give country CC a GOST R 34.10-2012 CA and its participants GOST signing "
        "identities (participants/<ID>/signing/; needs libengine-gost-openssl); repeatable; "
        "default none",
    )
    demo_pki.add_argument("--force", action="store_true", help="replace existing keys")
    demo_pki.set_defaults(handler=_cmd_certs_demo)
    certs_check = certs_commands.add_parser(
        "check",
        parents=[common],
        help="list every certificate in certs/ with its validity; exit 1 if any has expired "
        "or expires within 30 days",
    )
    certs_check.set_defaults(handler=_cmd_certs_check)

    sign = commands.add_parser(
        "sign", help="add a SPEC §2 sender signature to an envelope, as a participant"
    )
    sign.add_argument(
        "--key", type=readable_file, required=True, help="participant private key (PEM)"
    )
    sign.add_argument(
        "--cert", type=readable_file, required=True, help="participant certificate (PEM)"
    )
    sign.add_argument("-o", "--output", type=Path, help="write here (default: standard output)")
    sign.add_argument(
        "envelope", type=readable_file, metavar="ENVELOPE", help="the unsigned envelope"
    )
    sign.set_defaults(handler=_cmd_sign)

    verify = commands.add_parser(
        "verify", parents=[common], help="check a receipt's signature and what it attests"
    )
    verify.add_argument(
        "receipt", type=readable_file, metavar="RECEIPT", help="a receipt of the gateway (XML)"
    )
    verify.add_argument(
        "--trust",
        type=readable_file,
        metavar="CA.pem",
        help="CA to trust (default: <certs>/gateway/ca.pem)",
    )
    verify.add_argument(
        "--message",
        type=readable_file,
        metavar="FILE",
        help="also check that the receipt attests exactly this message",
    )
    verify.set_defaults(handler=_cmd_verify)

    serve = commands.add_parser("serve", parents=[common], help="run the gateway")
    serve.add_argument(
        "--listen",
        type=host_port,
        default=_env("BROKER_LISTEN", "127.0.0.1:8443"),
        metavar="HOST:PORT",
        help="intake listener, TLS (env BROKER_LISTEN; default 127.0.0.1:8443)",
    )
    serve.add_argument(
        "--admin",
        type=host_port,
        default=_env("BROKER_ADMIN", "127.0.0.1:8081"),
        metavar="HOST:PORT",
        help="admin listener, plain HTTP (env BROKER_ADMIN; default 127.0.0.1:8081)",
    )
    serve.add_argument(
        "--admin-host",
        dest="admin_hosts",
        action="append",
        default=[h for h in _env("BROKER_ADMIN_HOSTS", "").split(",") if h],
        metavar="NAME",
        help="a host name the admin listener answers to (repeatable; env BROKER_ADMIN_HOSTS, "
        "comma-separated; default: IP literals, and localhost on loopback). Any other Host "
        "header is refused with 421, against DNS rebinding",
    )
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        default=_env("BROKER_REUSE_PORT", "") == "1",
        help="share the listeners' ports with other `broker serve` processes of the same "
        "gateway on one PostgreSQL store (SO_REUSEPORT; env BROKER_REUSE_PORT=1). Without it a "
        "port in use is an error",
    )
    serve.add_argument(
        "--create-store",
        action="store_true",
        help="create the SQLite store's folders if missing (default: the file is created only "
        "in an existing folder)",
    )
    serve.add_argument(
        "--insecure-http",
        action="store_true",
        default=_env("BROKER_INSECURE_HTTP", "") == "1",
        help="intake over plain HTTP without client certificates: local development only",
    )
    serve.add_argument(
        "--lease",
        type=positive_float,
        default=_env("BROKER_LEASE", "60"),
        metavar="SECONDS",
        help="delivery lease; a crashed process's jobs are "
        "taken over after it (env BROKER_LEASE; default 60)",
    )
    serve.add_argument(
        "--deliveries",
        type=positive_int,
        default=_env("BROKER_DELIVERIES", "32"),
        help="deliveries in flight at once (env BROKER_DELIVERIES; default 32)",
    )
    serve.add_argument(
        "--per-destination",
        type=positive_int,
        default=_env("BROKER_PER_DESTINATION", "8"),
        metavar="N",
        help="deliveries in flight to one destination at once, so that a slow or dead one "
        "cannot hold every delivery slot (env BROKER_PER_DESTINATION; default 8)",
    )
    serve.add_argument(
        "--max-in-flight",
        type=positive_int,
        default=_env("BROKER_MAX_IN_FLIGHT", "256"),
        help="intake requests in progress before 503 + Retry-After "
        "(env BROKER_MAX_IN_FLIGHT; default 256)",
    )
    serve.add_argument(
        "--body-budget",
        type=positive_int,
        default=_env("BROKER_BODY_BUDGET", str(256 * 1024 * 1024)),
        metavar="BYTES",
        help="bytes of request bodies in flight before 503 + Retry-After "
        "(env BROKER_BODY_BUDGET; default 268435456)",
    )
    serve.add_argument(
        "--per-participant",
        type=positive_int,
        default=_env("BROKER_PER_PARTICIPANT", "64"),
        help="requests in flight of one participant (its fair share) before 429 + Retry-After "
        "(env BROKER_PER_PARTICIPANT; default 64)",
    )
    serve.add_argument(
        "--min-rate",
        type=positive_int,
        default=_env("BROKER_MIN_RATE", "1024"),
        metavar="BYTES_PER_S",
        help="slowest average body rate after a 5 s grace; slower is cut with 408 "
        "(env BROKER_MIN_RATE; default 1024)",
    )
    serve.add_argument(
        "--keepalive-timeout",
        type=positive_float,
        default=_env("BROKER_KEEPALIVE_TIMEOUT", "75"),
        metavar="SECONDS",
        help="an idle connection (before its first request, or between requests) is closed "
        "(env BROKER_KEEPALIVE_TIMEOUT; default 75)",
    )
    serve.add_argument(
        "--handshake-timeout",
        type=positive_float,
        default=_env("BROKER_HANDSHAKE_TIMEOUT", "10"),
        metavar="SECONDS",
        help="a TLS handshake that takes longer is dropped "
        "(env BROKER_HANDSHAKE_TIMEOUT; default 10)",
    )
    from broker.http.listener import default_max_connections

    serve.add_argument(
        "--header-timeout",
        type=positive_float,
        default=_env("BROKER_HEADER_TIMEOUT", "30"),
        metavar="SECONDS",
        help="a connection whose first request head is not complete this long after its TLS "
        "handshake is closed (env BROKER_HEADER_TIMEOUT; default 30)",
    )
    serve.add_argument(
        "--max-connections",
        type=positive_int,
        default=_env("BROKER_MAX_CONNECTIONS", str(default_max_connections())),
        metavar="N",
        help="connections open at once, those in their TLS handshake included; beyond it a "
        "connection is closed at accept (env BROKER_MAX_CONNECTIONS; default half the open-file "
        f"limit, at most 4096: here {default_max_connections()})",
    )
    serve.add_argument(
        "--max-connections-per-address",
        type=positive_int,
        default=os.environ.get("BROKER_MAX_CONNECTIONS_PER_ADDRESS"),
        metavar="N",
        help="of which from one source address (env BROKER_MAX_CONNECTIONS_PER_ADDRESS; "
        "default a quarter of --max-connections)",
    )
    serve.add_argument(
        "--purge-every",
        type=positive_float,
        default=_env("BROKER_PURGE_EVERY", "86400"),
        metavar="SECONDS",
        help="seconds between retention purges of routing.yaml's `retention` (SPEC §6); the "
        "first runs a minute after start (env BROKER_PURGE_EVERY; default 86400, a day)",
    )
    serve.add_argument(
        "--admin-token",
        default=os.environ.get("BROKER_ADMIN_TOKEN"),
        help="operator token for /admin/*, sent as `Authorization: Bearer …`; needed to bind "
        "the admin listener beyond loopback. Prefer the env BROKER_ADMIN_TOKEN: a token on the "
        "command line is visible to every user in `ps`",
    )
    serve.add_argument(
        "--no-audit",
        action="store_true",
        help="do not keep the audit log (only to measure its cost)",
    )
    serve.set_defaults(handler=_cmd_serve)

    participant = participant_options()
    send = commands.add_parser(
        "send",
        parents=[common, participant],
        help="sign (if unsigned) and submit a message as a participant; save the receipt",
        description="Sign FILE with --key/--cert if it is unsigned and submit it over mutual TLS. "
        "The signed envelope is saved (FILE.signed.xml, or --signed-out) and the receipt too "
        "(FILE.receipt.xml; an existing receipt is never overwritten: -2, -3… are used). "
        "--resend submits the saved signed envelope again, byte for byte, which the gateway "
        "answers with the original receipt (HTTP 200) — the safe retry of SPEC §7.",
    )
    send.add_argument(
        "--receipt",
        type=Path,
        help="where to save the receipt (default: FILE.receipt.xml, numbered if it exists)",
    )
    send.add_argument(
        "--signed-out",
        type=Path,
        help="where to save (and, with --resend, read) the signed envelope "
        "(default: FILE.signed.xml)",
    )
    send.add_argument(
        "--resend",
        action="store_true",
        help="resubmit the saved signed envelope instead of signing FILE again",
    )
    send.add_argument(
        "--signing-key",
        type=readable_file,
        help="sign with this key instead of --key (a GOST signing identity beside an ECDSA "
        "TLS one: participants/<ID>/signing/key.pem)",
    )
    send.add_argument("--signing-cert", type=readable_file, help="the certificate of --signing-key")
    send.add_argument("file", type=readable_file, metavar="FILE", help="the envelope to send")
    send.set_defaults(handler=_cmd_send)

    receipts = commands.add_parser("receipts", help="receipts of the gateway, as a participant")
    receipts_commands = receipts.add_subparsers(
        dest="receipts_command", required=True, metavar="ACTION"
    )
    receipts_get = receipts_commands.add_parser(
        "get",
        parents=[common, participant],
        help="fetch one of your receipts over mTLS (GET /v1/receipts/ID)",
    )
    receipts_get.add_argument("receipt_id", metavar="ID", help="urn:uuid:… or the bare uuid")
    receipts_get.add_argument(
        "-o", "--output", type=Path, help="write here (default: standard output)"
    )
    receipts_get.set_defaults(handler=_cmd_receipts_get)

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="run a gateway and simulated single windows of KZ, RU and BY exchanging sample "
        "traffic, and summarise",
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("demo-out"),
        help="folder for the PKI, store, receipts and forwarded messages (default demo-out)",
    )
    demo.add_argument(
        "--keep",
        action="store_true",
        help="leave the gateway and the windows running after the summary, to look at the "
        "console (its address is printed); Ctrl-C stops them",
    )
    demo.set_defaults(handler=_cmd_demo)

    simulate = commands.add_parser(
        "simulate",
        parents=[common],
        help="run simulated single windows (TLS inboxes with the participants' development "
        "certificates) for a local exchange with `broker serve`",
    )
    simulate.add_argument(
        "participants", nargs="+", metavar="PARTICIPANT", help="participant ids of --routing"
    )
    simulate.add_argument(
        "--routing-overlay",
        type=Path,
        metavar="FILE",
        help="write a copy of --routing whose endpoints and receipts URLs point at these "
        "inboxes (serve it with `broker serve --routing FILE`)",
    )
    simulate.add_argument(
        "--gateway",
        default=_env("BROKER_GATEWAY", "https://127.0.0.1:8443"),
        help="gateway intake URL the answers of --answer go to (env BROKER_GATEWAY; default "
        "https://127.0.0.1:8443)",
    )
    simulate.add_argument(
        "--answer",
        action="store_true",
        help="answer each verified message with a signed P.MSG.PRS signal through the gateway",
    )
    simulate.add_argument(
        "--ports",
        type=_port_list,
        metavar="PORT,…",
        help="listen on these ports, one per participant in order (default: free ones)",
    )
    simulate.add_argument(
        "--send",
        type=positive_float,
        metavar="RATE",
        help="each participant also submits RATE simulated goods declarations a second to "
        "--gateway (default: none)",
    )
    simulate.add_argument(
        "--status-every",
        type=positive_float,
        default=10.0,
        metavar="SECONDS",
        help="print a status line per participant this often (default 10)",
    )
    simulate.set_defaults(handler=_cmd_simulate)

    conformance = commands.add_parser(
        "conformance", help="pilot evaluation of a member state's single window"
    )
    conformance_commands = conformance.add_subparsers(
        dest="conformance_command", required=True, metavar="ACTION"
    )
    inbox = conformance_commands.add_parser(
        "inbox",
        parents=[common],
        help="test a participant's inbox as the gateway meets it; score each criterion "
        "(docs/conformance.md) and write a signed report",
    )
    inbox.add_argument("participant", metavar="PARTICIPANT", help="participant id of --routing")
    inbox.add_argument(
        "--url", required=True, help="the inbox to test (usually its routing.yaml endpoint)"
    )
    inbox.add_argument(
        "--sender-key",
        type=readable_file,
        help="key of the probes' sender signature: a participant of another member state "
        "(default: a development participant from <certs>/participants/)",
    )
    inbox.add_argument("--sender-cert", type=readable_file, help="the certificate of --sender-key")
    inbox.add_argument(
        "--timeout",
        type=positive_float,
        default=40.0,
        metavar="SECONDS",
        help="how long a delivery may take (default 40)",
    )
    _report_option(inbox)
    inbox.set_defaults(handler=_cmd_conformance_inbox)
    sender = conformance_commands.add_parser(
        "sender",
        parents=[common],
        help="evaluate what a participant submitted, from the gateway's store (--store)",
    )
    sender.add_argument("participant", metavar="PARTICIPANT", help="participant id")
    sender.add_argument(
        "--since",
        type=utc_time,
        help="only submissions from this time on (RFC 3339; default: all)",
    )
    _report_option(sender)
    sender.set_defaults(handler=_cmd_conformance_sender)

    report = commands.add_parser(
        "report",
        parents=[common],
        help="the exchange matrix: messages per sender, destination and process, by state, "
        "with delivery times (CSV or SVG)",
    )
    report.add_argument("--since", type=utc_time, help="accepted from (UTC; default: 24 hours ago)")
    report.add_argument("--until", type=utc_time, help="accepted before (UTC; default: now)")
    report.add_argument("--process", help="only this process, e.g. P.TS.01 (default: all)")
    report.add_argument(
        "--format", choices=("csv", "svg"), default="csv", help="csv (default) or svg"
    )
    report.add_argument("-o", "--output", type=Path, help="write here (default: standard output)")
    report.set_defaults(handler=_cmd_report)

    bench = commands.add_parser(
        "bench",
        parents=[common],
        help="measure throughput, latency and delivery time against the per-message ceiling",
    )
    bench.add_argument(
        "--messages",
        type=positive_int,
        help="messages to send (default 2000); with --console, messages in the store "
        "(default 1,000,000)",
    )
    bench.add_argument(
        "--console",
        action="store_true",
        help="time the console's queries (matrix, strip, search) on a fresh store filled with "
        "--messages messages over 30 days; --store postgresql://… uses a temporary schema there",
    )
    bench.add_argument(
        "--concurrency", type=positive_int, default=32, help="requests in flight (default 32)"
    )
    bench.add_argument(
        "--processes", type=positive_int, default=1, help="gateway processes (default 1)"
    )
    bench.add_argument(
        "--no-audit",
        action="store_true",
        help="run the gateway without its audit log (to measure its cost)",
    )
    bench.add_argument(
        "--gost",
        action="store_true",
        help="the sender signs with GOST R 34.10-2012 (needs libengine-gost-openssl); the "
        "costs of a GOST verify and of Streebog are printed beside ECDSA's",
    )
    bench.set_defaults(handler=_cmd_bench)

    store = commands.add_parser("store", help="the gateway's store")
    store_commands = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    backup = store_commands.add_parser(
        "backup",
        parents=[common],
        help="an online, consistent copy of a SQLite store, while the gateway runs "
        "(PostgreSQL: pg_dump; docs/deploy.md)",
    )
    backup.add_argument("output", type=Path, metavar="FILE", help="the copy to write (new file)")
    backup.set_defaults(handler=_cmd_store_backup)
    purge = store_commands.add_parser(
        "purge",
        parents=[common],
        help="apply routing.yaml's retention (SPEC §6) now: empty the stored envelopes and "
        "delete the records of finished messages past their periods (audited)",
    )
    purge.add_argument(
        "--dry-run", action="store_true", help="say what would be purged; change nothing"
    )
    purge.set_defaults(handler=_cmd_store_purge)

    audit = commands.add_parser("audit", help="the tamper-evident audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    audit_verify = audit_commands.add_parser(
        "verify",
        parents=[common],
        help="recompute the chain; exit 1 naming the first entry changed, removed, inserted, "
        "reordered or forged",
    )
    audit_verify.add_argument(
        "--file", type=readable_file, help="check an exported range (broker audit export) instead"
    )
    audit_verify.add_argument(
        "--cert",
        type=readable_file,
        help="gateway certificate the entries are signed with (default: <certs>/gateway/cert.pem)",
    )
    audit_verify.set_defaults(handler=_cmd_audit_verify)
    audit_export = audit_commands.add_parser(
        "export", parents=[common], help="write entries FROM..TO with the hash before them"
    )
    audit_export.add_argument(
        "--from", dest="first", type=positive_int, default=1, help="first entry (default 1)"
    )
    audit_export.add_argument(
        "--to", dest="last", type=positive_int, help="last entry (default: the last one)"
    )
    audit_export.add_argument(
        "-o", "--output", type=Path, help="write here (default: standard output)"
    )
    audit_export.set_defaults(handler=_cmd_audit_export)

    messages = commands.add_parser("messages", help="look at and retry messages in the store")
    messages_commands = messages.add_subparsers(
        dest="messages_command", required=True, metavar="ACTION"
    )
    listing = messages_commands.add_parser("list", parents=[common], help="list messages")
    listing.add_argument(
        "--state", choices=("pending", "delivered", "failed"), help="only messages in this state"
    )
    listing.add_argument("--sender", metavar="PARTICIPANT", help="only this sender's messages")
    listing.add_argument(
        "--since",
        type=utc_time,
        metavar="TIME",
        help="accepted at or after, UTC (YYYY-MM-DD or YYYY-MM-DDThh:mm:ss)",
    )
    listing.add_argument(
        "--limit", type=positive_int, default=100, help="at most this many (default 100)"
    )
    listing.set_defaults(handler=_cmd_messages)
    show = messages_commands.add_parser(
        "show", parents=[common], help="a message: route, destinations, attempts, receipts"
    )
    show.add_argument("message_id", metavar="MESSAGEID", help="urn:uuid:… or the bare uuid")
    show.set_defaults(handler=_cmd_messages)
    retry = messages_commands.add_parser(
        "retry", parents=[common], help="put a message's Failed destinations back to pending"
    )
    retry.add_argument("message_id", metavar="MESSAGEID", help="urn:uuid:… or the bare uuid")
    retry.add_argument("--destination", metavar="PARTICIPANT", help="only this participant")
    retry.set_defaults(handler=_cmd_messages)
    status = messages_commands.add_parser(
        "status",
        parents=[common, participant],
        help="the SPEC §7 status of one of your messages, over mTLS (GET /v1/messages/ID)",
    )
    status.add_argument("message_id", metavar="MESSAGEID", help="urn:uuid:… or the bare uuid")
    status.set_defaults(handler=_cmd_messages_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    args = build_parser().parse_args(argv)
    # `bench` uses a fresh SQLite store unless a store was named explicitly.
    args.store_given = any(a.startswith("--store") for a in argv) or "BROKER_STORE" in os.environ
    handler: Handler = args.handler
    try:
        return handler(args)
    except (ConfigError, UsageError) as exc:
        if debug:
            raise
        print(f"broker: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if debug:
            raise
        print(
            f"broker: unexpected {type(exc).__name__}: {exc} (run again with --debug for the "
            "traceback, and report it)",
            file=sys.stderr,
        )
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
