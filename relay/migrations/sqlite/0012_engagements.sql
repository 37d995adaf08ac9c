-- What each session was for (the command line, the path; shown to the user in the prompt), and
-- the engagement it belongs to: the id of the session whose approval it ran under. A user
-- approves once per technician and ticket; the sessions that follow share that id.
ALTER TABLE sessions ADD COLUMN activity TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN engagement_id TEXT;
CREATE INDEX sessions_engagement ON sessions (engagement_id);
