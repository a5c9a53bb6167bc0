-- Who sent each offline message (normalized bare JID), so a quarantined account's copies
-- still waiting in other accounts' queues can be withdrawn. Older rows have ''.
ALTER TABLE offline_messages ADD COLUMN sender TEXT NOT NULL DEFAULT '';
CREATE INDEX offline_messages_by_sender ON offline_messages (sender);
