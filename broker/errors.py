"""Every error the gateway raises on purpose, each tied to its SPEC §8 code and HTTP status.

The tree::

    GatewayError                      code, status, message ("what and where")
    ├── RefusalError                  an intake refusal answered with a receipt or a 413/415
    │   ├── TooLarge                  TOO_LARGE              413
    │   ├── UnsupportedMediaType      UNSUPPORTED_MEDIA_TYPE 415
    │   ├── MalformedXml              MALFORMED_XML          400
    │   ├── NotAnEnvelope             NOT_AN_ENVELOPE        400
    │   ├── EnvelopeInvalid           ENVELOPE_INVALID       422
    │   ├── UnknownDocument           UNKNOWN_DOCUMENT       422
    │   ├── SchemaInvalid             SCHEMA_INVALID         422  (carries every schema error)
    │   ├── SignatureMissing          SIGNATURE_MISSING      422
    │   ├── SignatureInvalid          SIGNATURE_INVALID      422
    │   ├── CertificateUntrusted      CERTIFICATE_UNTRUSTED  403
    │   ├── SenderMismatch            SENDER_MISMATCH        403
    │   ├── NoRoute                   NO_ROUTE               403
    │   ├── RouteDenied               ROUTE_DENIED           403
    │   └── DuplicateConflict         DUPLICATE_CONFLICT     409
    ├── DeliveryError                 only ever written into Failed receipts
    │   ├── DestinationRejected       DESTINATION_REJECTED
    │   └── DeliveryExpired           DELIVERY_EXPIRED
    ├── ImportRefused                 `broker xsd import` refused a schema; nothing changed (exit 1)
    ├── UsageError                    a command's argument names nothing there (exit 2)
    └── ConfigError                   a broken routing table, catalog, or certs/ folder (exit 2)

The refusals are listed in the SPEC §8 order of precedence: where several apply, the first wins.
The intake pipeline's stage order (broker/intake.py) is what enforces it.

Errors from the libraries underneath (lxml, xmlschema, cryptography, yaml) are translated into
this tree at the stage that calls them, with ``raise ... from exc``, so the HTTP layer and the CLI
map errors in exactly one place.
"""

from __future__ import annotations

import re
from typing import ClassVar


class GatewayError(Exception):
    """Base of every error raised on purpose; ``message`` says what and where."""

    code: ClassVar[str] = "INTERNAL"
    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def details(self) -> tuple[str, ...]:
        """One line per individual problem (several for SCHEMA_INVALID)."""
        return (self.message,)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class RefusalError(GatewayError):
    """An intake refusal (SPEC §8)."""

    @property
    def loggable(self) -> str:
        """The reason fit for the log: without the document's field values (see SchemaInvalid).
        The Rejected receipt to the sender keeps the full text."""
        return self.message


class TooLarge(RefusalError):
    code = "TOO_LARGE"
    status = 413


class UnsupportedMediaType(RefusalError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    status = 415


class MalformedXml(RefusalError):
    code = "MALFORMED_XML"
    status = 400


class NotAnEnvelope(RefusalError):
    code = "NOT_AN_ENVELOPE"
    status = 400


class EnvelopeInvalid(RefusalError):
    code = "ENVELOPE_INVALID"
    status = 422


class UnknownDocument(RefusalError):
    code = "UNKNOWN_DOCUMENT"
    status = 422


class SchemaInvalid(RefusalError):
    code = "SCHEMA_INVALID"
    status = 422

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)

    @property
    def details(self) -> tuple[str, ...]:
        return self.problems

    @property
    def loggable(self) -> str:
        """Path and rule of each error, never the value: documents carry personal data
        (names, addresses, taxpayer ids) that must not end up in the logs."""
        return "; ".join(_VALUE.sub("(value withheld)", p) for p in self.problems)


# libxml2 quotes the offending value as "The value '…'", "'…' is not a valid value" or
# "[facet …] The value '…' …"; the pattern and the element names stay.
_VALUE = re.compile(r"(?<=[Vv]alue )'[^']*'|'[^']*'(?= is not a valid value)")


class SignatureMissing(RefusalError):
    code = "SIGNATURE_MISSING"
    status = 422


class SignatureInvalid(RefusalError):
    code = "SIGNATURE_INVALID"
    status = 422


class CertificateUntrusted(RefusalError):
    code = "CERTIFICATE_UNTRUSTED"
    status = 403


class SenderMismatch(RefusalError):
    code = "SENDER_MISMATCH"
    status = 403


class NoRoute(RefusalError):
    code = "NO_ROUTE"
    status = 403


class RouteDenied(RefusalError):
    code = "ROUTE_DENIED"
    status = 403


class DuplicateConflict(RefusalError):
    code = "DUPLICATE_CONFLICT"
    status = 409


class DeliveryError(GatewayError):
    """A destination's final failure, written into its Failed receipt."""


class DestinationRejected(DeliveryError):
    code = "DESTINATION_REJECTED"


class DeliveryExpired(DeliveryError):
    code = "DELIVERY_EXPIRED"


class ImportRefused(GatewayError):
    """A registry folder ``broker xsd import`` refuses: invalid or conflicting schemas."""

    code = "IMPORT_REFUSED"


class UsageError(GatewayError):
    """A command-line value that names nothing known: an unknown participant or MessageID."""

    code = "USAGE"


class ConfigError(GatewayError):
    """Configuration the gateway cannot start or reload with (routing, catalog, certs)."""

    code = "CONFIG_ERROR"


_REPR = re.compile(r"\s*\b\w+:<[^<>]* object at 0x[0-9a-f]+>|<[^<>]* object at 0x[0-9a-f]+>")


def plain(exc: BaseException) -> str:
    """An exception as words for an operator: its message without Python object reprs
    (aiohttp writes ``ssl:<ssl.SSLContext object at 0x…>`` into connection errors)."""
    text = _REPR.sub("", str(exc)).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
