-- Named queries for the PostgreSQL store. Each block starts with "-- name: <name>"; :name
-- parameters are turned into $n by broker/store/queries.py.

-- name: insert_message
INSERT INTO messages (track_id, sender, message_id, digest, accepted_at, route, table_digest,
                      action, document, recipient, accepted_receipt, raw, forwarded,
                      upstream_track_id, reply_to)
VALUES (:track_id, :sender, :message_id, :digest, :accepted_at, :route, :table_digest,
        :action, :document, :recipient, :accepted_receipt, :raw, :forwarded,
        :upstream_track_id, :reply_to)
ON CONFLICT (sender, message_id) DO NOTHING
RETURNING track_id;

-- name: insert_job
INSERT INTO jobs (track_id, kind, destination, endpoint, receipt_id, state, attempts,
                  max_attempts, initial_delay, max_delay, deadline, next_attempt, updated_at)
VALUES (:track_id, :kind, :destination, :endpoint, :receipt_id, 'pending', 0,
        :max_attempts, :initial_delay, :max_delay, :deadline, :next_attempt, :now);

-- name: insert_receipt
INSERT INTO receipts (receipt_id, track_id, message_id, sender, kind, destination, issued_at,
                      body)
VALUES (:receipt_id, :track_id, :message_id, :sender, :kind, :destination, :issued_at, :body);

-- name: find_accepted
SELECT m.digest, r.body
FROM messages m JOIN receipts r ON r.receipt_id = m.accepted_receipt
WHERE m.sender = :sender AND m.message_id = :message_id;

-- name: claim
-- FOR UPDATE SKIP LOCKED: concurrent workers on several nodes never wait for, nor take, the
-- same job; an expired lease (its holder crashed) makes a job claimable again.
WITH due AS (
    -- At most :room_default per destination, or what :rooms (JSON destination → free slots)
    -- allows: a saturated destination, or one behind an open breaker (room 0), gets no lease.
    SELECT id, next_attempt,
           ROW_NUMBER() OVER (PARTITION BY destination ORDER BY next_attempt, id) AS rank,
           COALESCE((CAST(:rooms AS JSONB) ->> destination)::INT, :room_default) AS room
    FROM jobs
    WHERE state = 'pending' AND next_attempt <= :now
      AND (lease_expires IS NULL OR lease_expires < :now)
), picked AS (
    -- LIMIT and SKIP LOCKED in one SELECT: rows other workers hold are skipped and the scan
    -- goes on, so concurrent claims share the due jobs without waiting for each other.
    SELECT j.id FROM jobs j JOIN due ON due.id = j.id
    WHERE due.rank <= due.room
      -- Checked again on the row as it is when locked: a job another worker leased and
      -- committed since this query's snapshot is not taken twice.
      AND j.state = 'pending' AND (j.lease_expires IS NULL OR j.lease_expires < :now)
    ORDER BY due.next_attempt
    LIMIT :limit
    FOR UPDATE OF j SKIP LOCKED
), leased AS (
    UPDATE jobs j SET lease_owner = :owner, lease_expires = :expires, updated_at = :now
    FROM picked WHERE j.id = picked.id
    RETURNING j.*
)
SELECT l.id, l.track_id, l.kind, l.destination, l.endpoint, l.receipt_id, l.attempts,
       l.max_attempts, l.initial_delay, l.max_delay, l.deadline,
       m.sender, m.message_id, m.digest, m.route, m.table_digest, m.accepted_at,
       CASE WHEN l.kind = 'message' THEN m.forwarded ELSE r.body END AS payload
FROM leased l JOIN messages m ON m.track_id = l.track_id
LEFT JOIN receipts r ON r.receipt_id = l.receipt_id;

-- name: finish_job
UPDATE jobs SET state = :state, attempts = :attempts, last_error = :last_error,
                lease_owner = NULL, lease_expires = NULL, updated_at = :now
WHERE id = :id AND lease_owner = :owner;

-- name: reschedule_job
UPDATE jobs SET attempts = :attempts, next_attempt = :next_attempt, last_error = :last_error,
                lease_owner = NULL, lease_expires = NULL, updated_at = :now
WHERE id = :id AND lease_owner = :owner;

-- name: release_leases
UPDATE jobs SET lease_owner = NULL, lease_expires = NULL
WHERE lease_owner = :owner AND state = 'pending';

-- name: message_by_sender
SELECT track_id, sender, message_id, route, accepted_at, upstream_track_id FROM messages
WHERE sender = :sender AND message_id = :message_id;

-- name: message_by_id
SELECT track_id, sender, message_id, route, accepted_at, upstream_track_id FROM messages
WHERE message_id = :message_id
ORDER BY accepted_at;

-- name: jobs_of_message
SELECT destination, kind, state, attempts, last_error, next_attempt FROM jobs
WHERE track_id = :track_id AND kind = 'message'
ORDER BY id;

-- name: receipts_of_message
SELECT receipt_id, kind, destination FROM receipts
WHERE track_id = :track_id
ORDER BY issued_at, receipt_id;

-- name: receipt
SELECT sender, body FROM receipts WHERE receipt_id = :receipt_id;

-- name: list_messages
SELECT m.track_id, m.sender, m.message_id, m.route, m.accepted_at, m.upstream_track_id
FROM messages m
WHERE (CAST(:sender AS TEXT) IS NULL OR m.sender = :sender)
  AND (CAST(:since AS TEXT) IS NULL OR m.accepted_at >= :since)
ORDER BY m.accepted_at DESC
LIMIT :limit;

-- name: retry_jobs
UPDATE jobs SET state = 'pending', next_attempt = :now, deadline = GREATEST(deadline, :deadline),
                attempts = 0, lease_owner = NULL, lease_expires = NULL, updated_at = :now
WHERE track_id = :track_id AND kind = 'message' AND state = 'failed'
  AND (CAST(:destination AS TEXT) IS NULL OR destination = :destination);

-- name: counts
SELECT state, COUNT(*) AS n, MIN(CASE WHEN state = 'pending' THEN updated_at END) AS oldest
FROM jobs WHERE kind = 'message' GROUP BY state;

-- name: audit_lock
-- One chain across every node: appends are serialised until the transaction commits.
SELECT pg_advisory_xact_lock(7013586202);

-- name: audit_head
SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1;

-- name: audit_append
INSERT INTO audit_log (seq, at, event, message_id, track_id, destination, detail, prev_hash,
                       hash, signature)
VALUES (:seq, :at, :event, :message_id, :track_id, :destination, :detail, :prev_hash, :hash,
        :signature);

-- name: audit_range
SELECT seq, at, event, message_id, track_id, destination, detail, prev_hash, hash, signature
FROM audit_log WHERE seq >= :first AND seq <= :last ORDER BY seq;

-- name: related_messages
-- The messages a signal's wsa:RelatesTo names (one MessageID may come from several senders).
SELECT track_id, sender, reply_to FROM messages WHERE message_id = :message_id;

-- name: pending_by_destination
SELECT destination, COUNT(*) AS n FROM jobs WHERE state = 'pending' GROUP BY destination;
