-- Groups whose shell sessions are recorded to a transcript file on the relay.
ALTER TABLE group_policy ADD COLUMN record_shells INTEGER NOT NULL DEFAULT 0;
