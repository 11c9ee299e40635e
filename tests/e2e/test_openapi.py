"""The OpenAPI 3.1 description (SPEC §7 `/openapi.json`): served by the admin listener, equal to
docs/openapi.json and to the routes the two apps really serve; schemathesis then drives the
admin API from it against a real `broker serve`: no 500s, no answer outside the description."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from broker.http.openapi import DESCRIPTION
from tests.conftest import ROOT
from tests.e2e.conftest import Exchange
from tests.e2e.nodes import free_ports

DOCS = ROOT / "docs" / "openapi.json"
REGENERATE = (
    "python -c 'import json; from broker.http.openapi import DESCRIPTION; "
    "print(json.dumps(DESCRIPTION, indent=2, ensure_ascii=False))' > docs/openapi.json"
)


def _routes(exchange: Exchange) -> set[tuple[str, str]]:
    """The API routes of both listeners. The console's pages (/console/…) are HTML for people,
    with their addresses in docs/operations.md, not an API: /openapi.json leaves them out."""
    found = set()
    for runner in exchange.server._runners:
        for route in runner.app.router.routes():
            path = route.resource.canonical  # type: ignore[union-attr]
            # HEAD: every GET's. The console (and its icon at /favicon.ico) is a browser's,
            # documented in docs/console.md, not an API.
            console = path.startswith("/console") or path == "/favicon.ico"
            if route.method != "HEAD" and not console:
                found.add((route.method.lower(), path))
    return found


async def test_description_is_served_kept_in_docs_and_matches_the_routes(
    exchange: Exchange,
) -> None:
    """GET /openapi.json is DESCRIPTION, docs/openapi.json is the same, and every route of the
    intake and admin apps is described — no more, no fewer."""
    status, body = await exchange.admin("GET", "/openapi.json")
    assert status == 200
    served = json.loads(body)
    assert served == DESCRIPTION
    assert json.loads(DOCS.read_text(encoding="utf-8")) == served, f"regenerate: {REGENERATE}"
    described = {(m, p) for p, ops in served["paths"].items() for m in ops}
    assert described == _routes(exchange)


@pytest.fixture(scope="module")
def admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `broker serve` (its own PKI and store), for schemathesis' synchronous client."""
    folder = tmp_path_factory.mktemp("openapi")
    certs = folder / "certs"
    subprocess.run(
        [sys.executable, "-m", "broker.cli", "certs", "demo", "--out", str(certs)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    listen, admin = free_ports(2)
    log = (folder / "serve.log").open("wb")
    command = [sys.executable, "-m", "broker.cli", "serve", "--certs", str(certs)]
    command += ["--routing", str(ROOT / "routing.yaml"), "--xsd", str(ROOT / "xsd")]
    command += ["--store", f"sqlite:///{folder / 'broker.sqlite3'}"]
    command += ["--listen", f"127.0.0.1:{listen}", "--admin", f"127.0.0.1:{admin}"]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "BROKER_ADMIN_TOKEN": "schemathesis"},
    )
    url = f"http://127.0.0.1:{admin}"
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError((folder / "serve.log").read_text())
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


# Positive generation: requests the description allows, each sent with the operator token.
# (Requests it forbids — a bad limit, a missing or wrong token — are driven one by one in
# tests/e2e/test_operability.py, where the expected answer is exact.)
schema = schemathesis.openapi.from_dict(
    DESCRIPTION,
    config=schemathesis.config.SchemathesisConfig.from_dict({"generation": {"mode": "positive"}}),
).include(tag="admin")


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure here is reproducible
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_admin_api_holds_to_its_description(case: schemathesis.Case, admin_url: str) -> None:  # type: ignore[type-arg]
    """Generated requests, with the operator token, never get a 500 or an answer the
    description does not allow."""
    case.call_and_validate(base_url=admin_url, headers={"Authorization": "Bearer schemathesis"})
