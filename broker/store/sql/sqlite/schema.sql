-- The declared schema: what applying every migration in migrations/ must produce.
-- tests/store/test_migrations.py holds the two to each other; change both together.
CREATE TABLE messages (
    track_id        TEXT PRIMARY KEY,
    sender          TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    digest          TEXT NOT NULL,            -- base64 SHA-256 of the exact request body
    accepted_at     TEXT NOT NULL,            -- YYYY-MM-DDThh:mm:ss.sssZ
    route           TEXT NOT NULL,
    table_digest    TEXT NOT NULL,
    action          TEXT NOT NULL,
    document        TEXT NOT NULL,
    recipient       TEXT NOT NULL,            -- wsa:To
    accepted_receipt TEXT NOT NULL,
    raw             BLOB NOT NULL,            -- the exact received bytes
    forwarded       BLOB NOT NULL,            -- what destinations receive (SPEC §3)
    upstream_track_id TEXT,                   -- an upstream int:Integration's TrackID
    reply_to        TEXT,                     -- wsa:ReplyTo/wsa:Address
    purged_at       TEXT,                     -- when retention emptied raw and forwarded
    UNIQUE (sender, message_id)
);

CREATE INDEX messages_listing ON messages (accepted_at, track_id);
CREATE INDEX messages_message_id ON messages (message_id);
CREATE INDEX messages_upstream ON messages (upstream_track_id) WHERE upstream_track_id IS NOT NULL;

CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    track_id        TEXT NOT NULL REFERENCES messages (track_id),
    kind            TEXT NOT NULL CHECK (kind IN ('message', 'receipt')),
    destination     TEXT NOT NULL,            -- participant id
    endpoint        TEXT NOT NULL,
    receipt_id      TEXT,                     -- for kind = 'receipt': the receipt pushed
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    initial_delay   REAL NOT NULL,
    max_delay       REAL NOT NULL,
    deadline        REAL NOT NULL,            -- epoch seconds: acceptance + ttl
    next_attempt    REAL NOT NULL,            -- epoch seconds
    lease_owner     TEXT,
    lease_expires   REAL,
    last_error      TEXT,
    updated_at      REAL NOT NULL
);
CREATE INDEX jobs_due ON jobs (state, next_attempt);
CREATE INDEX jobs_track ON jobs (track_id);
CREATE INDEX jobs_destination ON jobs (destination, state, updated_at);

CREATE TABLE receipts (
    receipt_id      TEXT PRIMARY KEY,
    track_id        TEXT,                     -- NULL on Rejected
    message_id      TEXT,
    sender          TEXT,
    kind            TEXT NOT NULL,
    destination     TEXT,
    issued_at       TEXT NOT NULL,
    body            BLOB NOT NULL             -- the signed receipt, byte for byte
, code TEXT);                                 -- Rejected, Failed: the SPEC §8 code (migration 006)
CREATE INDEX receipts_track ON receipts (track_id);
CREATE INDEX receipts_sender_message ON receipts (sender, message_id);
CREATE INDEX receipts_rejected ON receipts (issued_at, receipt_id) WHERE kind = 'Rejected';
CREATE INDEX receipts_code ON receipts (code) WHERE code IS NOT NULL;
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
CREATE INDEX audit_message ON audit_log (message_id);

CREATE TABLE submissions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    sender          TEXT,                     -- the TLS participant (or the signer)
    at              REAL NOT NULL,       -- epoch seconds
    message_id      TEXT,
    digest          TEXT,
    status          INTEGER NOT NULL,         -- the HTTP status answered
    code            TEXT NOT NULL,            -- ACCEPTED, a SPEC §8 code, BUSY, …
    keyinfo         TEXT,                     -- the KeyInfo form (SPEC §2 table)
    algorithm       TEXT,                     -- the SignatureMethod URI
    skew            REAL,                -- wsu:Timestamp Created minus the gateway's time, s
    retry_after     REAL                 -- seconds, on a 429/503
);
CREATE INDEX submissions_sender ON submissions (sender, at);
