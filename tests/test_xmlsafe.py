"""The hardened XML door: the attack corpus, limits, encodings, and only our errors come out."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import xmlsafe
from broker.errors import GatewayError, MalformedXml, TooLarge


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[tuple[Path, threading.Event]]:
    """A named pipe whose writer side notices if anything ever opens it for reading."""
    path = tmp_path / "canary"
    os.mkfifo(path)
    opened = threading.Event()

    def writer() -> None:
        with open(path, "wb") as pipe:  # blocks until a reader opens the pipe
            opened.set()
            pipe.write(b"SECRET")

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    yield path, opened
    if not opened.is_set():  # release the writer ourselves
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        thread.join(timeout=2)
        os.close(fd)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback server socket: a connection from the parser would queue up on it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)
    yield server
    server.close()


def _connected(server: socket.socket) -> bool:
    try:
        conn, _ = server.accept()
    except TimeoutError:
        return False
    conn.close()
    return True


def _attacks(file_url: str, http_url: str) -> dict[str, bytes]:
    laughs = "".join(
        f'<!ENTITY l{i} "{"&l" + str(i - 1) + ";" * 1}{("&l" + str(i - 1) + ";") * 9}">'
        for i in range(1, 10)
    )
    return {
        "xxe file entity": (f'<!DOCTYPE r [<!ENTITY x SYSTEM "{file_url}">]><r>&x;</r>'.encode()),
        "xxe http entity": (f'<!DOCTYPE r [<!ENTITY x SYSTEM "{http_url}">]><r>&x;</r>'.encode()),
        "parameter entities": (
            f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{file_url}"> %p;]><r/>'.encode()
        ),
        "external DTD": f'<!DOCTYPE r SYSTEM "{http_url}"><r/>'.encode(),
        "billion laughs": (
            f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY l0 "lol">{laughs}]><r>&l9;</r>'.encode()
        ),
        "quadratic blowup": (
            b'<!DOCTYPE r [<!ENTITY a "' + b"x" * 100_000 + b'">]><r>' + b"&a;" * 50_000 + b"</r>"
        ),
        "xinclude": (
            f'<r xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="{file_url}" '
            'parse="text"/></r>'.encode()
        ),
        "xinclude http": (
            '<r xmlns:xi="http://www.w3.org/2001/XInclude">'
            f'<xi:include href="{http_url}"/></r>'.encode()
        ),
        "utf-16 xxe": (
            f'<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY x SYSTEM "{file_url}">]>'
            "<r>&x;</r>".encode("utf-16")
        ),
        "utf-16 without BOM": f'<!DOCTYPE r [<!ENTITY x SYSTEM "{file_url}">]><r>&x;</r>'.encode(
            "utf-16-le"
        ),
        "doctype after comment": (
            f'<?xml version="1.0"?><!-- hi --><!DOCTYPE r [<!ENTITY x SYSTEM "{file_url}">]>'
            "<r>&x;</r>".encode()
        ),
        "depth 10,000": b"<a>" * 10_000 + b"</a>" * 10_000,
        "100,000 attributes": (b"<r " + b" ".join(b'a%d="1"' % i for i in range(100_000)) + b"/>"),
        "not XML": b"MessageID=42; please deliver",
        "latin-1 declaration": b'<?xml version="1.0" encoding="ISO-8859-1"?><r>\xe9</r>',
        "undeclared entity": b"<r>&x;</r>",
    }


ATTACK_NAMES = list(_attacks("file:///x", "http://x/"))


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_attack_is_malformed_in_bounded_time_and_memory_without_io(
    name: str, fifo: tuple[Path, threading.Event], listener: socket.socket
) -> None:
    """Each attack gives MALFORMED_XML quickly, in little memory, reading no file, no socket."""
    path, opened = fifo
    port = listener.getsockname()[1]
    data = _attacks(path.as_uri(), f"http://127.0.0.1:{port}/evil.dtd")[name]
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(MalformedXml):
        xmlsafe.parse(data)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Generous bounds: these catch an expansion or a hang, not a slow machine.
    assert elapsed < 5.0
    assert peak < 64 * 1024 * 1024
    time.sleep(0.05)
    assert not opened.is_set(), "the parser opened a local file"
    assert not _connected(listener), "the parser opened a socket"


def test_body_over_limit_is_too_large() -> None:
    """A body larger than max_bytes is TOO_LARGE before any parsing."""
    limits = xmlsafe.XmlLimits(max_bytes=1000)
    with pytest.raises(TooLarge):
        xmlsafe.parse(b"<r>" + b"x" * 1000 + b"</r>", limits)


@pytest.mark.parametrize(
    ("data", "limits"),
    [
        (b"<a>" * 101 + b"</a>" * 101, xmlsafe.XmlLimits()),
        (b"<r>" + b"<e/>" * 10 + b"</r>", xmlsafe.XmlLimits(max_elements=10)),
        (b"<r " + b" ".join(b'a%d="1"' % i for i in range(257)) + b"/>", xmlsafe.XmlLimits()),
    ],
    ids=["depth 101", "11 elements over 10", "257 attributes"],
)
def test_limits_are_enforced(data: bytes, limits: xmlsafe.XmlLimits) -> None:
    """Depth, element and attribute limits each give MALFORMED_XML."""
    with pytest.raises(MalformedXml):
        xmlsafe.parse(data, limits)


def test_limits_allow_exactly_the_maximum() -> None:
    """Depth 100 (root counted as 1) and 256 attributes are still accepted."""
    xmlsafe.parse(b"<a>" * 100 + b"</a>" * 100)
    xmlsafe.parse(b"<r " + b" ".join(b'a%d="1"' % i for i in range(256)) + b"/>")


def test_error_names_the_line() -> None:
    """A syntax error says on which line it is."""
    with pytest.raises(MalformedXml, match="line 3"):
        xmlsafe.parse(b"<r>\n<a>\n</b></r>")


def test_utf8_with_bom_and_declaration_is_accepted() -> None:
    """UTF-8, with or without BOM and declaration, is the accepted encoding."""
    root = xmlsafe.parse(b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?><r>\xd0\x96</r>')
    assert root.text == "Ж"


def test_text_value_skips_comments() -> None:
    """A comment inside a value does not cut it: the value is what exc-c14n signs."""
    root = xmlsafe.parse(b"<r>EAEU://RU/<!-- x -->CP</r>")
    assert xmlsafe.text_value(root) == "EAEU://RU/CP"
    assert root.text == "EAEU://RU/"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_give_a_tree_or_our_error(data: bytes) -> None:
    """For any bytes the door returns a tree or raises one of our own errors."""
    with contextlib.suppress(GatewayError):
        xmlsafe.parse(data)


_xml_text = st.text(alphabet=st.sampled_from(list("<>/=\"' !?-[]&;#xaAbr:1\n")), max_size=300)


@settings(max_examples=300, deadline=None)
@given(_xml_text)
def test_any_xmlish_text_gives_a_tree_or_our_error(text: str) -> None:
    """Markup-heavy random text also only yields our errors."""
    with contextlib.suppress(GatewayError):
        xmlsafe.parse(text.encode())
