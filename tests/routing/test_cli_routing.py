"""``broker routing check`` and ``broker routing explain`` as an operator runs them."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import DATA, ROOT
from tests.test_cli_validate import broker


def line_of(text: str) -> int:
    """The 1-based line of routing.yaml holding ``text``."""
    lines = (ROOT / "routing.yaml").read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line)


def test_check_of_the_repository_table_is_clean() -> None:
    """routing check exits 0 on the shipped table and prints its digest."""
    result = broker("routing", "check")
    assert result.returncode == 0, result.stdout
    assert "routing.yaml: ok — 6 participants, 7 rules, 0 warning(s), sha256 " in result.stdout


def test_check_of_a_broken_table_exits_1_with_located_errors(tmp_path: Path) -> None:
    """Errors are printed as file:line:col and the exit status is 1."""
    path = tmp_path / "bad.yaml"
    path.write_text((ROOT / "routing.yaml").read_text().replace("country: KG", "country: UZ"))
    result = broker("routing", "check", str(path))
    assert result.returncode == 1
    assert (
        f"{path}:{line_of('country: KG')}:14: error: participant KG-SW: country 'UZ' is not "
        "a member state" in result.stdout
    )


def test_check_with_warnings_only_exits_0(tmp_path: Path) -> None:
    """Warnings are printed but do not fail the check."""
    path = tmp_path / "warn.yaml"
    text = (ROOT / "routing.yaml").read_text()
    path.write_text(
        text + "  - name: unreachable\n    match: {document: R.006}\n    deliver: [RU-SW]\n"
    )
    result = broker("routing", "check", str(path))
    assert result.returncode == 0
    assert (
        "warning: rule 'unreachable' is shadowed by rule 'processing-result-to-addressee'"
        in result.stdout
    )


def test_explain_shows_the_matching_rule_and_why_not_the_earlier_ones() -> None:
    """explain names each earlier rule's first failing condition, then destinations and retry."""
    result = broker("routing", "explain", str(DATA / "valid-goods-declaration-kz-to-ru.xml"))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "from      KZ-SW (the participant serving wsa:ReplyTo)" in out
    earlier = line_of("- name: processing-result-to-addressee")
    assert (
        f"rule 'processing-result-to-addressee' (line {earlier}): no — document 'R.055' "
        "does not match R.006" in out
    )
    matched = line_of("- name: goods-declaration-to-addressee")
    assert f"rule 'goods-declaration-to-addressee' (line {matched}): MATCHES" in out
    assert "  RU-SW      https://sw.ru.example/eaeu/inbox" in out
    assert "retry     attempts 12, initial 2s, max 10m, ttl 1d" in out


def test_explain_with_an_explicit_sender_and_a_fan_out() -> None:
    """--from names the sender; a fan-out lists every destination except the sender."""
    result = broker(
        "routing",
        "explain",
        "--from",
        "BY-SW",
        str(DATA / "valid-dangerous-product-alert-by-to-kz.xml"),
    )
    assert result.returncode == 0, result.stdout
    destinations = [
        line.split()[0]
        for line in result.stdout.split("deliver to:\n")[1].splitlines()
        if line.startswith("  ")
    ]
    assert destinations == ["AM-SW", "KZ-SW", "KG-SW", "RU-SW", "EEC-IS"]


def test_explain_of_a_denied_message_exits_1(tmp_path: Path) -> None:
    """A message the table rejects shows ROUTE_DENIED with the reason, exit 1."""
    text = (DATA / "valid-processing-result-ru-to-kz.xml").read_text().replace("P.TS.01", "P.ZZ.99")
    path = tmp_path / "m.xml"
    path.write_text(text)
    result = broker("routing", "explain", str(path))
    assert result.returncode == 1
    assert "rejected: ROUTE_DENIED: the test process P.ZZ.99 is not open" in result.stdout
