-- The operator console (issue 12): the SPEC §8 code of a Rejected or Failed receipt, so the
-- message search can filter by it; rejected messages listed newest first; a message's
-- timeline from the audit log; lookups by an upstream TrackID.
ALTER TABLE receipts ADD COLUMN code TEXT;
CREATE INDEX receipts_rejected ON receipts (issued_at, receipt_id) WHERE kind = 'Rejected';
CREATE INDEX receipts_code ON receipts (code) WHERE code IS NOT NULL;
CREATE INDEX audit_message ON audit_log (message_id);
CREATE INDEX messages_upstream ON messages (upstream_track_id) WHERE upstream_track_id IS NOT NULL;
-- A destination's delivery health (last success, failures since) without scanning the jobs.
CREATE INDEX jobs_destination ON jobs (destination, state, updated_at);
