"""The OpenAPI 3.1 description of the intake and admin HTTP APIs (SPEC §7).

Served at ``GET /openapi.json`` on the admin listener and kept in ``docs/openapi.json``;
``tests/e2e/test_openapi.py`` holds it equal to the routes the two apps really serve, and runs
schemathesis against the admin API with it.
"""

from __future__ import annotations

from typing import Any

from broker import __version__

JSON = "application/json"
XML = "application/xml"
SOAP = "application/soap+xml"

_ID = {"type": "string", "description": "urn:uuid:… or the bare uuid"}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _retry_after(description: str) -> dict[str, Any]:
    return {
        **_problem(description),
        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 0}}},
    }


def _receipt(description: str) -> dict[str, Any]:
    return {"description": description, "content": {XML: {"schema": {"type": "string"}}}}


_TOKEN: list[dict[str, list[str]]] = [{"operatorToken": []}]


def _reload(summary: str) -> dict[str, Any]:
    reloaded = {"$ref": "#/components/schemas/Reload"}
    return {
        "tags": ["admin"],
        "summary": summary,
        "security": _TOKEN,
        "responses": {
            "200": {
                "description": "the new set is in force",
                "content": {JSON: {"schema": reloaded}},
            },
            "401": _problem("operator token required"),
            "422": {
                "description": "refused: the set in force stays; every error listed",
                "content": {JSON: {"schema": reloaded}},
            },
        },
    }


DESCRIPTION: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "EAEU single-window gateway",
        "version": __version__,
        "description": "Intake (mutual TLS, participants) and admin (operators) APIs of the "
        "gateway. The contract is SPEC §7; refusals carry their SPEC §8 code.",
    },
    "servers": [
        {"url": "https://127.0.0.1:8443", "description": "intake listener (mTLS)"},
        {"url": "http://127.0.0.1:8081", "description": "admin listener"},
    ],
    "tags": [
        {"name": "intake", "description": "participants, over mutual TLS"},
        {"name": "admin", "description": "operators: health, metrics, messages, reload"},
    ],
    "paths": {
        "/v1/messages": {
            "post": {
                "tags": ["intake"],
                "summary": "Submit a signed envelope (SPEC §1–§4)",
                "requestBody": {
                    "required": True,
                    "content": {
                        SOAP: {"schema": {"type": "string"}},
                        XML: {"schema": {"type": "string"}},
                        "text/xml": {"schema": {"type": "string"}},
                    },
                },
                "responses": {
                    "202": _receipt("Accepted receipt: stored durably"),
                    "200": _receipt("the original Accepted receipt of an identical resubmission"),
                    "400": _receipt("Rejected receipt: MALFORMED_XML, NOT_AN_ENVELOPE"),
                    "403": _receipt("Rejected receipt: CERTIFICATE_UNTRUSTED … ROUTE_DENIED"),
                    "409": _receipt("Rejected receipt: DUPLICATE_CONFLICT"),
                    "413": _problem("TOO_LARGE, answered before the body is read"),
                    "415": _problem("UNSUPPORTED_MEDIA_TYPE"),
                    "422": _receipt("Rejected receipt: ENVELOPE_INVALID … SIGNATURE_INVALID"),
                    "503": _retry_after(
                        "BUSY or STORE_UNAVAILABLE: nothing was stored, or the body says the "
                        "outcome is unknown; an identical resubmission is safe"
                    ),
                },
            }
        },
        "/v1/messages/{message_id}": {
            "get": {
                "tags": ["intake"],
                "summary": "Status of one of the caller's messages",
                "parameters": [
                    {"name": "message_id", "in": "path", "required": True, "schema": _ID}
                ],
                "responses": {
                    "200": {
                        "description": "the SPEC §7 status JSON",
                        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Status"}}},
                    },
                    "404": _problem("no such message of the caller's"),
                },
            }
        },
        "/v1/receipts/{receipt_id}": {
            "get": {
                "tags": ["intake"],
                "summary": "One of the caller's receipts, byte for byte",
                "parameters": [
                    {"name": "receipt_id", "in": "path", "required": True, "schema": _ID}
                ],
                "responses": {
                    "200": _receipt("the stored receipt"),
                    "404": _problem("no such receipt of the caller's"),
                },
            }
        },
        "/healthz": {
            "get": {
                "tags": ["admin"],
                "summary": "The process is alive",
                "responses": {
                    "200": {"description": "ok", "content": {"text/plain": {"schema": {}}}}
                },
            }
        },
        "/readyz": {
            "get": {
                "tags": ["admin"],
                "summary": "Ready: started and the store can read and write",
                "responses": {
                    "200": {"description": "ready", "content": {"text/plain": {"schema": {}}}},
                    "503": {"description": "not ready", "content": {"text/plain": {"schema": {}}}},
                },
            }
        },
        "/metrics": {
            "get": {
                "tags": ["admin"],
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {"description": "metrics", "content": {"text/plain": {"schema": {}}}}
                },
            }
        },
        "/openapi.json": {
            "get": {
                "tags": ["admin"],
                "summary": "This description",
                "responses": {
                    "200": {"description": "OpenAPI 3.1", "content": {JSON: {"schema": {}}}}
                },
            }
        },
        "/admin/messages": {
            "get": {
                "tags": ["admin"],
                "summary": "Messages in the store, newest first",
                "security": _TOKEN,
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["pending", "delivered", "failed"]},
                    },
                    {"name": "sender", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "since",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "format": "date-time",
                            "description": "accepted at or after (RFC 3339, any offset)",
                        },
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "the status JSON of each, with its state",
                        "content": {
                            JSON: {
                                "schema": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Status"},
                                }
                            }
                        },
                    },
                    "400": _problem("a query parameter out of range, with the reason"),
                    "401": _problem("operator token required"),
                },
            }
        },
        "/admin/messages/{message_id}/retry": {
            "post": {
                "tags": ["admin"],
                "summary": "Put a message's Failed destinations back to pending (audited)",
                "security": _TOKEN,
                "parameters": [
                    {"name": "message_id", "in": "path", "required": True, "schema": _ID},
                    {"name": "destination", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {"description": "retried", "content": {JSON: {"schema": {}}}},
                    "401": _problem("operator token required"),
                    "404": {
                        "description": "no failed destination of such a message",
                        "content": {JSON: {"schema": {}}},
                    },
                },
            }
        },
        "/admin/routing": {
            "get": {
                "tags": ["admin"],
                "summary": "The routing table in force",
                "security": _TOKEN,
                "responses": {
                    "200": {"description": "the table", "content": {JSON: {"schema": {}}}},
                    "401": _problem("operator token required"),
                },
            }
        },
        "/admin/reload": {
            "post": _reload("Reload routing.yaml, the catalog and certs/ as one set")
        },
        "/admin/routing/reload": {"post": _reload("The same as /admin/reload (the v1 address)")},
    },
    "components": {
        "securitySchemes": {
            "operatorToken": {
                "type": "http",
                "scheme": "bearer",
                "description": "the --admin-token / BROKER_ADMIN_TOKEN, when one is set",
            }
        },
        "schemas": {
            "Problem": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            },
            "Status": {
                "type": "object",
                "required": [
                    "message_id",
                    "track_id",
                    "upstream_track_id",
                    "sender",
                    "route",
                    "destinations",
                    "receipts",
                ],
                "properties": {
                    "message_id": {"type": "string"},
                    "track_id": {"type": "string"},
                    "upstream_track_id": {"type": ["string", "null"]},
                    "sender": {"type": "string"},
                    "route": {"type": "string"},
                    "state": {"type": "string", "enum": ["pending", "delivered", "failed"]},
                    "accepted_at": {"type": "string"},
                    "destinations": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["participant", "state", "attempts", "last_error"],
                            "properties": {
                                "participant": {"type": "string"},
                                "state": {
                                    "type": "string",
                                    "enum": ["pending", "delivered", "failed"],
                                },
                                "attempts": {"type": "integer", "minimum": 0},
                                "last_error": {"type": ["string", "null"]},
                            },
                        },
                    },
                    "receipts": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["id", "kind", "destination"],
                            "properties": {
                                "id": {"type": "string"},
                                "kind": {"type": "string"},
                                "destination": {"type": ["string", "null"]},
                            },
                        },
                    },
                },
            },
            "Reload": {
                "type": "object",
                "required": ["reloaded", "digest", "digests", "errors", "warnings"],
                "properties": {
                    "reloaded": {"type": "boolean"},
                    "digest": {"type": "string"},
                    "digests": {"type": "object", "additionalProperties": {"type": "string"}},
                    "errors": {"type": "array", "items": {"type": "string"}},
                    "warnings": {"type": "array", "items": {"type": "string"}},
                    "not_reloaded": {"type": "string"},
                },
            },
        },
    },
}
