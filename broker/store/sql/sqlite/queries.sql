-- Named queries for the SQLite connector, run by broker/store/ledger.py. Each block starts
-- with "-- name: <name>". postgresql/queries.sql has the same names; keep the two in step.
-- A list parameter (:ids) is a JSON array.

-- name: select_one
SELECT 1 AS one;

-- name: probe_insert
-- Big enough to need fresh pages, as a message does: a store that can only rewrite the pages
-- it has is still full.
INSERT INTO schema_migrations (version, name) VALUES (-1, zeroblob(65536));

-- name: probe_delete
DELETE FROM schema_migrations WHERE version = -1;

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
                      body, code)
VALUES (:receipt_id, :track_id, :message_id, :sender, :kind, :destination, :issued_at, :body,
        :code);

-- name: find_accepted
SELECT m.digest, r.body
FROM messages m JOIN receipts r ON r.receipt_id = m.accepted_receipt
WHERE m.sender = :sender AND m.message_id = :message_id;

-- name: lease_due
-- Due jobs, at most :room_default per destination, or what :rooms (a JSON object
-- destination → free slots) allows for it: a destination that is saturated or behind an open
-- circuit breaker (room 0) gets no lease, so the others flow. Only the :scan earliest due jobs
-- of the destinations with room are ranked (the jobs_due index gives them in order), so a
-- claim costs the same whatever the backlog. The writer holds the database (BEGIN
-- IMMEDIATE), so no other process leases between the choice and the update.
UPDATE jobs SET lease_owner = :owner, lease_expires = :expires, updated_at = :now
WHERE id IN (
    SELECT id FROM (
        SELECT id, next_attempt,
               ROW_NUMBER() OVER (PARTITION BY destination ORDER BY next_attempt, id) AS rank,
               COALESCE(json_extract(:rooms, '$."' || destination || '"'), :room_default) AS room
        FROM (
            SELECT id, destination, next_attempt FROM jobs
            WHERE state = 'pending' AND next_attempt <= :now
              AND (lease_expires IS NULL OR lease_expires < :now)
              AND destination NOT IN (SELECT key FROM json_each(:rooms) WHERE value <= 0)
            ORDER BY next_attempt, id
            LIMIT :scan
        )
    )
    WHERE rank <= room
    ORDER BY next_attempt
    LIMIT :limit
)
RETURNING id;

-- name: leased_jobs
SELECT j.id, j.track_id, j.kind, j.destination, j.endpoint, j.receipt_id, j.attempts,
       j.max_attempts, j.initial_delay, j.max_delay, j.deadline,
       m.sender, m.message_id, m.digest, m.route, m.table_digest, m.accepted_at,
       CASE WHEN j.kind = 'message' THEN m.forwarded ELSE r.body END AS payload
FROM jobs j JOIN messages m ON m.track_id = j.track_id
LEFT JOIN receipts r ON r.receipt_id = j.receipt_id
WHERE j.id IN (SELECT value FROM json_each(:ids)) AND j.lease_owner = :owner
ORDER BY j.next_attempt, j.id;

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

-- name: retry_jobs
UPDATE jobs SET state = 'pending', next_attempt = :now, deadline = MAX(deadline, :deadline),
                attempts = 0, max_attempts = MAX(max_attempts, 1), lease_owner = NULL,
                lease_expires = NULL, updated_at = :now
WHERE track_id IN (SELECT track_id FROM messages WHERE message_id = :message_id)
  AND kind = 'message' AND state = 'failed'
  AND (:destination IS NULL OR destination = :destination);

-- name: message_by_id
-- One MessageID may come from several senders: restricted to :sender unless it is NULL.
SELECT track_id, sender, message_id, route, accepted_at, upstream_track_id, reply_to, purged_at
FROM messages
WHERE message_id = :message_id AND (:sender IS NULL OR sender = :sender)
ORDER BY accepted_at, track_id;

-- name: jobs_of_messages
SELECT track_id, destination, state, attempts, last_error FROM jobs
WHERE track_id IN (SELECT value FROM json_each(:ids)) AND kind = 'message'
ORDER BY id;

-- name: receipts_of_messages
SELECT track_id, receipt_id, kind, destination FROM receipts
WHERE track_id IN (SELECT value FROM json_each(:ids))
ORDER BY issued_at, receipt_id;

-- name: receipt
SELECT sender, body FROM receipts WHERE receipt_id = :receipt_id;

-- name: counts
SELECT state, COUNT(*) AS n, MIN(CASE WHEN state = 'pending' THEN updated_at END) AS oldest
FROM jobs WHERE kind = 'message' GROUP BY state;

-- name: pending_by_destination
SELECT destination, COUNT(*) AS n FROM jobs WHERE state = 'pending' GROUP BY destination;

-- name: audit_lock
-- Nothing to take: the writer's BEGIN IMMEDIATE already holds the database.
SELECT 1;

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

-- name: due_bodies
-- Finished messages (no job pending: every destination and receipt push delivered or failed)
-- whose last job ended before their route's cut-off (:cutoffs, JSON route → epoch seconds),
-- else :default_cutoff; -1 keeps for ever.
SELECT m.track_id, LENGTH(m.raw) + LENGTH(m.forwarded) AS size
FROM messages m
WHERE m.purged_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.track_id = m.track_id AND j.state = 'pending')
  AND (SELECT MAX(j.updated_at) FROM jobs j WHERE j.track_id = m.track_id)
      < COALESCE(json_extract(:cutoffs, '$."' || m.route || '"'), :default_cutoff)
LIMIT :limit;

-- name: empty_bodies
UPDATE messages SET raw = X'', forwarded = X'', purged_at = :now
WHERE track_id IN (SELECT value FROM json_each(:ids));

-- name: due_records
SELECT m.track_id
FROM messages m
WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.track_id = m.track_id AND j.state = 'pending')
  AND (SELECT MAX(j.updated_at) FROM jobs j WHERE j.track_id = m.track_id)
      < COALESCE(json_extract(:cutoffs, '$."' || m.route || '"'), :default_cutoff)
LIMIT :limit;

-- name: delete_receipts
DELETE FROM receipts WHERE track_id IN (SELECT value FROM json_each(:ids));

-- name: delete_jobs
DELETE FROM jobs WHERE track_id IN (SELECT value FROM json_each(:ids));

-- name: delete_messages
DELETE FROM messages WHERE track_id IN (SELECT value FROM json_each(:ids));

-- name: delete_rejected
-- Receipts of no accepted message (Rejected), issued before the default receipts cut-off.
DELETE FROM receipts WHERE track_id IS NULL AND issued_at < :before;

-- name: stored_size
SELECT (SELECT COUNT(*) FROM messages) AS messages,
       (SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()) AS bytes;

-- name: insert_submission
INSERT INTO submissions (sender, at, message_id, digest, status, code, keyinfo, algorithm,
                         skew, retry_after)
VALUES (:sender, :at, :message_id, :digest, :status, :code, :keyinfo, :algorithm, :skew,
        :retry_after);

-- name: submissions_of
SELECT sender, at, message_id, digest, status, code, keyinfo, algorithm, skew, retry_after
FROM submissions WHERE sender = :sender AND at >= :since ORDER BY at, id;

-- name: exchange_matrix
-- The exchange matrix (broker report, the console): per sender, destination and process, the
-- destinations of messages accepted in [:since, :until), by state, with the median and p95
-- milliseconds from acceptance to delivery; with :merge = 1 all processes make one row per
-- sender and destination (process '*'). All in SQL: nothing is loaded into Python.
WITH deliveries AS (
    SELECT m.sender, j.destination,
           CASE WHEN :merge = 1 THEN '*'
                ELSE substr(m.action, 10, instr(substr(m.action, 10), '/') - 1) END AS process,
           j.state,
           CASE WHEN j.state = 'delivered'
                THEN (j.updated_at - (julianday(m.accepted_at) - 2440587.5) * 86400.0) * 1000.0
           END AS ms
    FROM messages m JOIN jobs j ON j.track_id = m.track_id AND j.kind = 'message'
    WHERE m.accepted_at >= :since AND m.accepted_at < :until
      AND (:process IS NULL OR m.action LIKE 'int://CP/' || :process || '/%')
      AND (:document IS NULL OR m.document = :document)
      AND (:state IS NULL OR j.state = :state)
), ranked AS (
    -- One window (one sort) for both: the rank, and the count over the whole partition.
    SELECT sender, destination, process, state, ms, ROW_NUMBER() OVER cell AS rn,
           COUNT(ms) OVER (cell ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS n
    FROM deliveries
    WINDOW cell AS (PARTITION BY sender, destination, process ORDER BY ms NULLS LAST)
)
SELECT sender, destination, process, COUNT(*) AS messages,
       SUM(CASE WHEN state = 'delivered' THEN 1 ELSE 0 END) AS delivered,
       SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) AS failed,
       SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END) AS pending,
       MAX(CASE WHEN rn = (n + 1) / 2 THEN ms END) AS p50_ms,
       MAX(CASE WHEN rn = (95 * n + 99) / 100 THEN ms END) AS p95_ms
FROM ranked
GROUP BY sender, destination, process
ORDER BY sender, destination, process;

-- name: search_messages
-- The message search (the console, the admin listing), newest first after the cursor (:after_at, :after_id): every
-- filter is optional (NULL: any). The listing index serves the order; identity lookups use
-- search_by_identity instead, which starts from the lookup indexes.
SELECT m.track_id, m.sender, m.message_id, m.route, m.accepted_at, m.upstream_track_id,
       m.purged_at
FROM messages m
WHERE (:message_id IS NULL OR m.message_id = :message_id)
  AND (:track_id IS NULL OR m.track_id = :track_id)
  AND (:upstream_track_id IS NULL OR m.upstream_track_id = :upstream_track_id)
  AND (:sender IS NULL OR m.sender = :sender)
  AND (:route IS NULL OR m.route = :route)
  AND (:document IS NULL OR m.document = :document)
  AND (:process IS NULL OR m.action LIKE 'int://CP/' || :process || '/%')
  AND (:since IS NULL OR m.accepted_at >= :since)
  AND (:until IS NULL OR m.accepted_at < :until)
  AND (:after_at IS NULL OR m.accepted_at < :after_at
       OR (m.accepted_at = :after_at AND m.track_id < :after_id))
  AND (:destination IS NULL OR EXISTS (
        SELECT 1 FROM jobs j WHERE j.track_id = m.track_id AND j.kind = 'message'
          AND +j.destination = :destination))  -- by jobs_track, not jobs_destination
  AND (:code IS NULL OR EXISTS (  -- by receipts_track: `+` keeps receipts_code out of it
        SELECT 1 FROM receipts r WHERE r.track_id = m.track_id AND +r.code = :code))
  AND (:state IS NULL OR :state = (
        SELECT CASE WHEN SUM(CASE WHEN j.state = 'pending' THEN 1 ELSE 0 END) > 0 THEN 'pending'
                    WHEN SUM(CASE WHEN j.state = 'failed' THEN 1 ELSE 0 END) > 0 THEN 'failed'
                    ELSE 'delivered' END
        FROM jobs j WHERE j.track_id = m.track_id AND j.kind = 'message'))
ORDER BY m.accepted_at DESC, m.track_id DESC
LIMIT :limit;

-- name: search_by_identity
-- The same search when a MessageID, TrackID or upstream TrackID is given: the candidates come
-- from their indexes, then every filter applies.
SELECT m.track_id, m.sender, m.message_id, m.route, m.accepted_at, m.upstream_track_id,
       m.purged_at
FROM messages m
WHERE m.track_id IN (
        SELECT track_id FROM messages WHERE message_id = :message_id
        UNION SELECT track_id FROM messages WHERE track_id = :track_id
        UNION SELECT track_id FROM messages WHERE upstream_track_id = :upstream_track_id)
  AND (:message_id IS NULL OR m.message_id = :message_id)
  AND (:track_id IS NULL OR m.track_id = :track_id)
  AND (:upstream_track_id IS NULL OR m.upstream_track_id = :upstream_track_id)
  AND (:sender IS NULL OR m.sender = :sender)
  AND (:route IS NULL OR m.route = :route)
  AND (:document IS NULL OR m.document = :document)
  AND (:process IS NULL OR m.action LIKE 'int://CP/' || :process || '/%')
  AND (:since IS NULL OR m.accepted_at >= :since)
  AND (:until IS NULL OR m.accepted_at < :until)
  AND (:after_at IS NULL OR m.accepted_at < :after_at
       OR (m.accepted_at = :after_at AND m.track_id < :after_id))
  AND (:destination IS NULL OR EXISTS (
        SELECT 1 FROM jobs j WHERE j.track_id = m.track_id AND j.kind = 'message'
          AND +j.destination = :destination))  -- by jobs_track, not jobs_destination
  AND (:code IS NULL OR EXISTS (  -- by receipts_track: `+` keeps receipts_code out of it
        SELECT 1 FROM receipts r WHERE r.track_id = m.track_id AND +r.code = :code))
  AND (:state IS NULL OR :state = (
        SELECT CASE WHEN SUM(CASE WHEN j.state = 'pending' THEN 1 ELSE 0 END) > 0 THEN 'pending'
                    WHEN SUM(CASE WHEN j.state = 'failed' THEN 1 ELSE 0 END) > 0 THEN 'failed'
                    ELSE 'delivered' END
        FROM jobs j WHERE j.track_id = m.track_id AND j.kind = 'message'))
ORDER BY m.accepted_at DESC, m.track_id DESC
LIMIT :limit;

-- name: search_rejected
-- Rejected submissions (their Rejected receipts), newest first after the same cursor.
SELECT r.receipt_id, r.message_id, r.sender, r.issued_at, r.code
FROM receipts r
WHERE r.kind = 'Rejected'
  AND (:message_id IS NULL OR r.message_id = :message_id)
  AND (:sender IS NULL OR r.sender = :sender)
  AND (:code IS NULL OR r.code = :code)
  AND (:since IS NULL OR r.issued_at >= :since)
  AND (:until IS NULL OR r.issued_at < :until)
  AND (:after_at IS NULL OR r.issued_at < :after_at
       OR (r.issued_at = :after_at AND r.receipt_id < :after_id))
ORDER BY r.issued_at DESC, r.receipt_id DESC
LIMIT :limit;

-- name: rejected_by_id
SELECT receipt_id, message_id, sender, issued_at, code FROM receipts
WHERE kind = 'Rejected' AND message_id = :message_id
ORDER BY issued_at, receipt_id;

-- name: message_record
SELECT action, document, recipient, table_digest, raw, forwarded FROM messages
WHERE track_id = :track_id;

-- name: timeline
-- Every audit entry of a MessageID (all its senders' messages, and its rejections).
SELECT seq, at, event, message_id, track_id, destination, detail, prev_hash, hash, signature
FROM audit_log WHERE message_id = :message_id ORDER BY seq;

-- name: audit_count
SELECT COUNT(*) AS n FROM audit_log;

-- name: leases_held
SELECT lease_owner, COUNT(*) AS n, MIN(lease_expires) AS first_expiry FROM jobs
WHERE state = 'pending' AND lease_owner IS NOT NULL AND lease_expires > :now
GROUP BY lease_owner ORDER BY lease_owner;

-- name: oldest_pending
SELECT m.message_id, m.accepted_at, j.destination FROM jobs j
JOIN messages m ON m.track_id = j.track_id
WHERE j.state = 'pending' AND j.kind = 'message'
ORDER BY m.accepted_at LIMIT 1;

-- name: exchange_series
-- The console's time-series strip: per interval (the step, in seconds, from the start, epoch
-- seconds), messages accepted and rejected, and destinations (of messages accepted in the
-- interval) delivered and failed. One pass over the window's messages and their jobs.
WITH accepted AS (
    SELECT CAST(((julianday(m.accepted_at) - 2440587.5) * 86400.0 - :start) / :step AS INTEGER) AS bucket,
           COUNT(DISTINCT m.track_id) AS accepted,
           SUM(CASE WHEN j.state = 'delivered' THEN 1 ELSE 0 END) AS delivered,
           SUM(CASE WHEN j.state = 'failed' THEN 1 ELSE 0 END) AS failed
    FROM messages m LEFT JOIN jobs j ON j.track_id = m.track_id AND j.kind = 'message'
    WHERE m.accepted_at >= :since AND m.accepted_at < :until
      AND (:process IS NULL OR m.action LIKE 'int://CP/' || :process || '/%')
    GROUP BY 1
), rejected AS (
    SELECT CAST(((julianday(r.issued_at) - 2440587.5) * 86400.0 - :start) / :step AS INTEGER) AS bucket,
           COUNT(*) AS rejected
    FROM receipts r
    WHERE r.kind = 'Rejected' AND r.issued_at >= :since AND r.issued_at < :until
      AND :process IS NULL
    GROUP BY 1
)
SELECT bucket, SUM(accepted) AS accepted, SUM(rejected) AS rejected,
       SUM(delivered) AS delivered, SUM(failed) AS failed
FROM (SELECT bucket, accepted, 0 AS rejected, delivered, failed FROM accepted
      UNION ALL SELECT bucket, 0, rejected, 0, 0 FROM rejected) AS buckets
GROUP BY bucket ORDER BY bucket;

-- name: destination_health
-- A destination's last delivery and the failures since (message jobs; jobs_destination).
SELECT (SELECT MAX(updated_at) FROM jobs
        WHERE destination = :destination AND state = 'delivered' AND kind = 'message')
           AS last_success,
       (SELECT COUNT(*) FROM jobs
        WHERE destination = :destination AND state = 'failed' AND kind = 'message'
          AND updated_at > COALESCE((SELECT MAX(updated_at) FROM jobs
                                     WHERE destination = :destination AND state = 'delivered'
                                       AND kind = 'message'), 0)) AS failed_since;

-- name: fixture_messages
-- `broker bench --console` only, on a fresh store: :count synthetic messages, one every :step
-- seconds from :start (epoch seconds), among five participants, four rules, three processes
-- and seven document codes. Never run on a real store.
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)
INSERT INTO messages (track_id, sender, message_id, digest, accepted_at, route, table_digest,
                      action, document, recipient, accepted_receipt, raw, forwarded)
SELECT printf('urn:uuid:00000000-0000-4000-8000-%012d', i),
       substr('AM-SWBY-SWKZ-SWKG-SWRU-SW', (i % 5) * 5 + 1, 5),
       printf('urn:uuid:10000000-0000-4000-8000-%012d', i),
       'fixture',
       strftime('%Y-%m-%dT%H:%M:%fZ', :start + i * :step, 'unixepoch'),
       'rule-' || (i % 4), 'fixture',
       'int://CP/P.TS.0' || (i % 3 + 1) || '/1.0.0/P.TS.01.PRC.001/P.TS.01.TRN.001/MSG',
       'R.0' || (i % 7 + 30), 'EAEU://XX/CP',
       printf('urn:uuid:20000000-0000-4000-8000-%012d', i), x'', x''
FROM n;

-- name: fixture_jobs
-- One destination per fixture message: 1 in 20 failed, 1 in 20 pending, the rest delivered
-- 50 to 530 ms after acceptance.
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)
INSERT INTO jobs (track_id, kind, destination, endpoint, state, attempts, max_attempts,
                  initial_delay, max_delay, deadline, next_attempt, last_error, updated_at)
SELECT printf('urn:uuid:00000000-0000-4000-8000-%012d', i), 'message',
       substr('AM-SWBY-SWKZ-SWKG-SWRU-SW', ((i % 5 + 1 + (i / 5) % 4) % 5) * 5 + 1, 5),
       'https://fixture.invalid/',
       CASE i % 20 WHEN 0 THEN 'failed' WHEN 1 THEN 'pending' ELSE 'delivered' END,
       1, 5, 1.0, 60.0, :start + i * :step + 3600, :start + i * :step,
       CASE i % 20 WHEN 0 THEN 'DESTINATION_REJECTED: HTTP 400' END,
       :start + i * :step + 0.05 + (i % 97) * 0.005
FROM n;

-- name: fixture_receipts
-- An Accepted receipt per fixture message, a Failed one per failed destination, and one
-- rejected submission per 100 messages.
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)
INSERT INTO receipts (receipt_id, track_id, message_id, sender, kind, destination, issued_at,
                      body, code)
SELECT printf('urn:uuid:%d0000000-0000-4000-8000-%012d', k, i),
       CASE WHEN k < 4 THEN printf('urn:uuid:00000000-0000-4000-8000-%012d', i) END,
       printf('urn:uuid:%d0000000-0000-4000-8000-%012d', CASE WHEN k < 4 THEN 1 ELSE 5 END, i),
       substr('AM-SWBY-SWKZ-SWKG-SWRU-SW', (i % 5) * 5 + 1, 5),
       CASE k WHEN 2 THEN 'Accepted' WHEN 3 THEN 'Failed' ELSE 'Rejected' END,
       CASE WHEN k = 3 THEN substr('AM-SWBY-SWKZ-SWKG-SWRU-SW', ((i % 5 + 1 + (i / 5) % 4) % 5) * 5 + 1, 5) END,
       strftime('%Y-%m-%dT%H:%M:%fZ', :start + i * :step, 'unixepoch'), x'',
       CASE k WHEN 3 THEN 'DESTINATION_REJECTED' WHEN 4 THEN 'SCHEMA_INVALID' END
FROM n, (SELECT 2 AS k UNION ALL SELECT 3 UNION ALL SELECT 4) AS kinds
WHERE k = 2 OR (k = 3 AND i % 20 = 0) OR (k = 4 AND i % 100 = 7);
