"""The matcher: first match wins, addressee, fan-out without the sender, NO_ROUTE, ROUTE_DENIED."""

from __future__ import annotations

import fnmatch
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import NoRoute, RouteDenied
from broker.routing.load import parse_routing
from broker.routing.table import RouteFacts, RoutingTable
from tests.conftest import ROOT

TS01 = "int://CP/P.TS.01/1.0.1/P.TS.01.PRC.001/P.TS.01.TRN.001"


def repo_table() -> RoutingTable:
    result = parse_routing((ROOT / "routing.yaml").read_bytes())
    assert result.table is not None, result.errors
    return result.table


def test_registry_update_fans_out_to_everyone_but_the_sender() -> None:
    """A glob in deliver never sends back to the sender; a literal id is always delivered."""
    decision = repo_table().route(
        RouteFacts(
            f"{TS01}/P.TS.01.MSG.001",
            "R.TR.TS.01.001",
            "KZ-SW",
            "EAEU://RU/CP/P.TS.01/P.TS.01.ACT.002",
        )
    )
    assert decision.rule.name == "ts01-registry-update-to-all"
    assert [p.id for p in decision.destinations] == ["AM-SW", "BY-SW", "KG-SW", "RU-SW", "EEC-IS"]


def test_processing_result_goes_to_the_addressee() -> None:
    """deliver: addressee resolves wsa:To through the participants' addresses."""
    decision = repo_table().route(
        RouteFacts(
            f"{TS01}/P.TS.01.MSG.002", "R.006", "RU-SW", "EAEU://KZ/CP/P.TS.01/P.TS.01.ACT.001"
        )
    )
    assert [p.id for p in decision.destinations] == ["KZ-SW"]
    assert decision.rule.retry.attempts == 12


def test_deny_rule_gives_route_denied_with_its_reason() -> None:
    """A reject rule raises ROUTE_DENIED carrying the table's reason."""
    with pytest.raises(RouteDenied, match=r"P\.ZZ\.99 is not open"):
        repo_table().route(
            RouteFacts(
                "int://CP/P.ZZ.99/1.0.0/P.ZZ.99.PRC.001/P.ZZ.99.TRN.001/P.ZZ.99.MSG.001",
                "R.006",
                "KZ-SW",
                "EAEU://RU/CP/P.ZZ.99/P.ZZ.99.ACT.001",
            )
        )


def test_no_matching_rule_is_no_route() -> None:
    """A message no rule matches is NO_ROUTE."""
    with pytest.raises(NoRoute):
        repo_table().route(
            RouteFacts(
                "int://CP/P.MM.01/1.0.0/P.MM.01.PRC.001/P.MM.01.TRN.001/P.MM.01.MSG.001",
                "R.MM.01.001",
                "KZ-SW",
                "EAEU://RU/CP/P.MM.01/P.MM.01.ACT.001",
            )
        )


def test_addressee_without_a_serving_participant_is_no_route() -> None:
    """An addressee rule that finds nobody serving wsa:To gives NO_ROUTE."""
    table = parse_routing(b"""version: 1
gateway: {id: GW}
participants:
  KZ-SW: {country: KZ, addresses: ["EAEU://KZ/*"], endpoint: "https://kz.example/in"}
routes:
  - {name: any, deliver: addressee}
""").table
    assert table is not None
    with pytest.raises(NoRoute, match="no participant serves"):
        table.route(RouteFacts("a", "R.006", "KZ-SW", "EAEU://RU/CP/P.TS.01/P.ACT.001"))


# --- property test: the matcher against a brute-force reference ------------------------------

IDS = ["KZ-SW", "RU-SW", "BY-SW"]
VALUES = {
    "action": [
        f"{TS01}/P.TS.01.MSG.001",
        "int://CP/P.SS.08/1.0.0/P.SS.08.PRC.001/P.SS.08.TRN.001/P.SS.08.MSG.002",
    ],
    "document": ["R.006", "R.TR.TS.01.001"],
    "from": IDS,
    "to": [
        "EAEU://KZ/CP/P.TS.01/P.ACT.001",
        "EAEU://RU/CP/P.TS.01/P.ACT.001",
        "EAEU://BY/CP/P.SS.08/P.ACT.001",
    ],
}
GLOBS = {
    "action": ["int://CP/P.TS.01/*", "int://CP/*", "*/P.SS.08.MSG.002", "*MSG.00?"],
    "document": ["R.006", "R.*", "R.TR.*"],
    "from": ["KZ-*", "*-SW", "RU-SW", "[KR]*"],
    "to": ["EAEU://KZ/*", "EAEU://*/CP/P.TS.01/*", "*"],
}

rule_strategy = st.fixed_dictionaries(
    {},
    optional={key: st.lists(st.sampled_from(GLOBS[key]), min_size=1, max_size=2) for key in GLOBS},
).flatmap(
    lambda match: st.tuples(
        st.just(match),
        st.one_of(
            st.just({"deliver": "addressee"}),
            st.lists(st.sampled_from([*IDS, "*", "*-SW"]), min_size=1, max_size=3, unique=True).map(
                lambda ids: {"deliver": ids}
            ),
            st.just({"reject": "no"}),
        ),
    )
)


def _reference(
    rules: list[tuple[dict[str, list[str]], dict[str, object]]], facts: dict[str, str]
) -> tuple[str, list[str]] | str:
    for index, (match, action) in enumerate(rules):
        if all(any(fnmatch.fnmatchcase(facts[k], g) for g in globs) for k, globs in match.items()):
            if "reject" in action:
                return "ROUTE_DENIED"
            deliver = action["deliver"]
            if deliver == "addressee":
                served = [p for p in IDS if facts["to"].startswith(f"EAEU://{p[:2]}/")]
                return (f"r{index}", served[:1]) if served else "NO_ROUTE"
            assert isinstance(deliver, list)
            chosen = [
                p
                for p in IDS
                if p in deliver
                or any(
                    fnmatch.fnmatchcase(p, g) and p != facts["from"]
                    for g in deliver
                    if any(c in g for c in "*?[")
                )
            ]
            return (f"r{index}", chosen) if chosen else "NO_ROUTE"
    return "NO_ROUTE"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(rule_strategy, min_size=1, max_size=5),
    st.fixed_dictionaries({k: st.sampled_from(v) for k, v in VALUES.items()}),
)
def test_matcher_agrees_with_brute_force(
    rules: list[tuple[dict[str, list[str]], dict[str, object]]], facts: dict[str, str]
) -> None:
    """On random tables and messages, route() gives what a plain first-match loop gives."""
    participants = {
        pid: {
            "country": pid[:2],
            "addresses": [f"EAEU://{pid[:2]}/*"],
            "endpoint": f"https://{pid.lower()}.example/in",
        }
        for pid in IDS
    }
    routes = [
        {"name": f"r{i}", "match": match, **action} for i, (match, action) in enumerate(rules)
    ]
    doc = {"version": 1, "gateway": {"id": "GW"}, "participants": participants, "routes": routes}
    result = parse_routing(json.dumps(doc).encode())  # JSON is YAML
    assert result.table is not None, [str(p) for p in result.errors]
    expected = _reference(rules, facts)
    route_facts = RouteFacts(facts["action"], facts["document"], facts["from"], facts["to"])
    outcome: tuple[str, list[str]] | str
    try:
        decision = result.table.route(route_facts)
    except (NoRoute, RouteDenied) as exc:
        outcome = exc.code
    else:
        outcome = (decision.rule.name, [p.id for p in decision.destinations])
    assert outcome == expected
