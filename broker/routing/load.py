"""routing.yaml → a frozen RoutingTable, or every problem as ``file:line:col: error|warning: …``.

The file is read as a YAML node tree (not plain data) so each problem points at the key or value
it is about. Errors make the table unusable (``broker routing check`` exits 1, a reload is
refused); warnings — a rule shadowed by an earlier one, a participant no rule reaches — do not.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import yaml

from broker.envelope import MEMBER_SEGMENTS
from broker.routing import forms
from broker.routing.globs import (
    EVERYTHING,
    Glob,
    GlobError,
    Nfa,
    compile_glob,
    intersects,
    is_subset,
)
from broker.routing.table import (
    DEFAULT_RETRY,
    MATCH_KEYS,
    Coverage,
    GlobList,
    Participant,
    Retention,
    RetryPolicy,
    RoutingTable,
    Rule,
)

Severity = Literal["error", "warning"]

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PIN = re.compile(r"sha256:([0-9A-Fa-f]{64})")
_PARTICIPANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
# What each match key's globs must be able to match, if anything.
_FORMS: dict[str, tuple[Nfa, str]] = {
    "action": (forms.ACTION, "wsa:Action"),
    "document": (forms.DOCUMENT, "EDocCode or signal code"),
    "to": (forms.ADDRESS, "logical address"),
}


@dataclass(frozen=True)
class Problem:
    source: str
    line: int
    column: int
    severity: Severity
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}: {self.severity}: {self.message}"


@dataclass(frozen=True)
class LoadResult:
    table: RoutingTable | None
    """The table, or None when there is any error."""
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")


Fields = dict[str, tuple[yaml.Node, yaml.Node]]


class _Loader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    # -- reporting ----------------------------------------------------------------------------
    def report(self, severity: Severity, node: yaml.Node | None, message: str) -> None:
        line, column = (node.start_mark.line + 1, node.start_mark.column + 1) if node else (1, 1)
        self.problems.append(Problem(self.source, line, column, severity, message))

    def error(self, node: yaml.Node | None, message: str) -> None:
        self.report("error", node, message)

    def warning(self, node: yaml.Node | None, message: str) -> None:
        self.report("warning", node, message)

    # -- typed readers ------------------------------------------------------------------------
    def mapping(
        self, node: yaml.Node, what: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()
    ) -> Fields | None:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{what} must be a mapping")
            return None
        fields: Fields = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is None or not isinstance(name, str):
                self.error(key, f"{what}: keys must be strings")
            elif name in fields:
                self.error(key, f"{what}: duplicate key {name!r}")
            elif allowed and name not in allowed:
                self.error(
                    key, f"{what}: unknown key {name!r} (expected one of {', '.join(allowed)})"
                )
            else:
                fields[name] = (key, value)
        for name in required:
            if name not in fields:
                self.error(node, f"{what}: required key {name!r} missing")
        return fields

    def string(self, node: yaml.Node, what: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _STR or not node.value:
            self.error(node, f"{what} must be a non-empty string")
            return None
        return str(node.value)

    def strings(self, node: yaml.Node, what: str) -> list[tuple[yaml.Node, str]]:
        """A string or a list of strings."""
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if isinstance(node, yaml.SequenceNode) and not items:
            self.error(node, f"{what} must not be an empty list")
        out: list[tuple[yaml.Node, str]] = []
        for item in items:
            text = self.string(item, what)
            if text is not None:
                out.append((item, text))
        return out

    def globs(self, node: yaml.Node, what: str) -> GlobList | None:
        compiled: list[Glob] = []
        ok = True
        for item, text in self.strings(node, what):
            try:
                compiled.append(compile_glob(text))
            except GlobError as exc:
                self.error(item, f"{what}: bad glob: {exc}")
                ok = False
        return GlobList(tuple(compiled)) if ok and compiled else None

    def duration(self, node: yaml.Node, what: str) -> float | None:
        text = node.value if isinstance(node, yaml.ScalarNode) else None
        match = _DURATION.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            self.error(node, f"{what}: bad duration {text!r} (a number and ms, s, m, h or d)")
            return None
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]

    def url(self, node: yaml.Node, what: str) -> str | None:
        text = self.string(node, what)
        if text is None:
            return None
        try:
            parts = urlsplit(text)
            _ = parts.port
        except ValueError as exc:
            self.error(node, f"{what}: bad URL {text!r}: {exc}")
            return None
        if parts.scheme not in ("https", "http") or not parts.hostname:
            self.error(node, f"{what}: bad URL {text!r} (expected https://host[:port]/path)")
            return None
        if parts.username or parts.password or parts.fragment:
            self.error(node, f"{what}: bad URL {text!r} (no credentials or fragment)")
            return None
        if parts.scheme == "http":
            if not _is_loopback(parts.hostname):
                self.error(node, f"{what}: {text!r} is plain http; deliveries need https")
                return None
            self.warning(node, f"{what}: {text!r} is plain http (local development only)")
        return text


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _nfa(globs: GlobList | None) -> Nfa:
    return EVERYTHING if globs is None else globs.nfa


class _TableLoader(_Loader):
    def __init__(self, source: str) -> None:
        super().__init__(source)
        self._participant_keys: dict[str, yaml.Node] = {}

    def load(self, data: bytes, digest: str) -> RoutingTable | None:
        text = ""
        try:
            text = data.decode("utf-8")
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.reader.ReaderError as exc:  # a control character: no mark, a position
            before = text[: exc.position]
            line, column = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
            self.problems.append(
                Problem(
                    self.source,
                    line,
                    column,
                    "error",
                    f"YAML: character #x{exc.character:04x} is not allowed",
                )
            )
            return None
        except UnicodeDecodeError as exc:
            self.error(None, f"not UTF-8: {exc}")
            return None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            self.problems.append(
                Problem(self.source, line, column, "error", f"YAML: {exc.problem}")
            )
            return None
        if root is None:
            self.error(None, "the routing table is empty")
            return None
        top = self.mapping(
            root,
            "routing table",
            ("version", "gateway", "retention", "participants", "routes"),
            ("version", "gateway", "participants", "routes"),
        )
        if top is None:
            return None
        if "version" in top:
            node = top["version"][1]
            if not (isinstance(node, yaml.ScalarNode) and node.tag == _INT and node.value == "1"):
                self.error(node, "version must be 1")
        gateway_id = self._gateway(top["gateway"][1]) if "gateway" in top else None
        retention = (
            self._retention(top["retention"][1], "retention") if "retention" in top else None
        )
        participants = self._participants(top["participants"][1]) if "participants" in top else {}
        rules: list[Rule] = []
        rule_nodes: list[tuple[Rule, Fields]] = []
        if "routes" in top:
            rule_nodes = self._rules(top["routes"][1], participants)
            rules = [rule for rule, _ in rule_nodes]
        self._check_rules(rule_nodes, participants)
        self._check_reachable(rule_nodes, participants)
        if gateway_id is None or any(p.severity == "error" for p in self.problems):
            return None
        return RoutingTable(
            gateway_id, participants, tuple(rules), digest, self.source, retention or Retention()
        )

    def _gateway(self, node: yaml.Node) -> str | None:
        fields = self.mapping(node, "gateway", ("id",), ("id",))
        if not fields or "id" not in fields:
            return None
        return self.string(fields["id"][1], "gateway.id")

    def _participants(self, node: yaml.Node) -> dict[str, Participant]:
        fields = self.mapping(node, "participants", ())
        out: dict[str, Participant] = {}
        for pid, (key, value) in (fields or {}).items():
            if not _PARTICIPANT_ID.fullmatch(pid):
                self.error(key, f"participant id {pid!r} must be letters, digits, '.', '_', '-'")
                continue
            self._participant_keys[pid] = key
            participant = self._participant(pid, key, value)
            if participant is not None:
                out[pid] = participant
        if not out and fields is not None and not fields:
            self.error(node, "participants: at least one participant is needed")
        return out

    def _participant(self, pid: str, key: yaml.Node, node: yaml.Node) -> Participant | None:
        what = f"participant {pid}"
        fields = self.mapping(
            node,
            what,
            ("country", "addresses", "endpoint", "receipts", "certificates", "signature"),
            ("country", "addresses", "endpoint"),
        )
        if fields is None:
            return None
        country = addresses = endpoint = None
        if "country" in fields:
            country = self.string(fields["country"][1], f"{what}: country")
            if country is not None and country not in MEMBER_SEGMENTS:
                self.error(
                    fields["country"][1],
                    f"{what}: country {country!r} is not a member "
                    f"state or EEC ({', '.join(MEMBER_SEGMENTS)})",
                )
                country = None
        if "addresses" in fields:
            addresses = self.globs(fields["addresses"][1], f"{what}: addresses")
            for glob in addresses.globs if addresses else ():
                if not intersects(glob.nfa, forms.ADDRESS):
                    self.error(
                        fields["addresses"][1],
                        f"{what}: address glob {glob.text!r} "
                        "matches no well-formed logical address EAEU://<segment>/CP/…",
                    )
        if "endpoint" in fields:
            endpoint = self.url(fields["endpoint"][1], f"{what}: endpoint")
        receipts = (
            self.url(fields["receipts"][1], f"{what}: receipts") if "receipts" in fields else None
        )
        pins: set[str] = set()
        if "certificates" in fields:
            for item, text in self.strings(fields["certificates"][1], f"{what}: certificates"):
                match = _PIN.fullmatch(text)
                if match is None:
                    self.error(item, f"{what}: certificate pin {text!r} is not sha256:<64 hex>")
                else:
                    pins.add(match.group(1).lower())
        signature: Coverage = "full"
        if "signature" in fields:
            value = self.string(fields["signature"][1], f"{what}: signature")
            if value == "body":
                signature = "body"
            elif value != "full" and value is not None:
                self.error(
                    fields["signature"][1],
                    f"{what}: signature {value!r} must be full (the default) or body",
                )
        if country is None or addresses is None or endpoint is None:
            return None
        return Participant(
            pid,
            country,
            addresses,
            endpoint,
            receipts,
            frozenset(pins),
            key.start_mark.line + 1,
            signature,
        )

    def _rules(
        self, node: yaml.Node, participants: dict[str, Participant]
    ) -> list[tuple[Rule, Fields]]:
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, "routes must be a list of rules")
            return []
        out: list[tuple[Rule, Fields]] = []
        names: dict[str, int] = {}
        for index, item in enumerate(node.value):
            fields = self.mapping(
                item,
                f"routes[{index}]",
                ("name", "match", "deliver", "reject", "retry", "retention"),
                ("name",),
            )
            if fields is None or "name" not in fields:
                continue
            name = self.string(fields["name"][1], f"routes[{index}].name")
            if name is None:
                continue
            if name in names:
                self.error(
                    fields["name"][1], f"duplicate rule name {name!r} (first at line {names[name]})"
                )
            names.setdefault(name, fields["name"][1].start_mark.line + 1)
            rule = self._rule(name, item, fields, participants)
            if rule is not None:
                out.append((rule, fields))
        return out

    def _rule(
        self, name: str, node: yaml.Node, fields: Fields, participants: dict[str, Participant]
    ) -> Rule | None:
        what = f"rule {name!r}"
        ok = True
        match: dict[str, GlobList] = {}
        if "match" in fields:
            keys = self.mapping(fields["match"][1], f"{what}: match", MATCH_KEYS) or {}
            for key, (_, value) in keys.items():
                globs = self.globs(value, f"{what}: match.{key}")
                if globs is None:
                    ok = False
                    continue
                match[key] = globs
                form = _FORMS.get(key)
                for glob in globs.globs if form else ():
                    assert form is not None
                    if not intersects(glob.nfa, form[0]):
                        self.error(
                            value,
                            f"{what}: match.{key} glob {glob.text!r} can never "
                            f"match a well-formed {form[1]}",
                        )
        deliver: Literal["addressee"] | tuple[Glob, ...] | None = None
        reject: str | None = None
        if ("deliver" in fields) == ("reject" in fields):
            self.error(node, f"{what}: needs exactly one of 'deliver' and 'reject'")
            ok = False
        if "deliver" in fields:
            deliver = self._deliver(fields["deliver"][1], what, participants)
            ok = ok and deliver is not None
        if "reject" in fields:
            reject = self.string(fields["reject"][1], f"{what}: reject")
            if reject is not None:
                reject = reject.removeprefix("ROUTE_DENIED:").strip() or "denied by the table"
            ok = ok and reject is not None
        retry = DEFAULT_RETRY
        if "retry" in fields:
            if "reject" in fields:
                self.warning(fields["retry"][0], f"{what}: retry has no effect on a reject rule")
            parsed = self._retry(fields["retry"][1], what)
            ok = ok and parsed is not None
            retry = parsed or DEFAULT_RETRY
        retention: Retention | None = None
        if "retention" in fields:
            if "reject" in fields:
                self.warning(
                    fields["retention"][0], f"{what}: retention has no effect on a reject rule"
                )
            retention = self._retention(fields["retention"][1], f"{what}: retention")
            ok = ok and retention is not None
        if not ok:
            return None
        return Rule(name, match, deliver, reject, retry, node.start_mark.line + 1, retention)

    def _retention(self, node: yaml.Node, what: str) -> Retention | None:
        fields = self.mapping(node, what, ("bodies", "receipts"))
        if fields is None:
            return None
        values: dict[str, float] = {}
        for key, (_, value) in fields.items():
            parsed = self.duration(value, f"{what}.{key}")
            if parsed is None:
                return None
            if parsed <= 0:
                self.error(value, f"{what}.{key} must be above zero")
                return None
            values[key] = parsed
        bodies, receipts = values.get("bodies"), values.get("receipts")
        if bodies is not None and receipts is not None and receipts < bodies:
            # Purging a message's record purges its bodies with it: a shorter receipts period
            # would silently shorten the bodies one.
            self.error(node, f"{what}: receipts must be kept at least as long as bodies")
            return None
        return Retention(bodies, receipts)

    def _deliver(
        self, node: yaml.Node, what: str, participants: dict[str, Participant]
    ) -> Literal["addressee"] | tuple[Glob, ...] | None:
        if isinstance(node, yaml.ScalarNode) and node.value == "addressee":
            return "addressee"
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, f"{what}: deliver must be 'addressee' or a list of participant ids")
            return None
        out: list[Glob] = []
        for item, text in self.strings(node, f"{what}: deliver"):
            try:
                glob = compile_glob(text)
            except GlobError as exc:
                self.error(item, f"{what}: deliver: bad glob: {exc}")
                continue
            if glob.is_literal and text not in participants:
                self.error(item, f"{what}: deliver: unknown participant {text!r}")
            elif not any(glob.matches(p) for p in participants):
                self.error(item, f"{what}: deliver: {text!r} matches no participant")
            out.append(glob)
        return tuple(out) if out and len(out) == len(node.value) else None

    def _retry(self, node: yaml.Node, what: str) -> RetryPolicy | None:
        fields = self.mapping(node, f"{what}: retry", ("attempts", "initial", "max", "ttl"))
        if fields is None:
            return None
        values: dict[str, float] = {}
        ok = True
        for key in ("initial", "max", "ttl"):
            if key in fields:
                parsed = self.duration(fields[key][1], f"{what}: retry.{key}")
                if parsed is None:
                    ok = False
                elif parsed <= 0:
                    self.error(fields[key][1], f"{what}: retry.{key} must be above zero")
                    ok = False
                else:
                    values[key] = parsed
        attempts = DEFAULT_RETRY.attempts
        if "attempts" in fields:
            value = fields["attempts"][1]
            if not (
                isinstance(value, yaml.ScalarNode)
                and value.tag == _INT
                and 1 <= int(value.value) <= 1000
            ):
                self.error(value, f"{what}: retry.attempts must be a whole number from 1 to 1000")
                ok = False
            else:
                attempts = int(value.value)
        if not ok:
            return None
        policy = RetryPolicy(
            attempts,
            values.get("initial", DEFAULT_RETRY.initial),
            values.get("max", DEFAULT_RETRY.max),
            values.get("ttl", DEFAULT_RETRY.ttl),
        )
        if policy.initial > policy.max:
            self.error(node, f"{what}: retry.initial is above retry.max")
            return None
        return policy

    # -- whole-table checks --------------------------------------------------------------------
    def _check_rules(
        self, rules: list[tuple[Rule, Fields]], participants: dict[str, Participant]
    ) -> None:
        nfas = [{k: _nfa(rule.match.get(k)) for k in MATCH_KEYS} for rule, _ in rules]
        for j, (rule, fields) in enumerate(rules):
            for i in range(j):
                earlier = rules[i][0]
                if all(
                    k not in earlier.match or is_subset(nfas[j][k], nfas[i][k]) for k in MATCH_KEYS
                ):
                    self.warning(
                        fields["name"][1],
                        f"rule {rule.name!r} is shadowed by rule "
                        f"{earlier.name!r} (line {earlier.line}): it never matches",
                    )
                    break
            if rule.deliver == "addressee":
                self._check_addressee(rule, fields, nfas[j]["to"], participants)

    def _check_addressee(
        self, rule: Rule, fields: Fields, to: Nfa, participants: dict[str, Participant]
    ) -> None:
        node = fields["deliver"][1]
        servers = [
            p for p in participants.values() if intersects(to, _nfa(p.addresses), forms.ADDRESS)
        ]
        if not servers:
            self.warning(
                node,
                f"rule {rule.name!r}: no participant serves any address it "
                "matches; every message would get NO_ROUTE",
            )
        for a, first in enumerate(servers):
            for second in servers[a + 1 :]:
                if intersects(to, _nfa(first.addresses), _nfa(second.addresses), forms.ADDRESS):
                    self.error(
                        node,
                        f"rule {rule.name!r}: addressee is ambiguous: "
                        f"{first.id} and {second.id} can both serve one address it matches",
                    )

    def _check_reachable(
        self, rules: list[tuple[Rule, Fields]], participants: dict[str, Participant]
    ) -> None:
        reached: set[str] = set()
        for rule, _ in rules:
            if rule.deliver == "addressee":
                to = _nfa(rule.match.get("to"))
                reached.update(
                    p.id
                    for p in participants.values()
                    if intersects(to, _nfa(p.addresses), forms.ADDRESS)
                )
            elif rule.deliver is not None:
                reached.update(p for g in rule.deliver for p in participants if g.matches(p))
        for pid in participants:
            if pid not in reached:
                self.warning(
                    self._participant_keys[pid], f"participant {pid} is reached by no rule"
                )


def parse_routing(data: bytes, source: str = "routing.yaml") -> LoadResult:
    """Check and build a table from routing.yaml bytes."""
    loader = _TableLoader(source)
    table = loader.load(data, hashlib.sha256(data).hexdigest())
    problems = sorted(loader.problems, key=lambda p: (p.line, p.column))
    return LoadResult(table, tuple(problems))


def load_routing(path: Path) -> LoadResult:
    """Read and check routing.yaml; an unreadable file is one error."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return LoadResult(
            None, (Problem(str(path), 1, 1, "error", f"cannot read: {exc.strerror}"),)
        )
    return parse_routing(data, str(path))
