-- The tamper-evident audit log (SPEC §10): one chain of entries, each holding the SHA-256 of the
-- previous one and the gateway's signature over its own hash.
CREATE TABLE audit_log (
    seq             INTEGER PRIMARY KEY,
    at              TEXT NOT NULL,
    event           TEXT NOT NULL,
    message_id      TEXT,
    track_id        TEXT,
    destination     TEXT,
    detail          TEXT NOT NULL,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL,
    signature       TEXT NOT NULL
);
