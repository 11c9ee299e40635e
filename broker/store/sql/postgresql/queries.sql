-- Named queries for the PostgreSQL connector, run by broker/store/ledger.py. Each block starts
-- with "-- name: <name>"; :name parameters are turned into $n by broker/store/queries.py.
-- sqlite/queries.sql has the same names; keep the two in step. A list parameter (:ids) is a
-- JSON array.

-- name: select_one
SELECT 1 AS one;

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
-- FOR UPDATE SKIP LOCKED: concurrent workers on several nodes never wait for, nor take, the
-- same job; an expired lease (its holder crashed) makes a job claimable again.
WITH due AS (
    -- At most :room_default per destination, or what :rooms (JSON destination → free slots)
    -- allows: a saturated destination, or one behind an open breaker (room 0), gets no lease.
    -- Only the :scan earliest due jobs of the destinations with room are ranked (the jobs_due
    -- index gives them in order), so a claim costs the same whatever the backlog.
    SELECT id, next_attempt,
           ROW_NUMBER() OVER (PARTITION BY destination ORDER BY next_attempt, id) AS rank,
           COALESCE((CAST(:rooms AS JSONB) ->> destination)::INT, :room_default) AS room
    FROM (
        SELECT id, destination, next_attempt FROM jobs
        WHERE state = 'pending' AND next_attempt <= :now
          AND (lease_expires IS NULL OR lease_expires < :now)
          AND destination NOT IN (
              SELECT key FROM jsonb_each_text(CAST(:rooms AS JSONB)) WHERE value::INT <= 0
          )
        ORDER BY next_attempt, id
        LIMIT :scan
    ) earliest
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
)
UPDATE jobs j SET lease_owner = :owner, lease_expires = :expires, updated_at = :now
FROM picked WHERE j.id = picked.id
RETURNING j.id;

-- name: leased_jobs
SELECT j.id, j.track_id, j.kind, j.destination, j.endpoint, j.receipt_id, j.attempts,
       j.max_attempts, j.initial_delay, j.max_delay, j.deadline,
       m.sender, m.message_id, m.digest, m.route, m.table_digest, m.accepted_at,
       CASE WHEN j.kind = 'message' THEN m.forwarded ELSE r.body END AS payload
FROM jobs j JOIN messages m ON m.track_id = j.track_id
LEFT JOIN receipts r ON r.receipt_id = j.receipt_id
WHERE j.id IN (SELECT jsonb_array_elements_text(CAST(:ids AS JSONB))::BIGINT)
  AND j.lease_owner = :owner
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
UPDATE jobs SET state = 'pending', next_attempt = :now, deadline = GREATEST(deadline, :deadline),
                attempts = 0, max_attempts = GREATEST(max_attempts, 1), lease_owner = NULL,
                lease_expires = NULL, updated_at = :now
WHERE track_id IN (SELECT track_id FROM messages WHERE message_id = :message_id)
  AND kind = 'message' AND state = 'failed'
  AND (CAST(:destination AS TEXT) IS NULL OR destination = :destination);

-- name: message_by_id
-- One MessageID may come from several senders: restricted to :sender unless it is NULL.
SELECT track_id, sender, message_id, route, accepted_at, upstream_track_id, reply_to, purged_at
FROM messages
WHERE message_id = :message_id AND (CAST(:sender AS TEXT) IS NULL OR sender = :sender)
ORDER BY accepted_at, track_id;

-- name: jobs_of_messages
SELECT track_id, destination, state, attempts, last_error FROM jobs
WHERE track_id IN (SELECT jsonb_array_elements_text(CAST(:ids AS JSONB))) AND kind = 'message'
ORDER BY id;

-- name: receipts_of_messages
SELECT track_id, receipt_id, kind, destination FROM receipts
WHERE track_id IN (SELECT jsonb_array_elements_text(CAST(:ids AS JSONB)))
ORDER BY issued_at, receipt_id;

-- name: receipt
SELECT sender, body FROM receipts WHERE receipt_id = :receipt_id;

-- name: counts
SELECT state, COUNT(*) AS n, MIN(CASE WHEN state = 'pending' THEN updated_at END) AS oldest
FROM jobs WHERE kind = 'message' GROUP BY state;

-- name: pending_by_destination
SELECT destination, COUNT(*) AS n FROM jobs WHERE state = 'pending' GROUP BY destination;

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

-- name: due_bodies
-- Finished messages (no job pending: every destination and receipt push delivered or failed)
-- whose last job ended before their route's cut-off (:cutoffs, JSON route → epoch seconds),
-- else :default_cutoff; -1 keeps for ever. SKIP LOCKED: two nodes purging never wait on each
-- other, and intake never waits on a purge (it only inserts).
SELECT m.track_id, OCTET_LENGTH(m.raw) + OCTET_LENGTH(m.forwarded) AS size
FROM messages m
WHERE m.purged_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.track_id = m.track_id AND j.state = 'pending')
  AND (SELECT MAX(j.updated_at) FROM jobs j WHERE j.track_id = m.track_id)
      < COALESCE((CAST(:cutoffs AS JSONB) ->> m.route)::FLOAT8, :default_cutoff)
LIMIT :limit
FOR UPDATE OF m SKIP LOCKED;

-- name: empty_bodies
UPDATE messages SET raw = '', forwarded = '', purged_at = :now
WHERE track_id IN (SELECT jsonb_array_elements_text(CAST(:ids AS JSONB)));

-- name: due_records
SELECT m.track_id
FROM messages m
WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.track_id = m.track_id AND j.state = 'pending')
  AND (SELECT MAX(j.updated_at) FROM jobs j WHERE j.track_id = m.track_id)
      < COALESCE((CAST(:cutoffs AS JSONB) ->> m.route)::FLOAT8, :default_cutoff)
LIMIT :limit
FOR UPDATE OF m SKIP LOCKED;

-- name: delete_receipts
DELETE FROM receipts WHERE track_id IN (SELECT jsonb_array_elements_text(CAST(:ids AS JSONB)));

-- name: delete_jobs
DELETE FROM jobs WHERE track_id IN (SELECT jsonb_array_elements_text(CAST(:ids AS JSONB)));

-- name: delete_messages
DELETE FROM messages WHERE track_id IN (SELECT jsonb_array_elements_text(CAST(:ids AS JSONB)));

-- name: delete_rejected
-- Receipts of no accepted message (Rejected), issued before the default receipts cut-off.
DELETE FROM receipts WHERE track_id IS NULL AND issued_at < :before;

-- name: stored_size
SELECT (SELECT COUNT(*) FROM messages) AS messages,
       (SELECT SUM(pg_total_relation_size(c.oid)) FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_schema() AND c.relkind = 'r') AS bytes;

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
           CASE WHEN CAST(:merge AS INTEGER) = 1 THEN '*' ELSE split_part(m.action, '/', 4) END
               AS process,
           j.state,
           CASE WHEN j.state = 'delivered'
                THEN (j.updated_at - EXTRACT(EPOCH FROM CAST(m.accepted_at AS TIMESTAMPTZ)))
                     * 1000.0
           END AS ms
    FROM messages m JOIN jobs j ON j.track_id = m.track_id AND j.kind = 'message'
    WHERE m.accepted_at >= :since AND m.accepted_at < :until
      AND (CAST(:process AS TEXT) IS NULL OR m.action LIKE 'int://CP/' || :process || '/%')
      AND (CAST(:document AS TEXT) IS NULL OR m.document = :document)
      AND (CAST(:state AS TEXT) IS NULL OR j.state = :state)
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
WHERE (CAST(:message_id AS TEXT) IS NULL OR m.message_id = :message_id)
  AND (CAST(:track_id AS TEXT) IS NULL OR m.track_id = :track_id)
  AND (CAST(:upstream_track_id AS TEXT) IS NULL OR m.upstream_track_id = :upstream_track_id)
  AND (CAST(:sender AS TEXT) IS NULL OR m.sender = :sender)
  AND (CAST(:route AS TEXT) IS NULL OR m.route = :route)
  AND (CAST(:document AS TEXT) IS NULL OR m.document = :document)
  AND (CAST(:process AS TEXT) IS NULL OR m.action LIKE 'int://CP/' || :process || '/%')
  AND (CAST(:since AS TEXT) IS NULL OR m.accepted_at >= :since)
  AND (CAST(:until AS TEXT) IS NULL OR m.accepted_at < :until)
  AND (CAST(:after_at AS TEXT) IS NULL OR m.accepted_at < :after_at
       OR (m.accepted_at = :after_at AND m.track_id < CAST(:after_id AS TEXT)))
  AND (CAST(:destination AS TEXT) IS NULL OR EXISTS (
        SELECT 1 FROM jobs j WHERE j.track_id = m.track_id AND j.kind = 'message'
          AND j.destination = :destination))
  AND (CAST(:code AS TEXT) IS NULL OR EXISTS (
        SELECT 1 FROM receipts r WHERE r.track_id = m.track_id AND r.code = :code))
  AND (CAST(:state AS TEXT) IS NULL OR :state = (
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
  AND (CAST(:message_id AS TEXT) IS NULL OR m.message_id = :message_id)
  AND (CAST(:track_id AS TEXT) IS NULL OR m.track_id = :track_id)
  AND (CAST(:upstream_track_id AS TEXT) IS NULL OR m.upstream_track_id = :upstream_track_id)
  AND (CAST(:sender AS TEXT) IS NULL OR m.sender = :sender)
  AND (CAST(:route AS TEXT) IS NULL OR m.route = :route)
  AND (CAST(:document AS TEXT) IS NULL OR m.document = :document)
  AND (CAST(:process AS TEXT) IS NULL OR m.action LIKE 'int://CP/' || :process || '/%')
  AND (CAST(:since AS TEXT) IS NULL OR m.accepted_at >= :since)
  AND (CAST(:until AS TEXT) IS NULL OR m.accepted_at < :until)
  AND (CAST(:after_at AS TEXT) IS NULL OR m.accepted_at < :after_at
       OR (m.accepted_at = :after_at AND m.track_id < CAST(:after_id AS TEXT)))
  AND (CAST(:destination AS TEXT) IS NULL OR EXISTS (
        SELECT 1 FROM jobs j WHERE j.track_id = m.track_id AND j.kind = 'message'
          AND j.destination = :destination))
  AND (CAST(:code AS TEXT) IS NULL OR EXISTS (
        SELECT 1 FROM receipts r WHERE r.track_id = m.track_id AND r.code = :code))
  AND (CAST(:state AS TEXT) IS NULL OR :state = (
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
  AND (CAST(:message_id AS TEXT) IS NULL OR r.message_id = :message_id)
  AND (CAST(:sender AS TEXT) IS NULL OR r.sender = :sender)
  AND (CAST(:code AS TEXT) IS NULL OR r.code = :code)
  AND (CAST(:since AS TEXT) IS NULL OR r.issued_at >= :since)
  AND (CAST(:until AS TEXT) IS NULL OR r.issued_at < :until)
  AND (CAST(:after_at AS TEXT) IS NULL OR r.issued_at < :after_at
       OR (r.issued_at = :after_at AND r.receipt_id < CAST(:after_id AS TEXT)))
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
    SELECT FLOOR((CAST(EXTRACT(EPOCH FROM CAST(m.accepted_at AS TIMESTAMPTZ)) AS DOUBLE PRECISION)
                  - CAST(:start AS DOUBLE PRECISION)) / CAST(:step AS DOUBLE PRECISION)) AS bucket,
           COUNT(DISTINCT m.track_id) AS accepted,
           SUM(CASE WHEN j.state = 'delivered' THEN 1 ELSE 0 END) AS delivered,
           SUM(CASE WHEN j.state = 'failed' THEN 1 ELSE 0 END) AS failed
    FROM messages m LEFT JOIN jobs j ON j.track_id = m.track_id AND j.kind = 'message'
    WHERE m.accepted_at >= :since AND m.accepted_at < :until
      AND (CAST(:process AS TEXT) IS NULL OR m.action LIKE 'int://CP/' || :process || '/%')
    GROUP BY 1
), rejected AS (
    SELECT FLOOR((CAST(EXTRACT(EPOCH FROM CAST(r.issued_at AS TIMESTAMPTZ)) AS DOUBLE PRECISION)
                  - CAST(:start AS DOUBLE PRECISION)) / CAST(:step AS DOUBLE PRECISION)) AS bucket,
           COUNT(*) AS rejected
    FROM receipts r
    WHERE r.kind = 'Rejected' AND r.issued_at >= :since AND r.issued_at < :until
      AND CAST(:process AS TEXT) IS NULL
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

-- name: analyse
-- `broker bench --console`: statistics for the planner after the fixture, as autovacuum would.
ANALYZE;

-- name: fixture_messages
-- `broker bench --console` only, on a fresh schema: :count synthetic messages, one every
-- :step seconds from :start (epoch seconds), among five participants, four rules, three
-- processes and seven document codes. Never run on a real store.
INSERT INTO messages (track_id, sender, message_id, digest, accepted_at, route, table_digest,
                      action, document, recipient, accepted_receipt, raw, forwarded)
SELECT 'urn:uuid:00000000-0000-4000-8000-' || lpad(i::text, 12, '0'),
       substr('AM-SWBY-SWKZ-SWKG-SWRU-SW', (i % 5) * 5 + 1, 5),
       'urn:uuid:10000000-0000-4000-8000-' || lpad(i::text, 12, '0'),
       'fixture',
       to_char(to_timestamp(CAST(:start AS DOUBLE PRECISION) + i * CAST(:step AS DOUBLE PRECISION))
               AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       'rule-' || (i % 4), 'fixture',
       'int://CP/P.TS.0' || (i % 3 + 1) || '/1.0.0/P.TS.01.PRC.001/P.TS.01.TRN.001/MSG',
       'R.0' || (i % 7 + 30), 'EAEU://XX/CP',
       'urn:uuid:20000000-0000-4000-8000-' || lpad(i::text, 12, '0'), '', ''
FROM generate_series(1, CAST(:count AS INTEGER)) AS i;

-- name: fixture_jobs
-- One destination per fixture message: 1 in 20 failed, 1 in 20 pending, the rest delivered
-- 50 to 530 ms after acceptance.
INSERT INTO jobs (track_id, kind, destination, endpoint, state, attempts, max_attempts,
                  initial_delay, max_delay, deadline, next_attempt, last_error, updated_at)
SELECT 'urn:uuid:00000000-0000-4000-8000-' || lpad(i::text, 12, '0'), 'message',
       substr('AM-SWBY-SWKZ-SWKG-SWRU-SW', ((i % 5 + 1 + (i / 5) % 4) % 5) * 5 + 1, 5),
       'https://fixture.invalid/',
       CASE i % 20 WHEN 0 THEN 'failed' WHEN 1 THEN 'pending' ELSE 'delivered' END,
       1, 5, 1.0, 60.0, t + 3600, t,
       CASE i % 20 WHEN 0 THEN 'DESTINATION_REJECTED: HTTP 400' END,
       t + 0.05 + (i % 97) * 0.005
FROM (SELECT i, CAST(:start AS DOUBLE PRECISION) + i * CAST(:step AS DOUBLE PRECISION) AS t
      FROM generate_series(1, CAST(:count AS INTEGER)) AS i) AS n;

-- name: fixture_receipts
-- An Accepted receipt per fixture message, a Failed one per failed destination, and one
-- rejected submission per 100 messages.
INSERT INTO receipts (receipt_id, track_id, message_id, sender, kind, destination, issued_at,
                      body, code)
SELECT 'urn:uuid:' || k || '0000000-0000-4000-8000-' || lpad(i::text, 12, '0'),
       CASE WHEN k < 4 THEN 'urn:uuid:00000000-0000-4000-8000-' || lpad(i::text, 12, '0') END,
       'urn:uuid:' || CASE WHEN k < 4 THEN 1 ELSE 5 END || '0000000-0000-4000-8000-'
           || lpad(i::text, 12, '0'),
       substr('AM-SWBY-SWKZ-SWKG-SWRU-SW', (i % 5) * 5 + 1, 5),
       CASE k WHEN 2 THEN 'Accepted' WHEN 3 THEN 'Failed' ELSE 'Rejected' END,
       CASE WHEN k = 3 THEN substr('AM-SWBY-SWKZ-SWKG-SWRU-SW', ((i % 5 + 1 + (i / 5) % 4) % 5) * 5 + 1, 5)
       END,
       to_char(to_timestamp(CAST(:start AS DOUBLE PRECISION) + i * CAST(:step AS DOUBLE PRECISION))
               AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), '',
       CASE k WHEN 3 THEN 'DESTINATION_REJECTED' WHEN 4 THEN 'SCHEMA_INVALID' END
FROM generate_series(1, CAST(:count AS INTEGER)) AS i, (VALUES (2), (3), (4)) AS kinds (k)
WHERE k = 2 OR (k = 3 AND i % 20 = 0) OR (k = 4 AND i % 100 = 7);
