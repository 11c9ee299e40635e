"""The evaluation report, three ways: report.md and report.html for people, and report.xml
for the Commission's tooling, signed by the gateway like a receipt (enveloped XML-DSig). It
verifies with `xmlsec1 --verify --trusted-pem certs/gateway/ca.pem` and with `broker verify`.

report.xml is in namespace ``urn:eaeu:gateway:conformance:v1``, root ``Report``:
- one ``Criterion`` element per criterion, with attributes ``id`` and ``verdict``
  (PASS/FAIL/INFO) and the reason as its text;
- ``Tested`` records the URL tested, whether it equals the participant's routing.yaml
  endpoint, and the SHA-256 of the server certificate met.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from lxml import etree

from broker import clock, xmlsafe
from broker.conformance.criteria import Evaluation
from broker.errors import CertificateUntrusted, SignatureInvalid
from broker.signing import xmldsig
from broker.signing.trust import ChainError, GatewayIdentity, chain_to

NS = "urn:eaeu:gateway:conformance:v1"


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


def _title(report: Evaluation) -> str:
    what = "inbox" if report.kind == "inbox" else "submissions"
    return f"Conformance of {report.participant}'s {what}"


def _markdown(report: Evaluation, issued: str) -> str:
    lines = [f"# {_title(report)}", ""]
    lines += [f"- {name}: {value}" for name, value in report.tested.items()]
    lines += [
        f"- issued: {issued}",
        f"- verdict: {'FAIL' if report.failed else 'PASS'}",
        "",
        "| criterion | verdict | reason | checks |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{r.criterion.id}` | {r.verdict} | {r.reason} | {r.criterion.spec}: "
        f"{r.criterion.description} |"
        for r in report.results
    ]
    return "\n".join(lines) + "\n"


def _html(report: Evaluation, issued: str) -> str:
    rows = "".join(
        f"<tr class='{r.verdict.lower()}'><td><code>{html.escape(r.criterion.id)}</code></td>"
        f"<td>{r.verdict}</td><td>{html.escape(r.reason)}</td>"
        f"<td>{html.escape(r.criterion.spec)}: {html.escape(r.criterion.description)}</td></tr>"
        for r in report.results
    )
    tested = "".join(
        f"<li>{html.escape(name)}: {html.escape(value)}</li>"
        for name, value in report.tested.items()
    )
    return (
        "<!doctype html><html lang='en'><meta charset='utf-8'>"
        f"<title>{html.escape(_title(report))}</title>"
        "<style>td,th{border:1px solid #999;padding:4px}.fail{background:#fdd}"
        ".pass{background:#dfd}</style>"
        f"<h1>{html.escape(_title(report))}</h1><ul>{tested}<li>issued {issued}</li></ul>"
        f"<p>Verdict <strong>{'FAIL' if report.failed else 'PASS'}</strong></p>"
        "<table><tr><th>criterion</th><th>verdict</th><th>reason</th><th>checks</th></tr>"
        f"{rows}</table></html>\n"
    )


def _xml(report: Evaluation, issued: str, gateway: GatewayIdentity) -> bytes:
    root = etree.Element(_q("Report"), nsmap={None: NS})
    etree.SubElement(root, _q("ReportID")).text = f"urn:uuid:{uuid.uuid4()}"
    etree.SubElement(root, _q("Kind")).text = report.kind
    etree.SubElement(root, _q("Participant")).text = report.participant
    etree.SubElement(root, _q("IssuedAt")).text = issued
    etree.SubElement(root, _q("Tested"), **report.tested)
    etree.SubElement(root, _q("Verdict")).text = "FAIL" if report.failed else "PASS"
    for item in report.results:
        element = etree.SubElement(
            root, _q("Criterion"), id=item.criterion.id, verdict=item.verdict
        )
        element.text = item.reason
    xmldsig.sign(root, [("", root)], gateway.key, gateway.certificate_der, enveloped=True)
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return data


def write(report: Evaluation, folder: Path, gateway: GatewayIdentity) -> list[Path]:
    """report.md, report.html and the signed report.xml in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    issued = clock.format_time(clock.now())
    paths = [folder / "report.md", folder / "report.html", folder / "report.xml"]
    paths[0].write_text(_markdown(report, issued), "utf-8")
    paths[1].write_text(_html(report, issued), "utf-8")
    paths[2].write_bytes(_xml(report, issued, gateway))
    return paths


@dataclass(frozen=True)
class CheckedReport:
    participant: str
    verdict: str
    criteria: Sequence[tuple[str, str, str]]
    """(id, verdict, reason) of each criterion."""
    signer: x509.Certificate


def verify_report(data: bytes, trusted: Sequence[x509.Certificate]) -> CheckedReport:
    """Check a report.xml's signature and its signer's chain to ``trusted`` at IssuedAt."""
    root = xmlsafe.parse(data)
    if root.tag != _q("Report"):
        raise SignatureInvalid(f"not a conformance report: root element {root.tag}")
    signatures = [c for c in root if c.tag == f"{{{xmldsig.DS}}}Signature"]
    if len(signatures) != 1 or root[len(root) - 1] is not signatures[0]:
        raise SignatureInvalid("a report holds exactly one ds:Signature, as its last child")
    xmldsig.id_index(root)
    checked = xmldsig.verify(signatures[0], {}, enveloped=True)
    issued = clock.parse_time(root.findtext(_q("IssuedAt")) or "")
    try:
        chain_to(checked.certificate, checked.chain, trusted, issued)
    except ChainError as exc:
        raise CertificateUntrusted(f"the report's signer does not chain to the CA: {exc}") from exc
    return CheckedReport(
        root.findtext(_q("Participant")) or "",
        root.findtext(_q("Verdict")) or "",
        [
            (c.get("id") or "", c.get("verdict") or "", c.text or "")
            for c in root.iter(_q("Criterion"))
        ],
        checked.certificate,
    )
