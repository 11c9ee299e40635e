-- Per-submission facts for `broker conformance sender` (SPEC §10): one row per answered
-- submission, written in the transaction of its acceptance or rejection (busy answers: one
-- per sender and second at most).
CREATE TABLE submissions (
    id              BIGSERIAL PRIMARY KEY,
    sender          TEXT,
    at              DOUBLE PRECISION NOT NULL,
    message_id      TEXT,
    digest          TEXT,
    status          INTEGER NOT NULL,
    code            TEXT NOT NULL,
    keyinfo         TEXT,
    algorithm       TEXT,
    skew            DOUBLE PRECISION,
    retry_after     DOUBLE PRECISION
);
CREATE INDEX submissions_sender ON submissions (sender, at);
