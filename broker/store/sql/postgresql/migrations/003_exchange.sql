-- SPEC v1.1: the upstream integration platform's TrackID (status JSON, audit) and the sender's
-- wsa:ReplyTo address, which a signal answering the message must be addressed to (§1).
ALTER TABLE messages ADD COLUMN upstream_track_id TEXT;
ALTER TABLE messages ADD COLUMN reply_to TEXT;
