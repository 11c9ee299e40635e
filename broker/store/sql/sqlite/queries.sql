-- Named queries for the SQLite store. Each block starts with "-- name: <name>".

-- name: insert_message
INSERT INTO messages (track_id, sender, message_id, digest, accepted_at, route, table_digest,
                      action, document, recipient, accepted_receipt, raw, forwarded,
                      upstream_track_id, reply_to)
VALUES (:track_id, :sender, :message_id, :digest, :accepted_at, :route, :table_digest,
        :action, :document, :recipient, :accepted_receipt, :raw, :forwarded,
        :upstream_track_id, :reply_to);

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

-- name: due_jobs
-- Due jobs, at most :room_default per destination, or what :rooms (a JSON object
-- destination → free slots) allows for it: a destination that is saturated or behind an open
-- circuit breaker (room 0) gets no lease, so the others flow.
SELECT id FROM (
    SELECT id, next_attempt,
           ROW_NUMBER() OVER (PARTITION BY destination ORDER BY next_attempt, id) AS rank,
           COALESCE(json_extract(:rooms, '$."' || destination || '"'), :room_default) AS room
    FROM jobs
    WHERE state = 'pending' AND next_attempt <= :now
      AND (lease_expires IS NULL OR lease_expires < :now)
)
WHERE rank <= room
ORDER BY next_attempt
LIMIT :limit;

-- name: lease_job
UPDATE jobs SET lease_owner = :owner, lease_expires = :expires, updated_at = :now
WHERE id = :id AND state = 'pending' AND (lease_expires IS NULL OR lease_expires < :now);

-- name: leased_job
SELECT j.id, j.track_id, j.kind, j.destination, j.endpoint, j.receipt_id, j.attempts,
       j.max_attempts, j.initial_delay, j.max_delay, j.deadline,
       m.sender, m.message_id, m.digest, m.route, m.table_digest, m.accepted_at,
       CASE WHEN j.kind = 'message' THEN m.forwarded ELSE r.body END AS payload
FROM jobs j JOIN messages m ON m.track_id = j.track_id
LEFT JOIN receipts r ON r.receipt_id = j.receipt_id
WHERE j.id = :id AND j.lease_owner = :owner;

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
WHERE (:sender IS NULL OR m.sender = :sender) AND (:since IS NULL OR m.accepted_at >= :since)
ORDER BY m.accepted_at DESC
LIMIT :limit;

-- name: retry_jobs
UPDATE jobs SET state = 'pending', next_attempt = :now, deadline = MAX(deadline, :deadline),
                attempts = 0, max_attempts = MAX(max_attempts, 1), lease_owner = NULL,
                lease_expires = NULL, updated_at = :now
WHERE track_id = :track_id AND kind = 'message' AND state = 'failed'
  AND (:destination IS NULL OR destination = :destination);

-- name: counts
SELECT state, COUNT(*) AS n, MIN(CASE WHEN state = 'pending' THEN updated_at END) AS oldest
FROM jobs WHERE kind = 'message' GROUP BY state;

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
