"""GOST identities for the development PKI (`broker certs demo --gost CC`), made with the
`openssl` command and the system's GOST engine, since ``cryptography`` cannot issue GOST
certificates.

A country named with ``--gost`` gets a second CA beside its RSA/ECDSA one,
``trust/<CC>/gost-ca.pem`` (GOST R 34.10-2012-256, CryptoPro-A). Its participants get a GOST
signing identity, ``participants/<ID>/signing/{key,cert}.pem``. Their TLS identity stays the
ECDSA one in ``participants/<ID>/``, because Python's TLS stack has no GOST cipher suites. Both
identities chain to certs/trust/<CC>/, as SPEC §6 asks. Never use these keys in production.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from broker.errors import ConfigError
from broker.signing import gost

ENGINE_CONF = """\
openssl_conf = openssl_def
[openssl_def]
engines = engine_section
[engine_section]
gost = gost_section
[gost_section]
engine_id = gost
default_algorithms = ALL
"""
EXTENSIONS = """\
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[signing]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def signing_identity(participant_folder: Path) -> tuple[Path, Path]:
    """(key, cert) a participant signs with: its ``signing/`` identity when it has one (GOST),
    else its TLS identity."""
    signing = participant_folder / "signing"
    if (signing / "key.pem").exists():
        return signing / "key.pem", signing / "cert.pem"
    return participant_folder / "key.pem", participant_folder / "cert.pem"


class _OpenSsl:
    def __init__(self, work: Path) -> None:
        if shutil.which("openssl") is None or not gost.available():
            raise ConfigError(f"--gost: {gost.MISSING}, and the openssl command")
        self.work = work
        (work / "engine.cnf").write_text(ENGINE_CONF)
        (work / "ext.cnf").write_text(EXTENSIONS)

    def __call__(self, *args: str) -> None:
        env = {**os.environ, "OPENSSL_CONF": str(self.work / "engine.cnf")}
        result = subprocess.run(
            ["openssl", *args], check=False, cwd=self.work, env=env, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise ConfigError(f"openssl {args[0]} failed: {result.stderr.strip().splitlines()[-1]}")

    def key(self, path: Path) -> None:
        self("genpkey", "-algorithm", "gost2012_256", "-pkeyopt", "paramset:A", "-out", str(path))
        path.chmod(0o600)


def create_gost_identities(
    out: Path, participants: dict[str, str], countries: set[str], *, force: bool = False
) -> list[str]:
    """GOST CAs for ``countries`` and signing identities for their ``participants`` (id →
    country) under ``out``; the created paths, relative to ``out``."""
    made: list[str] = []
    out = out.resolve()  # openssl runs in a work folder: a relative path would land there
    with tempfile.TemporaryDirectory() as temporary:
        openssl = _OpenSsl(Path(temporary))
        for country in sorted(countries):
            ca_cert = out / "trust" / country / "gost-ca.pem"
            ca_key = out / "dev-ca-keys" / f"{country}-gost.pem"
            if force or not (ca_cert.exists() and ca_key.exists()):
                ca_cert.parent.mkdir(parents=True, exist_ok=True)
                ca_key.parent.mkdir(parents=True, exist_ok=True)
                openssl.key(ca_key)
                openssl(
                    "req",
                    "-new",
                    "-x509",
                    "-key",
                    str(ca_key),
                    "-days",
                    "3650",
                    "-subj",
                    f"/C={country}/O=EAEU gateway development PKI/CN={country} GOST development CA",
                    "-config",
                    "ext.cnf",
                    "-extensions",
                    "ca",
                    "-md_gost12_256",
                    "-out",
                    str(ca_cert),
                )
                made.append(f"trust/{country}/gost-ca.pem")
            for pid in sorted(p for p, cc in participants.items() if cc == country):
                folder = out / "participants" / pid / "signing"
                if not force and (folder / "key.pem").exists():
                    continue
                folder.mkdir(parents=True, exist_ok=True)
                openssl.key(folder / "key.pem")
                csr = Path(temporary) / f"{pid}.csr"
                openssl(
                    "req",
                    "-new",
                    "-key",
                    str(folder / "key.pem"),
                    "-subj",
                    f"/C={country}/CN={pid}",
                    "-config",
                    "ext.cnf",
                    "-md_gost12_256",
                    "-out",
                    str(csr),
                )
                openssl(
                    "x509",
                    "-req",
                    "-in",
                    str(csr),
                    "-CA",
                    str(ca_cert),
                    "-CAkey",
                    str(ca_key),
                    "-set_serial",
                    str(int.from_bytes(os.urandom(8), "big")),
                    "-days",
                    "730",
                    "-extfile",
                    "ext.cnf",
                    "-extensions",
                    "signing",
                    "-md_gost12_256",
                    "-out",
                    str(folder / "cert.pem"),
                )
                made.append(f"participants/{pid}/signing/key.pem, cert.pem (GOST)")
    return made
