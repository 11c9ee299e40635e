"""``broker xsd check`` and ``broker validate`` as a user runs them: real processes, exit codes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from broker.schemas import read_catalog
from tests.conftest import DATA, ROOT, XSD


def broker(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_xsd_check_passes_on_the_repository_catalog() -> None:
    """Every catalog entry compiles with both lxml and xmlschema."""
    result = broker("xsd", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    count = len(read_catalog(ROOT / "xsd"))
    assert f"{count} of {count} document schemas compile" in result.stdout


def test_xsd_check_names_the_broken_schema(tmp_path: Path) -> None:
    """A broken schema makes xsd check exit 1 naming its document code."""
    folder = tmp_path / "xsd"
    shutil.copytree(XSD, folder)
    path = folder / "EEC_R_SM_SS_08_DangerousProductAlert_v1.0.0.xsd"
    path.write_text(path.read_text().replace('type="RiskLevelCodeType"', 'type="NoSuchType"'))
    result = broker("xsd", "check", "--xsd", str(folder))
    assert result.returncode == 1
    assert "FAIL R.SM.SS.08.002" in result.stdout
    assert "ok   R.006" in result.stdout


@pytest.mark.parametrize("path", sorted(DATA.glob("*.xml")), ids=lambda p: p.name)
def test_validate_gives_the_verdict_in_the_sample_name(path: Path) -> None:
    """valid-* samples print OK and exit 0; invalid-<CODE>-* print CODE and exit 1."""
    result = broker("validate", str(path))
    if path.name.startswith("valid-"):
        assert result.returncode == 0, result.stdout
        assert result.stdout.startswith(f"{path}: OK ")
    else:
        code = path.name.split("-")[1]
        assert result.returncode == 1, result.stdout
        assert result.stdout.startswith(f"{path}: {code}: "), result.stdout


def test_validate_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    """A file that cannot be read is exit 2, not a verdict."""
    result = broker("validate", str(tmp_path / "nope.xml"))
    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_validate_reads_the_xsd_folder_from_the_environment(tmp_path: Path) -> None:
    """BROKER_XSD is honoured like --xsd."""
    env_result = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker.cli",
            "validate",
            str(DATA / "valid-conformity-kz-to-ru.xml"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"BROKER_XSD": str(XSD), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert env_result.returncode == 0, env_result.stdout + env_result.stderr
