"""routing.yaml problems, each reported as file:line:col: error|warning: message."""

from __future__ import annotations

import textwrap

import pytest

from broker.routing.load import parse_routing
from broker.routing.table import Retention
from tests.conftest import ROOT

HEAD = """\
version: 1
gateway: {id: EEC-GW}
participants:
  KZ-SW:
    country: KZ
    addresses: ["EAEU://KZ/*"]
    endpoint: https://sw.kz.example/in
  RU-SW:
    country: RU
    addresses: ["EAEU://RU/*"]
    endpoint: https://sw.ru.example/in
routes:
"""


def problems(routes: str, head: str = HEAD) -> list[str]:
    text = head + textwrap.indent(textwrap.dedent(routes), "  ")
    return [str(p) for p in parse_routing(text.encode(), "t.yaml").problems]


def test_repository_table_is_clean() -> None:
    """The shipped routing.yaml has no error and no warning."""
    result = parse_routing((ROOT / "routing.yaml").read_bytes())
    assert result.problems == ()
    assert result.table is not None


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        (
            """\
          - name: a
            deliver: addressee
            colour: red
         """,
            "t.yaml:15:5: error: routes[0]: unknown key 'colour' (expected one of name, match, "
            "deliver, reject, retry, retention)",
        ),
        (
            """\
          - name: a
            match: {sender: KZ-SW}
            deliver: addressee
         """,
            "t.yaml:14:13: error: rule 'a': match: unknown key 'sender' (expected one of "
            "action, document, from, to)",
        ),
        (
            """\
          - name: a
            deliver: [XX-SW]
         """,
            "t.yaml:14:15: error: rule 'a': deliver: unknown participant 'XX-SW'",
        ),
        (
            """\
          - name: a
            deliver: ["BY-*"]
         """,
            "t.yaml:14:15: error: rule 'a': deliver: 'BY-*' matches no participant",
        ),
        (
            """\
          - name: a
            deliver: addressee
          - name: a
            match: {to: "EAEU://RU/*"}
            deliver: [RU-SW]
         """,
            "t.yaml:15:11: error: duplicate rule name 'a' (first at line 13)",
        ),
        (
            """\
          - name: a
            match: {action: "int://CP/P.TS.01/[abc"}
            deliver: addressee
         """,
            "t.yaml:14:21: error: rule 'a': match.action: bad glob: unclosed '[' at "
            "position 18 in 'int://CP/P.TS.01/[abc'",
        ),
        (
            """\
          - name: a
            match: {to: "EAEU://XX/*"}
            deliver: addressee
         """,
            "t.yaml:14:17: error: rule 'a': match.to glob 'EAEU://XX/*' can never match a "
            "well-formed logical address",
        ),
        (
            """\
          - name: a
            match: {document: "TR.TS.01.*"}
            deliver: addressee
         """,
            "t.yaml:14:23: error: rule 'a': match.document glob 'TR.TS.01.*' can never match "
            "a well-formed EDocCode or signal code",
        ),
        (
            """\
          - name: a
            deliver: addressee
            reject: "no"
         """,
            "t.yaml:13:5: error: rule 'a': needs exactly one of 'deliver' and 'reject'",
        ),
        (
            """\
          - name: a
            deliver: addressee
            retry: {attempts: 3, initial: 2 s}
         """,
            "t.yaml:15:35: error: rule 'a': retry.initial: bad duration '2 s' (a number and "
            "ms, s, m, h or d)",
        ),
        (
            """\
          - name: a
            deliver: addressee
            retry: {ttl: 10}
         """,
            "t.yaml:15:18: error: rule 'a': retry.ttl: bad duration '10' (a number and ms, s, "
            "m, h or d)",
        ),
        (
            """\
          - name: a
            deliver: addressee
            retry: {attempts: 0}
         """,
            "t.yaml:15:23: error: rule 'a': retry.attempts must be a whole number from 1 to 1000",
        ),
        (
            """\
          - name: a
            deliver: addressee
            retry: {initial: 1h, max: 1m}
         """,
            "t.yaml:15:12: error: rule 'a': retry.initial is above retry.max",
        ),
        (
            """\
          - name: a
            deliver: KZ-SW
         """,
            "t.yaml:14:14: error: rule 'a': deliver must be 'addressee' or a list of "
            "participant ids",
        ),
    ],
    ids=[
        "unknown rule key",
        "unknown match key",
        "unknown participant",
        "glob matching nobody",
        "duplicate name",
        "bad glob",
        "impossible address",
        "impossible document",
        "deliver and reject",
        "duration with a space",
        "duration without unit",
        "zero attempts",
        "initial above max",
        "deliver a bare id",
    ],
)
def test_rule_errors(routes: str, expected: str) -> None:
    """Each broken rule is reported at its line and column."""
    assert expected in problems(routes)


def _participant_head(participant: str) -> str:
    return HEAD.replace(
        "routes:\n", textwrap.indent(textwrap.dedent(participant), "  ") + "routes:\n"
    )


@pytest.mark.parametrize(
    ("participant", "expected"),
    [
        (
            """\
         XX-SW:
           country: XX
           addresses: ["EAEU://KZ/*"]
           endpoint: https://x.example/in
         """,
            "t.yaml:13:14: error: participant XX-SW: country 'XX' is not a member state or "
            "EEC (EEC, AM, BY, KZ, KG, RU)",
        ),
        (
            """\
         BY-SW:
           country: BY
           addresses: ["https://by/*"]
           endpoint: https://x.example/in
         """,
            "t.yaml:14:16: error: participant BY-SW: address glob 'https://by/*' matches no "
            "well-formed logical address EAEU://<segment>/CP/…",
        ),
        (
            """\
         BY-SW:
           country: BY
           addresses: ["EAEU://BY/*"]
           endpoint: ftp://x.example/in
         """,
            "t.yaml:15:15: error: participant BY-SW: endpoint: bad URL 'ftp://x.example/in' "
            "(expected https://host[:port]/path)",
        ),
        (
            """\
         BY-SW:
           country: BY
           addresses: ["EAEU://BY/*"]
           endpoint: http://sw.by.example/in
         """,
            "t.yaml:15:15: error: participant BY-SW: endpoint: 'http://sw.by.example/in' is "
            "plain http; deliveries need https",
        ),
        (
            """\
         BY-SW:
           country: BY
           addresses: ["EAEU://BY/*"]
           endpoint: https://x.example/in
           certificates: ["sha1:abcd"]
         """,
            "t.yaml:16:20: error: participant BY-SW: certificate pin 'sha1:abcd' is not "
            "sha256:<64 hex>",
        ),
        (
            """\
         BY-SW:
           country: BY
           addresses: ["EAEU://BY/*"]
           endpoint: https://x.example/in
           phone: 123
         """,
            "t.yaml:16:5: error: participant BY-SW: unknown key 'phone' (expected one of "
            "country, addresses, endpoint, receipts, certificates, signature)",
        ),
        (
            """\
         BY-SW:
           country: BY
           addresses: ["EAEU://BY/*"]
           endpoint: https://x.example/in
           signature: headers
         """,
            "t.yaml:16:16: error: participant BY-SW: signature 'headers' must be full (the "
            "default) or body",
        ),
    ],
    ids=[
        "country",
        "address form",
        "endpoint scheme",
        "plain http",
        "pin",
        "unknown key",
        "signature mode",
    ],
)
def test_participant_errors(participant: str, expected: str) -> None:
    """Each broken participant is reported at its line and column."""
    routes = """\
      - name: all
        deliver: ["*"]
    """
    assert expected in problems(routes, _participant_head(participant))


def test_ambiguous_addressee_is_an_error() -> None:
    """Two participants that can serve one address make an addressee rule ambiguous."""
    head = _participant_head("""\
        KZ-CUSTOMS:
          country: KZ
          addresses: ["EAEU://KZ/CP/P.CC.*"]
          endpoint: https://customs.kz.example/in
        """)
    found = problems(
        """\
      - name: a
        deliver: addressee
    """,
        head,
    )
    assert (
        "t.yaml:18:14: error: rule 'a': addressee is ambiguous: KZ-SW and KZ-CUSTOMS can "
        "both serve one address it matches" in found
    )


def test_addressee_restricted_by_to_is_not_ambiguous() -> None:
    """Overlapping addresses are fine when the rule's `to` keeps them apart."""
    head = _participant_head("""\
        KZ-CUSTOMS:
          country: KZ
          addresses: ["EAEU://KZ/CP/P.CC.*"]
          endpoint: https://customs.kz.example/in
        """)
    found = problems(
        """\
      - name: a
        match: {to: "EAEU://*/CP/P.TS.*"}
        deliver: addressee
      - name: b
        match: {to: "EAEU://*/CP/P.CC.*"}
        deliver: [KZ-CUSTOMS]
    """,
        head,
    )
    assert not [p for p in found if "error" in p], found


def test_shadowed_rule_is_a_warning_computed_on_the_languages() -> None:
    """A rule whose match set lies inside an earlier rule's is shadowed, not just equal text."""
    found = problems("""\
      - name: broad
        match: {action: "int://CP/*", from: ["KZ-*", "RU-*"]}
        deliver: addressee
      - name: narrow
        match: {action: "int://CP/P.TS.01/*", from: KZ-SW, document: R.006}
        deliver: [RU-SW]
      - name: not-shadowed
        match: {action: "int://CP/P.TS.01/*"}
        deliver: [RU-SW]
    """)
    assert (
        "t.yaml:16:11: warning: rule 'narrow' is shadowed by rule 'broad' (line 13): it "
        "never matches" in found
    )
    assert not any("'not-shadowed' is shadowed" in p for p in found)


def test_unreached_participant_is_a_warning() -> None:
    """A participant no rule can deliver to is reported as a warning."""
    found = problems("""\
      - name: a
        match: {to: "EAEU://RU/*"}
        deliver: addressee
    """)
    assert "t.yaml:4:3: warning: participant KZ-SW is reached by no rule" in found
    assert not any("RU-SW is reached" in p for p in found)


def test_warnings_do_not_block_the_table() -> None:
    """A table with only warnings loads."""
    text = HEAD + "  - {name: a, match: {to: 'EAEU://RU/*'}, deliver: addressee}\n"
    result = parse_routing(text.encode(), "t.yaml")
    assert result.table is not None
    assert result.warnings
    assert not result.errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "version: 2\ngateway: {id: G}\nparticipants: {}\nroutes: []\n",
            "t.yaml:1:10: error: version must be 1",
        ),
        (
            "version: 1\ngateway: {id: G}\nroutes: []\n",
            "t.yaml:1:1: error: routing table: required key 'participants' missing",
        ),
        (
            "version: 1\n gateway: [\n",
            "t.yaml:2:9: error: YAML: mapping values are not allowed here",
        ),
        (
            "version: 1\nversion: 1\ngateway: {id: G}\nparticipants: {}\nroutes: []\n",
            "t.yaml:2:1: error: routing table: duplicate key 'version'",
        ),
        (
            "version: 1\ngateway: {id: G\x1f}\n",
            "t.yaml:2:16: error: YAML: character #x001f is not allowed",
        ),
    ],
    ids=["version", "missing participants", "yaml syntax", "duplicate key", "control character"],
)
def test_table_level_errors(text: str, expected: str) -> None:
    """Top-level and YAML syntax problems are located too."""
    found = [str(p) for p in parse_routing(text.encode(), "t.yaml").problems]
    assert expected in found, found


@pytest.mark.parametrize(
    ("retention", "expected"),
    [
        ("{bodies: 30x}", "t.yaml:3:21: error: retention.bodies: bad duration '30x'"),
        ("{bodies: 0s}", "t.yaml:3:21: error: retention.bodies must be above zero"),
        ("{body: 30d}", "t.yaml:3:13: error: retention: unknown key 'body'"),
        (
            "{bodies: 30d, receipts: 1d}",
            "t.yaml:3:12: error: retention: receipts must be kept at least as long as bodies",
        ),
    ],
    ids=["bad duration", "zero", "unknown key", "receipts shorter"],
)
def test_retention_errors(retention: str, expected: str) -> None:
    """The table's and a rule's `retention` periods are checked like any duration."""
    text = HEAD.replace(
        "gateway: {id: EEC-GW}\n", f"gateway: {{id: EEC-GW}}\nretention: {retention}\n"
    )
    found = [str(p) for p in parse_routing(text.encode(), "t.yaml").problems]
    assert any(f.startswith(expected) for f in found), found


def test_a_rule_overrides_the_tables_retention_period_by_period() -> None:
    """A rule's own period wins; what it leaves out is the table's."""
    head = HEAD.replace(
        "gateway: {id: EEC-GW}\n",
        "gateway: {id: EEC-GW}\nretention: {bodies: 30d, receipts: 3650d}\n",
    )
    routes = """\
      - name: short
        match: {to: "EAEU://RU/*"}
        deliver: [RU-SW]
        retention: {bodies: 1d}
      - name: rest
        deliver: addressee
     """
    text = head + textwrap.indent(textwrap.dedent(routes), "  ")
    table = parse_routing(text.encode(), "t.yaml").table
    assert table is not None
    assert table.retention == Retention(30 * 86_400, 3650 * 86_400)
    short, rest = table.rules
    assert short.retention is not None
    assert short.retention.over(table.retention) == Retention(86_400, 3650 * 86_400)
    assert rest.retention is None


def test_digest_is_the_sha256_of_the_file_bytes() -> None:
    """The table's digest is the hex SHA-256 of exactly the bytes read."""
    import hashlib

    data = (ROOT / "routing.yaml").read_bytes()
    table = parse_routing(data).table
    assert table is not None
    assert table.digest == hashlib.sha256(data).hexdigest()


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

REPOSITORY_TABLE = (ROOT / "routing.yaml").read_text()


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=400))
def test_any_text_gives_a_table_or_located_problems(text: str) -> None:
    """Whatever the file holds, the loader reports problems with a line — it never crashes."""
    result = parse_routing(text.encode("utf-8", "surrogatepass"), "t.yaml")
    assert (result.table is None) == bool(result.errors)
    assert all(p.line >= 1 and p.column >= 1 for p in result.problems)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, len(REPOSITORY_TABLE) - 1),
    st.integers(0, 40),
    st.text(alphabet=st.sampled_from(list(" :-[]{}*?!#'\"\n,&xK1")), max_size=12),
)
def test_mutated_repository_table_gives_a_table_or_located_problems(
    start: int, length: int, insert: str
) -> None:
    """Random edits of the real table (what an operator's typo looks like) never crash it."""
    text = REPOSITORY_TABLE[:start] + insert + REPOSITORY_TABLE[start + length :]
    result = parse_routing(text.encode(), "t.yaml")
    assert (result.table is None) == bool(result.errors)
