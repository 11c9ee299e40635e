-- Per-submission facts for `broker conformance sender` (SPEC §10): one row per answered
-- submission, written in the transaction of its acceptance or rejection (busy answers: one
-- per sender and second at most).
CREATE TABLE submissions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    sender          TEXT,
    at              REAL NOT NULL,
    message_id      TEXT,
    digest          TEXT,
    status          INTEGER NOT NULL,
    code            TEXT NOT NULL,
    keyinfo         TEXT,
    algorithm       TEXT,
    skew            REAL,
    retry_after     REAL
);
CREATE INDEX submissions_sender ON submissions (sender, at);
