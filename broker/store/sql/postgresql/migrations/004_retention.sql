-- SPEC v1.1 §6 retention: when a purge emptied the stored envelopes of a message (NULL while
-- they are kept).
ALTER TABLE messages ADD COLUMN purged_at TEXT;
-- Listings newest first with a cursor, and lookups by MessageID alone (admin, signals).
CREATE INDEX messages_listing ON messages (accepted_at, track_id);
CREATE INDEX messages_message_id ON messages (message_id);
