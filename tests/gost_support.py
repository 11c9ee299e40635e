"""GOST R 34.10-2012 certificates, keys and CRLs made with the `openssl` command and Debian's
GOST engine: an implementation independent of the gateway's own code paths (it verifies and
judges chains with `openssl verify`)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.gost_pki import ENGINE_CONF
from broker.signing import gost

EXTENSIONS = """\
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth,serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[no_signing]
basicConstraints = critical,CA:FALSE
keyUsage = critical,keyEncipherment
[ca_db]
database = index.txt
crlnumber = crlnumber
default_md = md_gost12_256
default_crl_days = 30
"""


def require_gost() -> None:
    """Skip without the backend on a laptop; CI installs it and must run these."""
    if not gost.available() or shutil.which("openssl") is None:
        if os.environ.get("CI") or os.environ.get("BROKER_REQUIRE_GOST"):
            pytest.fail("the GOST backend (libengine-gost-openssl) must be installed in CI")
        pytest.skip("libengine-gost-openssl is not installed")


@dataclass
class GostPki:
    folder: Path

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "engine.cnf").write_text(ENGINE_CONF)
        (self.folder / "ext.cnf").write_text(EXTENSIONS)

    def openssl(self, *args: str) -> str:
        env = {**os.environ, "OPENSSL_CONF": str(self.folder / "engine.cnf")}
        result = subprocess.run(
            ["openssl", *args],
            check=False,
            cwd=self.folder,
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)}: {result.stderr}")
        return result.stdout

    def key(self, name: str, bits: int = 256, paramset: str = "A") -> Path:
        path = self.folder / f"{name}.key"
        self.openssl(
            "genpkey",
            "-algorithm",
            f"gost2012_{bits}",
            "-pkeyopt",
            f"paramset:{paramset}",
            "-out",
            str(path),
        )
        return path

    def ca(self, name: str, subject: str, bits: int = 256) -> Path:
        key = self.key(name, bits)
        cert = self.folder / f"{name}.pem"
        self.openssl(
            "req",
            "-new",
            "-x509",
            "-key",
            str(key),
            "-subj",
            subject,
            "-days",
            "30",
            "-config",
            "ext.cnf",
            "-extensions",
            "ca",
            f"-md_gost12_{bits}",
            "-out",
            str(cert),
        )
        return cert

    def leaf(
        self,
        name: str,
        subject: str,
        ca: str,
        *,
        bits: int = 256,
        days: int = 30,
        extensions: str = "leaf",
    ) -> Path:
        key = self.key(name, bits)
        csr = self.folder / f"{name}.csr"
        self.openssl(
            "req",
            "-new",
            "-key",
            str(key),
            "-subj",
            subject,
            "-config",
            "ext.cnf",
            f"-md_gost12_{bits}",
            "-out",
            str(csr),
        )
        cert = self.folder / f"{name}.pem"
        ca_bits = (
            512
            if "512"
            in self.openssl("x509", "-in", f"{ca}.pem", "-noout", "-text")
            .split("Public Key Algorithm", 1)[1]
            .split("\n", 1)[0]
            else 256
        )
        self.openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            f"{ca}.pem",
            "-CAkey",
            f"{ca}.key",
            "-CAcreateserial",
            "-days",
            str(days),
            "-extfile",
            "ext.cnf",
            "-extensions",
            extensions,
            f"-md_gost12_{ca_bits}",
            "-out",
            str(cert),
        )
        return cert

    def crl(self, ca: str, revoked: Path | None = None) -> Path:
        """A CRL of ``ca`` (revoking ``revoked``, if given), made with `openssl ca`."""
        (self.folder / "index.txt").write_text("")
        (self.folder / "crlnumber").write_text("01\n")
        config = self.folder / "ca.cnf"
        config.write_text(f"[ca]\ndefault_ca = ca_db\n{EXTENSIONS}")
        common = (
            "-config",
            str(config),
            "-name",
            "ca_db",
            "-cert",
            f"{ca}.pem",
            "-keyfile",
            f"{ca}.key",
        )
        if revoked is not None:
            self.openssl("ca", *common, "-revoke", str(revoked))
        out = self.folder / f"{ca}.crl.pem"
        self.openssl("ca", *common, "-gencrl", "-out", str(out))
        return out

    def verify(
        self, cert: Path, ca: Path, *, crl: Path | None = None, at: dt.datetime | None = None
    ) -> bool:
        """`openssl verify`'s judgment of ``cert`` under ``ca`` (and ``crl``), at ``at``."""
        args = ["verify", "-CAfile", str(ca), "-purpose", "any"]
        if crl is not None:
            args += ["-CRLfile", str(crl), "-crl_check"]
        if at is not None:
            args += ["-attime", str(int(at.timestamp()))]
        try:
            self.openssl(*args, str(cert))
        except RuntimeError:
            return False
        return True
